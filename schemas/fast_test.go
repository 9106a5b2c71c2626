package schemas

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestFastPathCoversEverySchema checks that every schema has a fast form and that the
// fast path accepts every sample on its own: a schema change that quietly sent everything
// to the slow path would show here.
func TestFastPathCoversEverySchema(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	if v.fast.envelope == nil {
		t.Fatal("the envelope schema has no fast form")
	}
	for _, typ := range EventTypes() {
		if v.fast.events[typ] == nil {
			t.Errorf("event schema %s has no fast form", typ)
		}
	}
	for _, name := range Commands() {
		if v.fast.commands[name] == nil {
			t.Errorf("command schema %s has no fast form", name)
		}
	}
	for _, name := range Replies() {
		if v.fast.replies[name] == nil {
			t.Errorf("reply schema %s has no fast form", name)
		}
	}
	events := map[string][]byte{"fee": mustMarshal(t, envelope(t, TypeFineAssessed, sampleFee()))}
	for typ, data := range sampleEvents() {
		events[typ] = mustMarshal(t, envelope(t, typ, data))
	}
	for name, raw := range events {
		got, ok := v.fastEvent(raw)
		if !ok {
			t.Errorf("fastEvent(%s) did not accept the sample", name)
			continue
		}
		want, err := v.libraryEvent(raw)
		if err != nil {
			t.Fatalf("libraryEvent(%s) = %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("fastEvent(%s) differs from the library's (-library +fast):\n%s", name, diff)
		}
	}
	for _, cmds := range []map[string]any{sampleCommands(), minimalCommands()} {
		for name, c := range cmds {
			if !v.fastCheck(v.fast.commands[name], mustMarshal(t, c)) {
				t.Errorf("the fast path did not accept the sample %s command", name)
			}
		}
	}
	for name, r := range sampleReplies() {
		if !v.fastCheck(v.fast.replies[name], mustMarshal(t, r)) {
			t.Errorf("the fast path did not accept the sample %s reply", name)
		}
	}
}

// agree checks that the fast path accepts raw only if the library accepts it, and then
// with the same result.
func agreeEvent(t *testing.T, v *Validator, raw []byte) (fast bool) {
	t.Helper()
	got, ok := v.fastEvent(raw)
	if !ok {
		return false
	}
	want, err := v.libraryEvent(raw)
	if err != nil {
		t.Fatalf("the fast path accepts %q, the library refuses it: %v", raw, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("fastEvent(%q) differs from the library's (-library +fast):\n%s", raw, diff)
	}
	return true
}

// agreeEventData checks EventData against Event followed by encoding/json, and reports
// whether its fast path decided.
func agreeEventData(t *testing.T, v *Validator, raw []byte) (fast bool) {
	t.Helper()
	ev, data, err := v.EventData(raw)
	wantEv, wantErr := v.Event(raw)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("EventData(%q) = %v, Event = %v", raw, err, wantErr)
	}
	if err != nil {
		return false
	}
	typ, _ := dataType(wantEv.Type)
	want := reflect.New(typ)
	if err := json.Unmarshal(wantEv.Data, want.Interface()); err != nil {
		t.Fatalf("json.Unmarshal(%s) = %v", wantEv.Data, err)
	}
	if diff := cmp.Diff(wantEv, ev); diff != "" {
		t.Fatalf("EventData(%q) event differs (-Event +EventData):\n%s", raw, diff)
	}
	if diff := cmp.Diff(want.Elem().Interface(), data); diff != "" {
		t.Fatalf("EventData(%q) data differs (-encoding/json +EventData):\n%s", raw, diff)
	}
	_, _, fast = v.fastEventData(raw)
	return fast
}

func agreeCommand(t *testing.T, v *Validator, name string, raw []byte) (fast bool) {
	t.Helper()
	if len(raw) > MaxCommandBytes || !v.fastCheck(v.fast.commands[name], raw) {
		return false
	}
	if err := check(v.commands[name], "invalid "+name, raw, MaxCommandBytes); err != nil {
		t.Fatalf("the fast path accepts the %s command %q, the library refuses it: %v", name, raw, err)
	}
	return true
}

// variants returns raw and many near misses of it: every property removed or replaced by
// values of every JSON type and by tricky strings, and textual edits.
func variants(t *testing.T, raw []byte) [][]byte {
	t.Helper()
	out := [][]byte{raw}
	values := []any{nil, true, false, json.Number("0"), json.Number("-1"), json.Number("1"), json.Number("1.0"),
		json.Number("1e3"), json.Number("100000001"), json.Number("9007199254740992"), json.Number("123456789012345678901"),
		"", "x", "a.b", "A", strings.Repeat("a", 65), strings.Repeat("7", 41), "é", "\u0000", "\u007f", "\n", "\"",
		"2026-02-30T10:00:00Z", "2026-03-14T15:09:26.1234567891Z", "2026-03-14T15:09:26+24:00", "2026-03-14",
		"2026-13-01", sampleTxn, strings.ToUpper(sampleTxn), sampleHash, "lethe/x", "overdue", "fee", "1.0",
		"application/json", "AAAA", "AAA=", "AA==", "A===", strings.Repeat("A", 32), strings.Repeat("A", 4100),
		[]any{}, []any{"x"}, map[string]any{}, map[string]any{"kid": "k", "nonce": strings.Repeat("A", 32), "ct": strings.Repeat("A", 24)},
	}
	var walk func(m map[string]any, edit func())
	walk = func(m map[string]any, edit func()) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			old := m[k]
			delete(m, k)
			edit()
			for _, val := range values {
				m[k] = val
				edit()
			}
			m[k] = old
			if sub, ok := old.(map[string]any); ok {
				walk(sub, edit)
			}
		}
		for _, extra := range []string{"extra", "Barcode", "TXN_ID"} {
			if _, ok := m[extra]; !ok {
				m[extra] = "x"
				edit()
				delete(m, extra)
			}
		}
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	walk(doc, func() {
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	})
	s := string(raw)
	for _, edit := range []string{
		s + " ", " \t\n" + s, s + "x", s + "{}", s[:len(s)-1], strings.Replace(s, `"`, `'`, 1),
		strings.Replace(s, ":", " : ", -1), strings.Replace(s, `","`, `" , "`, -1), strings.Replace(s, `a`, `\u0061`, -1),
		strings.Replace(s, `e`, `\u00e9`, 1), strings.Replace(s, `"1.0"`, `"1\u002e0"`, 1), strings.Replace(s, `":"`, `":"\ud800`, 1),
		strings.Replace(s, `"id"`, `"ID"`, 1), strings.Replace(s, `{`, `{"type":"x",`, 1), strings.Replace(s, `"`, `"\/`, 2),
		"\xef\xbb\xbf" + s, strings.Replace(s, `a`, "\xff", 1), strings.Replace(s, `a`, "\x01", 1), strings.Replace(s, `,`, `,,`, 1),
		strings.Replace(s, `}`, `,}`, 1), strings.Replace(s, `0`, `00`, 1), strings.Replace(s, `:2`, `:-0`, 1),
	} {
		out = append(out, []byte(edit))
	}
	return out
}

// TestFastAgreesWithLibrary runs the fast path and the library over samples and thousands
// of near misses: the fast path may leave input to the library, but must never accept
// what the library refuses.
func TestFastAgreesWithLibrary(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	var fast, total int
	events := []Event{envelope(t, TypeFineAssessed, sampleFee())}
	for typ, data := range sampleEvents() {
		events = append(events, envelope(t, typ, data))
	}
	dataFast := 0
	for _, ev := range events {
		for _, raw := range variants(t, mustMarshal(t, ev)) {
			total++
			if agreeEvent(t, v, raw) {
				fast++
			}
			if agreeEventData(t, v, raw) {
				dataFast++
			}
		}
		if !agreeEventData(t, v, mustMarshal(t, ev)) {
			t.Errorf("EventData's fast path did not take the sample %s", ev.Type)
		}
	}
	if dataFast == 0 {
		t.Error("EventData's fast path decided nothing")
	}
	for _, cmds := range []map[string]any{sampleCommands(), minimalCommands()} {
		for name, c := range cmds {
			for _, raw := range variants(t, mustMarshal(t, c)) {
				total++
				if agreeCommand(t, v, name, raw) {
					fast++
				}
			}
		}
	}
	for _, tc := range invalidCommands(t) {
		total++
		if agreeCommand(t, v, tc.name, tc.raw) {
			t.Errorf("the fast path accepts the invalid command %s", tc.label)
		}
	}
	if fast == 0 {
		t.Fatal("the fast path accepted nothing")
	}
	t.Logf("%d documents, %d accepted by the fast path", total, fast)
}

// FuzzFastAgreesWithLibrary: whatever the fast path accepts, the library accepts too,
// with the same result.
func FuzzFastAgreesWithLibrary(f *testing.F) {
	v := testValidator(f)
	names := Commands()
	for typ, data := range sampleEvents() {
		f.Add(uint8(0), mustMarshal(f, envelope(f, typ, data)))
	}
	f.Add(uint8(0), mustMarshal(f, envelope(f, TypeFineAssessed, sampleFee())))
	for i, name := range names {
		if c, ok := sampleCommands()[name]; ok {
			f.Add(uint8(i), mustMarshal(f, c))
		}
	}
	f.Fuzz(func(t *testing.T, i uint8, raw []byte) {
		if len(raw) > MaxEventBytes {
			return
		}
		agreeEvent(t, v, raw)
		agreeEventData(t, v, raw)
		agreeCommand(t, v, names[int(i)%len(names)], raw)
	})
}

// schemaPatterns lists the patterns of every compiled schema.
func schemaPatterns(t testing.TB, v *Validator) []string {
	t.Helper()
	seen := map[*jsonschema.Schema]bool{}
	set := map[string]bool{}
	var walk func(s *jsonschema.Schema)
	walk = func(s *jsonschema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		if s.Pattern != nil {
			set[s.Pattern.String()] = true
		}
		walk(s.Ref)
		for _, p := range s.Properties {
			walk(p)
		}
		if a, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
			walk(a)
		}
		walk(s.Items2020)
		walk(s.If)
		walk(s.Then)
		walk(s.Else)
		walk(s.Not)
		for _, l := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	walk(v.envelope)
	for _, m := range []map[string]*jsonschema.Schema{v.events, v.commands, v.replies} {
		for _, s := range m {
			walk(s)
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// patternProbes are strings near the edges of the schemas' patterns.
func patternProbes() []string {
	base := []string{"", sampleTxn, sampleHash, sampleBarcode, markerCard, "2026-03-14", "2026-03-14T15:09:26Z",
		"2026-03-14T15:09:26.123456789+01:00", "2026-12-31T23:59:59-23:59", "2026-02-29T00:00:00.1Z",
		"lethe/ledger/node-1", "circ.item.31267000481234", "abc_def", strings.Repeat("A", 32), "AAAA", "AAA=", "AA==",
		"Les Misérables", "kid-1", "{\"x\":1}", strings.Repeat("a", 64), strings.Repeat("a", 120)}
	chars := []string{"", "0", "9", "a", "f", "g", "z", "A", "F", "Z", "_", "-", ".", "/", "+", "=", ":", "T", "t", "Z",
		"z", " ", "\n", "\x00", "\x1f", "\x7f", "!", "~", "é", "\u2028", "\xff"}
	out := slices.Clone(base)
	for _, s := range base {
		for i := 0; i <= len(s); i++ {
			for _, c := range chars {
				out = append(out, s[:i]+c+s[i:])
				if i < len(s) {
					out = append(out, s[:i]+c+s[i+1:])
				}
			}
			if i < len(s) {
				out = append(out, s[:i]+s[i+1:], s[:i])
			}
		}
	}
	for n := 0; n <= 130; n++ {
		out = append(out, strings.Repeat("a", n), strings.Repeat("7", n), "lethe/"+strings.Repeat("x", n),
			strings.Repeat("A", n), strings.Repeat("A", max(n-1, 0))+"=", strings.Repeat("A", max(n-2, 0))+"==")
	}
	for _, frac := range []string{"", ".", ".1", ".123456789", ".1234567890"} {
		for _, zone := range []string{"Z", "z", "+00:00", "-23:59", "+24:00", "+01:60", "+0100", ""} {
			out = append(out, "2026-03-14T15:09:26"+frac+zone)
		}
	}
	for _, d := range []string{"00", "01", "09", "10", "19", "20", "29", "30", "31", "32", "3a"} {
		for _, m := range []string{"00", "01", "09", "10", "12", "13", "1a"} {
			out = append(out, "2026-"+m+"-"+d, "2026-"+m+"-"+d+"T00:00:00Z")
		}
	}
	for _, hm := range []string{"00:00", "09:59", "19:59", "20:00", "23:59", "24:00", "23:60", "2:00", "1a:00"} {
		out = append(out, "2026-03-14T"+hm+":00Z", "2026-03-14T00:00:00+"+hm)
	}
	return out
}

func TestFastPatterns(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	patterns := schemaPatterns(t, v)
	if len(patterns) == 0 {
		t.Fatal("no patterns found")
	}
	probes := patternProbes()
	for _, p := range patterns {
		m := fastPattern(p)
		if m == nil {
			t.Errorf("pattern %s has no fast matcher", p)
			continue
		}
		re := regexp.MustCompile(p)
		for _, s := range probes {
			if got, want := m(s), re.MatchString(s); got != want {
				t.Errorf("fast matcher of %s on %q = %v, regexp says %v", p, s, got, want)
			}
		}
	}
}

func FuzzFastPatterns(f *testing.F) {
	v := testValidator(f)
	patterns := schemaPatterns(f, v)
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		res[i] = regexp.MustCompile(p)
	}
	for _, s := range patternProbes()[:200] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, p := range patterns {
			if m := fastPattern(p); m != nil && m(s) != res[i].MatchString(s) {
				t.Fatalf("fast matcher of %s on %q = %v, regexp says %v", p, s, m(s), res[i].MatchString(s))
			}
		}
	})
}

func BenchmarkEventOnly(b *testing.B) {
	v := testValidator(b)
	raw := mustMarshal(b, envelope(b, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut]))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Event(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventLibrary is Event on the library's path alone, for comparison.
// BenchmarkEventData is the projector's decode: the event and its data.
func BenchmarkEventData(b *testing.B) {
	v := testValidator(b)
	raw := mustMarshal(b, envelope(b, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut]))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.EventData(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventLibrary(b *testing.B) {
	v := testValidator(b)
	raw := mustMarshal(b, envelope(b, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut]))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.libraryEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}
