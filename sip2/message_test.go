package sip2

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // TestDates needs a zone on any machine

	"github.com/google/go-cmp/cmp"
)

// The SC status example of the SIP2 2.00 specification, with its checksum.
func TestChecksumOfTheSpecExample(t *testing.T) {
	if got := Checksum([]byte("9900302.00AY1AZ")); got != "FCA5" {
		t.Errorf("Checksum(9900302.00AY1AZ) = %s, want FCA5", got)
	}
	m, err := Parse([]byte("9900302.00AY1AZFCA5"), '|')
	if err != nil {
		t.Fatal(err)
	}
	want := Message{ID: "99", Fixed: "00302.00", Seq: 1, Checksum: true}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("Parse: -want +got\n%s", diff)
	}
}

// The checksum's definition: the 16-bit sum of the bytes through AZ plus the checksum's
// value is zero.
func TestChecksumSumsToZero(t *testing.T) {
	for _, s := range []string{"", "AZ", "9300CNmain/k1|COsecret|AY0AZ", strings.Repeat("\xff", 1000) + "AZ"} {
		var sum uint16
		for _, c := range []byte(s) {
			sum += uint16(c)
		}
		var v uint16
		for _, c := range Checksum([]byte(s)) {
			v = v<<4 | uint16(strings.IndexRune("0123456789ABCDEF", c))
		}
		if sum+v != 0 {
			t.Errorf("Checksum(%q) = %04X: sum %04X + checksum != 0", s, v, sum)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want Message
		err  error
	}{
		{"checkout without error detection",
			"11YN20261130    131900                  AOlethe|AA21000000000001|AB30000001|AC|",
			Message{ID: "11", Fixed: "YN20261130    131900                  ", Seq: -1, Fields: []Field{
				{"AO", "lethe"}, {"AA", "21000000000001"}, {"AB", "30000001"}, {"AC", ""}}}, nil},
		{"login with sequence and checksum",
			"9300CNmain/k1|COpw|CPmain|AY2AZ" + Checksum([]byte("9300CNmain/k1|COpw|CPmain|AY2AZ")),
			Message{ID: "93", Fixed: "00", Seq: 2, Checksum: true, Fields: []Field{
				{"CN", "main/k1"}, {"CO", "pw"}, {"CP", "main"}}}, nil},
		{"sequence number as a field of its own",
			"9300CNa|AY4|AZ" + Checksum([]byte("9300CNa|AY4|AZ")),
			Message{ID: "93", Fixed: "00", Seq: 4, Checksum: true, Fields: []Field{{"CN", "a"}}}, nil},
		{"lower-case checksum", "9900302.00AY1AZfca5", Message{ID: "99", Fixed: "00302.00", Seq: 1, Checksum: true}, nil},
		{"another delimiter has no effect here", "9900302.00", Message{ID: "99", Fixed: "00302.00", Seq: -1}, nil},
		{"ISO-8859-1 text", "17" + "20261130    131900" + "ABbo\xeete|",
			Message{ID: "17", Fixed: "20261130    131900", Seq: -1, Fields: []Field{{"AB", "boîte"}}}, nil},
		{"UTF-8 text", "17" + "20261130    131900" + "ABboîte|",
			Message{ID: "17", Fixed: "20261130    131900", Seq: -1, Fields: []Field{{"AB", "boîte"}}}, nil},
		{"bad checksum", "9900302.00AY1AZFCA6", Message{ID: "99", Seq: -1}, ErrBadChecksum},
		{"short fixed part", "11YN2026", Message{ID: "11", Seq: -1}, ErrShortFixed},
		{"unknown id", "42hello", Message{ID: "42", Seq: -1}, ErrUnknownID},
		{"a response id is not a request", "94" + "1", Message{ID: "94", Seq: -1}, ErrUnknownID},
		{"empty", "", Message{Seq: -1}, ErrEmpty},
		{"one-letter field", "9300CNa|X|", Message{ID: "93", Fixed: "00", Seq: -1, Fields: []Field{{"CN", "a"}}}, ErrBadField},
		{"control byte in the fixed part", "9300\x01302.00", Message{ID: "99", Seq: -1}, ErrBadFixed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.name == "control byte in the fixed part" {
				raw = []byte("99\x010302.00")
			}
			m, err := Parse(raw, '|')
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse(%q) error = %v, want %v", tc.raw, err, tc.err)
			}
			if err == nil {
				if diff := cmp.Diff(tc.want, m); diff != "" {
					t.Errorf("Parse(%q): -want +got\n%s", tc.raw, diff)
				}
			}
		})
	}
}

func TestParseOtherDelimiter(t *testing.T) {
	m, err := Parse([]byte("9300CNmain/k1^COa|b^"), '^')
	if err != nil {
		t.Fatal(err)
	}
	if m.Value("CN") != "main/k1" || m.Value("CO") != "a|b" {
		t.Errorf("Parse with '^' = %+v", m.Fields)
	}
}

func TestFix(t *testing.T) {
	m, err := Parse([]byte("11YN20261130    131900                  AOx|"), '|')
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"SC renewal policy": "Y", "no block": "N", "transaction date": "20261130    131900",
		"nb due date": strings.Repeat(" ", 18), "no such field": "",
	} {
		if got := m.Fix(name); got != want {
			t.Errorf("Fix(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEncode(t *testing.T) {
	m := Message{ID: IDLoginR, Fixed: "1", Seq: -1}
	if b, err := Encode(m, '|', UTF8); err != nil || string(b) != "941" {
		t.Errorf("Encode(94) = %q, %v; want 941", b, err)
	}
	m = Message{ID: IDCheckinR, Fixed: "1YUN" + FormatDate(time.Date(2026, 11, 30, 13, 19, 0, 0, time.UTC)),
		Fields: []Field{{"AO", "lethe"}, {"AB", "30000001"}, {"AJ", "Atlas | of Montaña\r\n"}}, Seq: 7, Checksum: true}
	b, err := Encode(m, '|', Latin1)
	if err != nil {
		t.Fatal(err)
	}
	want := "101YUN20261130   Z131900AOlethe|AB30000001|AJAtlas   of Monta\xf1a  |AY7AZ"
	if !bytes.HasPrefix(b, []byte(want)) || len(b) != len(want)+4 {
		t.Fatalf("Encode = %q, want %q and 4 hex", b, want)
	}
	if got := Checksum(b[:len(b)-4]); got != string(b[len(b)-4:]) {
		t.Errorf("checksum %s, want %s", b[len(b)-4:], got)
	}
	if _, err := Encode(Message{ID: IDCheckinR, Fixed: "1"}, '|', UTF8); err == nil {
		t.Error("Encode with a short fixed part: no error")
	}
	if _, err := Encode(Message{ID: "42"}, '|', UTF8); err == nil {
		t.Error("Encode of an unknown id: no error")
	}
}

func TestDates(t *testing.T) {
	ny, err := time.LoadLocation("America/Denver") // time/tzdata is linked in: never missing
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 30, 13, 19, 5, 0, time.UTC)
	if got := FormatDate(want); got != "20261130   Z131905" {
		t.Errorf("FormatDate = %q", got)
	}
	for s, w := range map[string]time.Time{
		"20261130   Z131905": want,
		"20261130    131905": time.Date(2026, 11, 30, 13, 19, 5, 0, ny),
	} {
		got, ok, err := ParseDate(s, ny)
		if err != nil || !ok || !got.Equal(w) {
			t.Errorf("ParseDate(%q) = %v, %v, %v; want %v", s, got, ok, err, w)
		}
	}
	for _, s := range []string{"                  ", "000000000000000000", ""} {
		if _, ok, err := ParseDate(s, ny); ok || err != nil {
			t.Errorf("ParseDate(%q) = %v, %v; want no date", s, ok, err)
		}
	}
	for _, s := range []string{"20261330    131905", "20261130 EST131905", "2026113"} {
		if _, _, err := ParseDate(s, ny); err == nil {
			t.Errorf("ParseDate(%q): no error", s)
		}
	}
}

// FuzzParse: no input makes Parse panic, and whatever it accepts encodes again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"9900302.00AY1AZFCA5", "9300CNmain/k1|COpw|AY0AZ0000", "11YN20261130    131900                  AOx|AAy|ABz|",
		"63001" + "20261130    131900" + "Y         AOx|AA1|BP1|BQ5|", "09N20261130    13190020261129    090000AB1|",
		"\xff\xfe", "", "AZ", "17AY1AZ", "96", "97AZFEF6",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw, '|')
		if err != nil {
			return
		}
		if _, ok := FixedLen(m.ID); !ok || len(m.Fixed) > len(raw) {
			t.Fatalf("Parse(%q) = %+v", raw, m)
		}
		for _, fl := range m.Fields {
			if len(fl.Code) != 2 {
				t.Fatalf("Parse(%q): field id %q", raw, fl.Code)
			}
		}
	})
}

// The example in the package comment is a valid message.
func TestPackageExample(t *testing.T) {
	m, err := Parse([]byte("11YN20261130    131900                  AOlethe|AA21000000000001|AB30000001|AC|AY3AZEDCF"), '|')
	if err != nil || m.Seq != 3 || !m.Checksum || m.Value("AB") != "30000001" {
		t.Errorf("Parse(package example) = %+v, %v", m, err)
	}
}
