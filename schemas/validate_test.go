package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidEvents(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	samples := sampleEvents()
	cases := map[string]any{"stand-alone fee": sampleFee()}
	for typ, data := range samples {
		cases[typ] = data
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			typ := name
			if _, ok := samples[typ]; !ok {
				typ = TypeFineAssessed
			}
			want := envelope(t, typ, data)
			got, err := v.Event(mustMarshal(t, want))
			if err != nil {
				t.Fatalf("Event(%s) = %v, want nil", typ, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Event(%s) (-want +got):\n%s", typ, diff)
			}
			dst := newEventData(typ)
			if err := DecodeStrict(got.Data, dst); err != nil {
				t.Fatalf("DecodeStrict(%s data) = %v", typ, err)
			}
			if diff := cmp.Diff(data, dst); diff != "" {
				t.Errorf("DecodeStrict(%s data) (-want +got):\n%s", typ, diff)
			}
		})
	}
}

// TestEventDataBytes checks that Event keeps the bytes of data as they came, whatever the
// layout of the message.
func TestEventDataBytes(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	data := "{ \"txn_id\" :\n\t\"" + sampleTxn + "\" }"
	raw := `{"data"  :  ` + data + ` ,"specversion":"1.0","id":"` + sampleEventID + `","type":"` + TypeTransactionClosed +
		`","source":"lethe/ledger/node-1","time":"2026-03-14T15:09:26.5+01:00","datacontenttype":"application/json","dataschema":"` +
		DataSchema(TypeTransactionClosed) + `"}` + "\n"
	ev, err := v.Event([]byte(raw))
	if err != nil {
		t.Fatalf("Event(%s) = %v", raw, err)
	}
	if string(ev.Data) != data {
		t.Errorf("Event(%s).Data = %q, want %q", raw, ev.Data, data)
	}
	want := time.Date(2026, 3, 14, 14, 9, 26, 5e8, time.UTC)
	if !ev.Time.Equal(want) || ev.Subject != "" || ev.CommandID != "" {
		t.Errorf("Event(%s) = %+v, want time %v and no subject or commandid", raw, ev, want)
	}
	var viaJSON Event
	if err := json.Unmarshal([]byte(raw), &viaJSON); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(viaJSON, ev); diff != "" {
		t.Errorf("Event differs from json.Unmarshal (-json +Event):\n%s", diff)
	}
}

// TestValidEventEnvelopeVariants checks the envelope's optional parts and time forms.
func TestValidEventEnvelopeVariants(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	base := envelope(t, TypeTransactionClosed, &TransactionClosed{TxnID: sampleTxn})
	for _, tc := range []struct {
		name   string
		mutate func(m map[string]any)
	}{
		{"no subject, no commandid", func(m map[string]any) { delete(m, "subject"); delete(m, "commandid") }},
		{"time with offset", func(m map[string]any) { m["time"] = "2026-03-14T09:09:26-06:00" }},
		{"time with nanoseconds", func(m map[string]any) { m["time"] = "2026-03-14T15:09:26.123456789Z" }},
		{"leap day", func(m map[string]any) { m["time"] = "2028-02-29T00:00:00Z" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := mutated(t, base, tc.mutate)
			if _, err := v.Event(raw); err != nil {
				t.Errorf("Event(%s) = %v, want nil", raw, err)
			}
		})
	}
}

func TestValidCommands(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	cases := map[string]any{}
	for name, cmd := range sampleCommands() {
		cases[name] = cmd
	}
	for name, cmd := range minimalCommands() {
		cases[name+" minimal"] = cmd
	}
	for label, cmd := range cases {
		t.Run(label, func(t *testing.T) {
			t.Parallel()
			name, _, _ := strings.Cut(label, " ")
			raw := mustMarshal(t, cmd)
			if err := v.Command(name, raw); err != nil {
				t.Fatalf("Command(%s, %s) = %v, want nil", name, raw, err)
			}
			dst := newCommand(name)
			if err := DecodeStrict(raw, dst); err != nil {
				t.Fatalf("DecodeStrict(%s) = %v", raw, err)
			}
			if diff := cmp.Diff(cmd, dst); diff != "" {
				t.Errorf("DecodeStrict(%s) (-want +got):\n%s", name, diff)
			}
		})
	}
}

func TestValidReplies(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	results := sampleReplies()
	for name, r := range results {
		if err := v.Reply(name, mustMarshal(t, r)); err != nil {
			t.Errorf("Reply(%s, %s) = %v, want nil", name, mustMarshal(t, r), err)
		}
	}
	// Every command's result inside a Reply envelope, and every error code.
	for _, cmd := range Commands() {
		reply := Reply{OK: true, Result: mustMarshal(t, results[ResultOf(cmd)])}
		if err := v.Reply(ReplyEnvelope, mustMarshal(t, reply)); err != nil {
			t.Errorf("Reply(reply for %s) = %v, want nil", cmd, err)
		}
	}
	for _, code := range []Code{CodeInvalid, CodeNotFound, CodeConflict, CodeForbidden, CodeUnavailable, CodeInternal} {
		reply := Reply{Error: Errorf(code, "item is already on loan")}
		if err := v.Reply(ReplyEnvelope, mustMarshal(t, reply)); err != nil {
			t.Errorf("Reply(error %s) = %v, want nil", code, err)
		}
	}
	if err := v.Reply(ReplyEnvelope, mustMarshal(t, Reply{Error: Public(errors.New("disk on fire"))})); err != nil {
		t.Errorf("Reply(Public(internal)) = %v, want nil", err)
	}
	// An empty record: lists are [], never null.
	empty := PatronRecord{Loans: []Loan{}, Fines: []Fine{}, CardStatus: "active"}
	if err := v.Reply(ReplyPatronRecord, mustMarshal(t, empty)); err != nil {
		t.Errorf("Reply(empty record) = %v, want nil", err)
	}
}

func TestInvalidReplies(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	for _, tc := range []struct {
		name, raw, want string
	}{
		{ReplyEnvelope, `{"ok":true}`, `missing property "result"`},
		{ReplyEnvelope, `{"ok":false,"result":{}}`, `/result is not allowed here`},
		{ReplyEnvelope, `{"ok":true,"result":{},"error":{"code":"invalid","message":"x"}}`, `/error is not allowed here`},
		{ReplyEnvelope, `{"ok":false,"error":{"code":"oops","message":"x"}}`, `/error/code is not one of the allowed values`},
		{ReplyPatronRecord, `{"loans":null,"fines":[],"owed_cents":0,"blocked":false,"card_status":"active"}`, `/loans must be an array, not null`},
		{ReplyAccepted, `{"seq":-1}`, `/seq is less than the minimum 0`},
		{ReplyAccepted, `{"seq":18446744073709551616}`, `/seq is more than the maximum 18446744073709551615`},
		{"nope", `{}`, `unknown reply schema`},
	} {
		err := v.Reply(tc.name, []byte(tc.raw))
		if CodeOf(err) != CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Reply(%s, %s) = %v, want invalid containing %q", tc.name, tc.raw, err, tc.want)
		}
	}
}

// invalidCase is a command or event that must be refused with a message naming want.
type invalidCase struct {
	label string
	name  string // command name; "" for an event
	raw   []byte
	want  string // a substring of the message: the location and the rule
}

// invalidCommands builds the table of bad commands: for every command, each required
// property missing, each property of the wrong type, unknown properties, and bad values
// for each kind of field.
func invalidCommands(t testing.TB) []invalidCase {
	var cases []invalidCase
	add := func(name, label string, base any, want string, mutate func(m map[string]any)) {
		cases = append(cases, invalidCase{label: name + "/" + label, name: name, raw: mutated(t, base, mutate), want: want})
	}
	badBarcodes := map[string]string{
		"dot": "a.b", "space": "a b", "star": "*", "gt": ">", "empty": "", "65 chars": strings.Repeat("B", 65),
		"subject": "circ.item.SECRET-BARCODE-77", "card+space": markerCard + " ", "unicode": "3126700048123\u00e9",
		"newline": "ABC\nDEF",
	}
	badUUIDs := map[string]string{
		"card": markerCard, "upper": "7C0A8B8E-3F1D-4F5E-9A27-0C6B1F2D9E41", "braced": "{7c0a8b8e-3f1d-4f5e-9a27-0c6b1f2d9e41}",
		"short": "7c0a8b8e-3f1d-4f5e-9a27-0c6b1f2d9e4", "empty": "",
	}
	badCards := map[string]string{
		"bang": markerCard + "!", "short": "123", "41 chars": strings.Repeat("7", 41), "space": "CARD SECRET 12345",
		"dot": "CARD.SECRET.12345", "empty": "",
	}
	badCents := map[string]any{
		"negative": json.Number("-500"), "fraction": json.Number("12.5"), "exponent": json.Number("1e3"),
		"point zero": json.Number("100.0"), "string": "1500", "too big": json.Number("100000001"),
		"huge": json.Number("123456789012345678901234567890"), "null": nil, "bool": true,
	}
	badTimes := map[string]string{
		"space": "2026-03-14 15:09:26Z", "lowercase": "2026-03-14t15:09:26z", "no zone": "2026-03-14T15:09:26",
		"feb 30": "2026-02-30T15:09:26Z", "hour 24": "2026-03-14T24:00:00Z", "leap second": "2026-12-31T23:59:60Z",
		"date only": "2026-03-14", "words": "yesterday at noon", "10 digit fraction": "2026-03-14T15:09:26.1234567890Z",
	}
	for name, base := range sampleCommands() {
		m := toMap(t, base)
		// A missing required property.
		for _, p := range slices.Sorted(maps.Keys(m)) {
			if p == "returned_at" || p == "checked_out_at" || p == "amount_cents" && name == CmdMarkDamaged || (p == "card" || p == "pin") && name == CmdRegisterPatron ||
				name == CmdUpdateContact && p != "command_id" && p != "patron_id" {
				continue // optional
			}
			add(name, "missing "+p, base, fmt.Sprintf("missing property %q", p), func(m map[string]any) { delete(m, p) })
			// The wrong type.
			switch m[p].(type) {
			case string:
				add(name, p+" as number", base, "/"+p+" must be a string, not a number", func(m map[string]any) { m[p] = json.Number("12345") })
				add(name, p+" as object", base, "/"+p+" must be a string, not an object", func(m map[string]any) { m[p] = map[string]any{"v": markerCard} })
			case json.Number:
				add(name, p+" as string", base, "/"+p+" must be an integer, not a string", func(m map[string]any) { m[p] = markerCard })
			case map[string]any:
				add(name, p+" as string", base, "/"+p+" must be an object, not a string", func(m map[string]any) { m[p] = markerName })
			}
		}
		add(name, "unknown property", base, "unknown property", func(m map[string]any) { m[markerName] = markerCard })
		add(name, "unknown plain property", base, `unknown property "nickname"`, func(m map[string]any) { m["nickname"] = markerName })
		add(name, "unknown property named like a card", base, "unknown property", func(m map[string]any) { m[markerCard] = true })
		// Values of each kind of field.
		for p := range m {
			switch p {
			case "barcode":
				for label, bad := range badBarcodes {
					add(name, "barcode "+label, base, "/barcode", func(m map[string]any) { m[p] = bad })
				}
			case "command_id", "patron_id", "fine_id":
				for label, bad := range badUUIDs {
					add(name, p+" "+label, base, "/"+p+" does not match the required pattern (a lowercase UUID)", func(m map[string]any) { m[p] = bad })
				}
			case "card":
				for label, bad := range badCards {
					add(name, "card "+label, base, "/card does not match the required pattern", func(m map[string]any) { m[p] = bad })
				}
			case "amount_cents", "replacement_cents":
				for label, bad := range badCents {
					add(name, p+" "+label, base, "/"+p+" ", func(m map[string]any) { m[p] = bad })
				}
			case "returned_at", "checked_out_at":
				for label, bad := range badTimes {
					add(name, p+" "+label, base, "/"+p+" ", func(m map[string]any) { m[p] = bad })
				}
			case "branch", "home_branch", "collection":
				add(name, p+" dotted", base, "/"+p+" does not match the required pattern", func(m map[string]any) { m[p] = "kalispell.main" })
			case "title":
				add(name, "title empty", base, "/title is too short (minimum 1 character)", func(m map[string]any) { m[p] = "" })
				add(name, "title too long", base, "/title is too long (maximum 500 characters)", func(m map[string]any) { m[p] = strings.Repeat("Lethe ", 100) })
				add(name, "title control", base, "/title does not match the required pattern (no control characters)", func(m map[string]any) { m[p] = "Lethe\u0007" })
			}
		}
		// Not an object at all.
		cases = append(cases,
			invalidCase{name + "/array", name, []byte(`["` + markerCard + `"]`), "the document must be an object, not an array"},
			invalidCase{name + "/string", name, []byte(`"` + markerCard + `"`), "the document must be an object, not a string"},
			invalidCase{name + "/null", name, []byte(`null`), "the document must be an object, not null"},
			invalidCase{name + "/empty", name, nil, "empty input"},
			invalidCase{name + "/truncated", name, mustMarshal(t, base)[:20], "unexpected end of input"},
			invalidCase{name + "/two values", name, append(mustMarshal(t, base), mustMarshal(t, base)...), "data after the top-level value"},
			invalidCase{name + "/not json", name, []byte(markerCard), "malformed JSON at byte"},
		)
	}
	// The patron's profile in register_patron.
	reg := sampleCommands()[CmdRegisterPatron]
	profileCases := []struct {
		label, want string
		mutate      func(p map[string]any)
	}{
		{"no name", `/profile is missing property "name"`, func(p map[string]any) { delete(p, "name") }},
		{"no birth date", `/profile is missing property "birth_date"`, func(p map[string]any) { delete(p, "birth_date") }},
		{"empty name", "/profile/name is too short", func(p map[string]any) { p["name"] = "" }},
		{"long name", "/profile/name is too long (maximum 200 characters)", func(p map[string]any) { p["name"] = strings.Repeat(markerName+" ", 20) }},
		{"name with newline", "/profile/name does not match the required pattern (no control characters)", func(p map[string]any) { p["name"] = markerName + "\n" }},
		{"empty email", "/profile/email is too short", func(p map[string]any) { p["email"] = "" }},
		{"long address", "/profile/address is too long", func(p map[string]any) { p["address"] = strings.Repeat(markerAddr, 8) }},
		{"birth date slashes", "/profile/birth_date is not a valid date (YYYY-MM-DD)", func(p map[string]any) { p["birth_date"] = "23/04/2011" }},
		{"birth date without zeros", "/profile/birth_date is not a valid date (YYYY-MM-DD)", func(p map[string]any) { p["birth_date"] = "2011-4-3" }},
		{"birth date feb 30", "/profile/birth_date is not a valid date (YYYY-MM-DD)", func(p map[string]any) { p["birth_date"] = "2011-02-30" }},
		{"birth date number", "/profile/birth_date must be a string, not a number", func(p map[string]any) { p["birth_date"] = json.Number("20110423") }},
		{"caregiver without name", `/profile/caregiver is missing property "name"`, func(p map[string]any) { p["caregiver"] = map[string]any{"contact": markerPhone} }},
		{"caregiver extra", `/profile/caregiver has an unknown property`, func(p map[string]any) {
			p["caregiver"] = map[string]any{"name": markerCare, markerEmail: markerPhone}
		}},
		{"unknown profile field", `/profile has an unknown property "ssn"`, func(p map[string]any) { p["ssn"] = "078-05-1120" }},
	}
	for _, pc := range profileCases {
		add(CmdRegisterPatron, "profile "+pc.label, reg, pc.want, func(m map[string]any) { pc.mutate(m["profile"].(map[string]any)) })
	}
	for label, pin := range map[string]string{"short": "123", "long": "12345678901234567", "letters": "12ab", "spaces": "1234 "} {
		add(CmdSetPIN, "pin "+label, sampleCommands()[CmdSetPIN], "/pin does not match the required pattern (4 to 16 digits)",
			func(m map[string]any) { m["pin"] = pin })
	}
	// The contact details of update_contact: the profile's limits, at least one change, a
	// clear list of contact details only, each once; name and birth date are not contact.
	upd := sampleCommands()[CmdUpdateContact]
	for _, uc := range []struct {
		label, want string
		mutate      func(m map[string]any)
	}{
		{"nothing to change", "the document has too few properties (minimum 3)", func(m map[string]any) {
			delete(m, "email")
			delete(m, "phone")
			delete(m, "address")
			delete(m, "caregiver_contact")
		}},
		{"empty email", "/email is too short (minimum 1 character)", func(m map[string]any) { m["email"] = "" }},
		{"long phone", "/phone is too long (maximum 200 characters)", func(m map[string]any) { m["phone"] = strings.Repeat(markerPhone, 14) }},
		{"address with newline", "/address does not match the required pattern (no control characters)", func(m map[string]any) { m["address"] = markerAddr + "\n" }},
		{"caregiver contact as number", "/caregiver_contact must be a string, not a number", func(m map[string]any) { m["caregiver_contact"] = json.Number("4065550147") }},
		{"name", `unknown property "name"`, func(m map[string]any) { m["name"] = markerName }},
		{"birth date", `unknown property "birth_date"`, func(m map[string]any) { m["birth_date"] = markerBirth }},
		{"clear empty", "/clear has too few items (minimum 1)", func(m map[string]any) { m["clear"] = []any{} }},
		{"clear a string", "/clear must be an array, not a string", func(m map[string]any) { m["clear"] = "phone" }},
		{"clear the name", "/clear/0 is not one of the allowed values", func(m map[string]any) { m["clear"] = []any{"name"} }},
		{"clear the birth date", "/clear/1 is not one of the allowed values", func(m map[string]any) { m["clear"] = []any{"phone", "birth_date"} }},
		{"clear a value", "/clear/0 is not one of the allowed values", func(m map[string]any) { m["clear"] = []any{markerEmail} }},
		{"clear twice", "/clear has repeated items", func(m map[string]any) { m["clear"] = []any{"phone", "phone"} }},
		{"clear five", "/clear has too many items (maximum 4)", func(m map[string]any) {
			m["clear"] = []any{"email", "phone", "address", "caregiver_contact", "email"}
		}},
	} {
		add(CmdUpdateContact, uc.label, upd, uc.want, uc.mutate)
	}
	add(CmdMarkDamaged, "amount zero", sampleCommands()[CmdMarkDamaged], "/amount_cents is less than the minimum 1",
		func(m map[string]any) { m["amount_cents"] = json.Number("0") })
	add(CmdCatalogItem, "replacement negative", sampleCommands()[CmdCatalogItem], "/replacement_cents is less than the minimum 0",
		func(m map[string]any) { m["replacement_cents"] = json.Number("-1") })
	add(CmdCheckOut, "repeated card", sampleCommands()[CmdCheckOut], "", nil)
	cases[len(cases)-1].raw = []byte(`{"command_id":"` + sampleCmdID + `","card":"` + markerCard + `","barcode":"X1","card":"` + markerCard + `"}`)
	cases[len(cases)-1].want = "/card is a repeated property"
	return cases
}

func TestInvalidCommands(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	cases := invalidCommands(t)
	if len(cases) < 300 {
		t.Fatalf("only %d invalid command cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.label, func(t *testing.T) {
			t.Parallel()
			err := v.Command(tc.name, tc.raw)
			checkInvalid(t, fmt.Sprintf("Command(%s, %s)", tc.name, tc.raw), err, tc.raw, "invalid "+tc.name+": ", tc.want)
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	for _, tc := range []struct{ name, want string }{
		{"launch_rocket", `invalid: unknown command "launch_rocket"`},
		{markerCard, "invalid: unknown command"},
		{"", "invalid: unknown command"},
	} {
		err := v.Command(tc.name, []byte(`{}`))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Command(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestInvalidEvents(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	checkedOut := envelope(t, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut])
	registered := envelope(t, TypePatronRegistered, sampleEvents()[TypePatronRegistered])
	fee := envelope(t, TypeFineAssessed, sampleFee())
	fine := envelope(t, TypeFineAssessed, sampleEvents()[TypeFineAssessed])
	data := func(f func(d map[string]any)) func(m map[string]any) {
		return func(m map[string]any) { f(m["data"].(map[string]any)) }
	}
	for _, tc := range []struct {
		label  string
		base   Event
		want   string
		mutate func(m map[string]any)
	}{
		{"specversion", checkedOut, `/specversion must be "1.0"`, func(m map[string]any) { m["specversion"] = "0.3" }},
		{"id not uuid", checkedOut, "/id does not match the required pattern (a lowercase UUID)", func(m map[string]any) { m["id"] = markerCard }},
		{"unknown type", checkedOut, "/type is not one of the allowed values", func(m map[string]any) { m["type"] = "lethe.item.stolen.v1" }},
		{"type of another schema", checkedOut, "invalid event lethe.item.returned.v1: /dataschema is not the schema of the type", func(m map[string]any) { m["type"] = TypeItemReturned }},
		{"dataschema of another type", checkedOut, "/dataschema is not the schema of the type", func(m map[string]any) { m["dataschema"] = DataSchema(TypeItemRenewed) }},
		{"dataschema unknown", checkedOut, "/dataschema is not one of the allowed values", func(m map[string]any) { m["dataschema"] = "https://example.org/" + markerCard }},
		{"source", checkedOut, "/source does not match the required pattern", func(m map[string]any) { m["source"] = "kiosk/" + markerCard }},
		{"subject with wildcard", checkedOut, "/subject does not match the required pattern", func(m map[string]any) { m["subject"] = "circ.item.>" }},
		{"subject with card", checkedOut, "/subject does not match the required pattern", func(m map[string]any) { m["subject"] = "circ.patron." + markerName }},
		{"time", checkedOut, "/time is not a valid RFC 3339 date-time (such as 2006-01-02T15:04:05Z)", func(m map[string]any) { m["time"] = "Mar 14 2026 " + markerName }},
		{"time hour one digit", checkedOut, "/time does not match the required pattern (RFC 3339", func(m map[string]any) { m["time"] = "2026-03-14T5:09:26Z" }},
		{"time feb 30", checkedOut, "/time is not a valid RFC 3339 date-time", func(m map[string]any) { m["time"] = "2026-02-30T10:00:00Z" }},
		{"no time", checkedOut, `missing property "time"`, func(m map[string]any) { delete(m, "time") }},
		{"no data", checkedOut, `missing property "data"`, func(m map[string]any) { delete(m, "data") }},
		{"data a string", checkedOut, "/data must be an object, not a string", func(m map[string]any) { m["data"] = markerName }},
		{"datacontenttype", checkedOut, `/datacontenttype must be "application/json"`, func(m map[string]any) { m["datacontenttype"] = "text/plain" }},
		{"commandid", checkedOut, "/commandid does not match the required pattern (a lowercase UUID)", func(m map[string]any) { m["commandid"] = markerCard }},
		{"extension attribute", checkedOut, `unknown property "traceparent"`, func(m map[string]any) { m["traceparent"] = markerName }},
		{"data missing field", checkedOut, `/data is missing property "patron"`, data(func(d map[string]any) { delete(d, "patron") })},
		{"data plaintext patron", checkedOut, "/data/patron must be an object, not a string", data(func(d map[string]any) { d["patron"] = markerCard })},
		{"data extra card", checkedOut, `/data has an unknown property "card"`, data(func(d map[string]any) { d["card"] = markerCard })},
		{"data barcode unsafe", checkedOut, "/data/barcode does not match the required pattern", data(func(d map[string]any) { d["barcode"] = "ITEM.SECRET>" })},
		{"data due", checkedOut, "/data/due ", data(func(d map[string]any) { d["due"] = "2026-04-04" })},
		{"sealed nonce 12 bytes", checkedOut, "/data/patron/nonce does not match the required pattern (32 characters of standard base64)", data(func(d map[string]any) {
			d["patron"].(map[string]any)["nonce"] = "AAAAAAAAAAAAAAAA"
		})},
		{"sealed ct not base64", checkedOut, "/data/patron/ct does not match the required pattern (standard base64 with padding)", data(func(d map[string]any) {
			d["patron"].(map[string]any)["ct"] = markerName + markerName + markerName
		})},
		{"sealed ct too short for a tag", checkedOut, "/data/patron/ct is too short (minimum 24 characters)", data(func(d map[string]any) {
			d["patron"].(map[string]any)["ct"] = "AAAA"
		})},
		{"sealed ct too long", checkedOut, "/data/patron/ct is too long (maximum 4096 characters)", data(func(d map[string]any) {
			d["patron"].(map[string]any)["ct"] = strings.Repeat("AAAA", 1025)
		})},
		{"sealed kid empty", checkedOut, "/data/patron/kid does not match the required pattern", data(func(d map[string]any) {
			d["patron"].(map[string]any)["kid"] = ""
		})},
		{"sealed plaintext", checkedOut, `/data/patron has an unknown property "plaintext"`, data(func(d map[string]any) {
			d["patron"].(map[string]any)["plaintext"] = markerName
		})},
		{"profile in the clear", registered, "/data/profile has an unknown property", data(func(d map[string]any) {
			d["profile"] = map[string]any{"name": markerName, "birth_date": markerBirth}
		})},
		{"fee with barcode", fee, "/data/barcode is not allowed here", data(func(d map[string]any) { d["barcode"] = sampleBarcode })},
		{"fee without patron", fee, `/data is missing property "patron"`, data(func(d map[string]any) { delete(d, "patron") })},
		{"loan fine with patron", fine, "/data/patron is not allowed here", data(func(d map[string]any) { d["patron"] = toMap(t, sealed("k", 40)) })},
		{"loan fine without barcode", fine, `/data is missing property "barcode"`, data(func(d map[string]any) { delete(d, "barcode") })},
		{"fine reason", fine, "/data/reason is not one of the allowed values", data(func(d map[string]any) { d["reason"] = "late" })},
		{"fine amount zero", fine, "/data/amount_cents is less than the minimum 1", data(func(d map[string]any) { d["amount_cents"] = json.Number("0") })},
	} {
		t.Run(tc.label, func(t *testing.T) {
			t.Parallel()
			raw := mutated(t, tc.base, tc.mutate)
			_, err := v.Event(raw)
			checkInvalid(t, fmt.Sprintf("Event(%s)", raw), err, raw, "invalid event", tc.want)
		})
	}
}

func TestEventRepeatedProperty(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	good := string(mustMarshal(t, envelope(t, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut])))
	for _, tc := range []struct{ label, raw, want string }{
		{"envelope", strings.Replace(good, `"type":`, `"type":"lethe.item.returned.v1","type":`, 1), "/type is a repeated property"},
		{"data", strings.Replace(good, `"txn_id":`, `"txn_id":"`+sampleTxn+`","txn_id":`, 1), "/data/txn_id is a repeated property"},
		{"sealed", strings.Replace(good, `"kid":`, `"kid":"`+markerCard+`","kid":`, 1), "/data/patron/kid is a repeated property"},
		{"unknown nested", strings.Replace(good, `"data":{`, `"data":{"`+markerCard+`":{"a":1,"a":2},`, 1), "/data/?/a is a repeated property"},
	} {
		_, err := v.Event([]byte(tc.raw))
		checkInvalid(t, "Event("+tc.label+")", err, []byte(tc.raw), "invalid event", tc.want)
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	// Malformed JSON beyond the limit: a parse would report a syntax error instead.
	cmd := bytes.Repeat([]byte("{"), MaxCommandBytes+1)
	if err := v.Command(CmdCheckOut, cmd); CodeOf(err) != CodeInvalid || err.Error() != "invalid: invalid checkout: too large (limit 16384 bytes)" {
		t.Errorf("Command(16 KiB + 1) = %v, want too large", err)
	}
	ev := bytes.Repeat([]byte("["), MaxEventBytes+1)
	if _, err := v.Event(ev); CodeOf(err) != CodeInvalid || err.Error() != "invalid: invalid event: too large (limit 65536 bytes)" {
		t.Errorf("Event(64 KiB + 1) = %v, want too large", err)
	}
	// At the limit the input is parsed.
	if err := v.Command(CmdCheckOut, cmd[:MaxCommandBytes]); err == nil || strings.Contains(err.Error(), "too large") {
		t.Errorf("Command(16 KiB) = %v, want a parse error", err)
	}
	// A valid event padded to the limit with whitespace is accepted.
	good := mustMarshal(t, envelope(t, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut]))
	padded := append(good, bytes.Repeat([]byte(" "), MaxEventBytes-len(good))...)
	if _, err := v.Event(padded); err != nil {
		t.Errorf("Event(valid, padded to 64 KiB) = %v, want nil", err)
	}
	if _, err := v.Event(append(padded, ' ')); CodeOf(err) != CodeInvalid {
		t.Errorf("Event(valid, padded past 64 KiB) = %v, want invalid", err)
	}
}

func TestDeeplyNested(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	raw := strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000)
	err := v.Command(CmdCheckOut, []byte(raw))
	if CodeOf(err) != CodeInvalid || !strings.Contains(err.Error(), "nested more than 32 levels") {
		t.Errorf("Command(1000 levels) = %v, want nested too deep", err)
	}
}

func TestDecodeStrict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		label, raw, want string
		dst              any
	}{
		{"unknown field", `{"card":"` + markerCard + `","` + markerName + `":1}`, "invalid JSON: unknown property", new(PatronInfo)},
		{"unknown field named like ours", `{"card":"x","pin":"` + markerCard + `"}`, "invalid JSON: unknown property", new(PatronInfo)},
		{"repeated", `{"card":"x","card":"` + markerCard + `"}`, "invalid JSON: /card is a repeated property", new(PatronInfo)},
		{"repeated in another case", `{"card":"x","Card":"` + markerCard + `"}`, "invalid JSON: /? is a repeated property", new(PatronInfo)},
		{"repeated with a Kelvin sign", `{"kid":"k","\u212aid":"` + markerCard + `","nonce":"","ct":""}`, "invalid JSON: /? is a repeated property", new(Sealed)},
		{"repeated nested", `{"profile":{"name":"` + markerName + `"},"profile":{"birth_date":"2011-04-23"}}`, "invalid JSON: /profile is a repeated property", new(RegisterPatron)},
		{"trailing", `{"card":"x"} {"card":"` + markerCard + `"}`, "invalid JSON: data after the top-level value", new(PatronInfo)},
		{"wrong type", `{"command_id":"x","barcode":"b","amount_cents":"` + markerCard + `"}`, "invalid JSON: /amount_cents has the wrong type", new(MarkDamaged)},
		{"wrong type nested", `{"profile":{"name":["` + markerName + `"]}}`, "invalid JSON: /profile/name has the wrong type", new(RegisterPatron)},
		{"number overflow", `{"amount_cents":99999999999999999999999}`, "invalid JSON: /amount_cents has the wrong type", new(MarkDamaged)},
		{"bad time", `{"returned_at":"` + markerName + `"}`, "invalid JSON: a date-time is not RFC 3339", new(Return)},
		{"bad base64", `{"kid":"k","nonce":"` + markerName + `","ct":""}`, "invalid JSON: malformed base64", new(Sealed)},
		{"syntax", `{"card":` + markerCard + `}`, "invalid JSON: malformed JSON at byte", new(PatronInfo)},
		{"empty", ``, "invalid JSON: empty input", new(PatronInfo)},
		{"truncated", `{"card":"` + markerCard, "invalid JSON: unexpected end of input", new(PatronInfo)},
	} {
		err := DecodeStrict([]byte(tc.raw), tc.dst)
		checkInvalid(t, "DecodeStrict("+tc.label+")", err, []byte(tc.raw), "invalid JSON", tc.want)
	}
	if err := DecodeStrict([]byte(`{}`), PatronInfo{}); CodeOf(err) != CodeInternal {
		t.Errorf("DecodeStrict(non-pointer) = %v, want internal", err)
	}
	var got PatronInfo
	if err := DecodeStrict([]byte(" {\"card\":\"1234\"}\n"), &got); err != nil || got.Card != "1234" {
		t.Errorf("DecodeStrict(valid) = %v, %+v", err, got)
	}
}

// TestConcurrentUse validates from many goroutines at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	events := sampleEvents()
	commands := sampleCommands()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				for typ, data := range events {
					if _, err := v.Event(mustMarshal(t, envelope(t, typ, data))); err != nil {
						t.Errorf("Event(%s) = %v", typ, err)
					}
				}
				for name, cmd := range commands {
					if err := v.Command(name, mustMarshal(t, cmd)); err != nil {
						t.Errorf("Command(%s) = %v", name, err)
					}
				}
				if err := v.Command(CmdCheckOut, []byte(`{"barcode":"a.b"}`)); CodeOf(err) != CodeInvalid {
					t.Errorf("Command(bad) = %v", err)
				}
			}
		})
	}
	wg.Wait()
}

// checkInvalid checks that err is a *Error with CodeInvalid, that its message starts with
// prefix and contains want, and that it echoes no personal data: no marker, and no string
// of the input of four characters or more.
func checkInvalid(t *testing.T, call string, err error, raw []byte, prefix, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalid {
		t.Fatalf("%s = %v, want a *Error with code invalid", call, err)
	}
	if !strings.HasPrefix(e.Message, prefix) || !strings.Contains(e.Message, want) {
		t.Errorf("%s = %q, want a message starting %q containing %q", call, e.Message, prefix, want)
	}
	if leak := leaked(e.Message, raw); leak != "" {
		t.Errorf("%s = %q: the message echoes the input %q", call, e.Message, leak)
	}
}

// leaked returns a marker or an input string of 4 characters or more (a value or a
// property name) that msg contains, or "" when msg echoes nothing.
func leaked(msg string, raw []byte) string {
	for _, m := range []string{markerCard, markerName, markerEmail, markerPhone, markerAddr, markerBirth, markerCare, "SECRET"} {
		if strings.Contains(msg, m) {
			return m
		}
	}
	var found string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if len(v) >= 4 && strings.Contains(msg, v) && !inVocabulary(v) {
				found = v
			}
		case map[string]any:
			for k, c := range v {
				walk(k)
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&doc) == nil {
		walk(doc)
	}
	return found
}

// inVocabulary reports whether s could be the messages' own wording rather than an echo:
// an event type, a value the schemas require, or lowercase words and punctuation (every
// property name of the schemas, and no card number, PIN or capitalised name).
func inVocabulary(s string) bool {
	if DataSchema(s) != "" || s == "application/json" || s == "1.0" {
		return true
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && !strings.ContainsRune(" _/-'\"(),.", r)
	}) < 0
}

// toMap turns v into its generic JSON form, numbers as json.Number.
func toMap(t testing.TB, v any) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(mustMarshal(t, v)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// mutated marshals v, applies mutate to its generic form and marshals that.
func mutated(t testing.TB, v any, mutate func(m map[string]any)) []byte {
	t.Helper()
	m := toMap(t, v)
	if mutate != nil {
		mutate(m)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
