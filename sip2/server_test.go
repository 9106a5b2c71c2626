package sip2

import (
	"testing"
	"time"
)

// FuzzHandleBeforeLogin: any bytes a machine sends before logging in get an answer that
// is a well-formed SIP2 message (96, or the message's own refusal), never a panic, and
// the session is never logged in by it.
func FuzzHandleBeforeLogin(f *testing.F) {
	for _, s := range []string{
		"9900302.00", "11NN20261130    131900                  AOx|AAy|ABz|", "17", "63001",
		"01N20261130    131900AOx|", "15+20261130    131900", "96", "97AZFEF6", "35", "\xff", "",
	} {
		f.Add([]byte(s))
	}
	s := &Server{cfg: Config{}.withDefaults(), fails: map[string][]time.Time{}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) >= 2 && string(raw[:2]) == IDLogin {
			return // a login reaches the identity registry, which this test has not
		}
		ss := &session{ip: "192.0.2.1"}
		out, _ := s.handle(ss, raw)
		if len(out) < 2 {
			t.Fatalf("handle(%q) answered %q", raw, out)
		}
		if _, ok := FixedLen(string(out[:2])); !ok {
			t.Fatalf("handle(%q) answered an unknown message %q", raw, out)
		}
		if _, ok := ss.terminal(); ok {
			t.Fatalf("handle(%q) logged the session in", raw)
		}
	})
}

// TestCommandIDHoldsNoPatronData: the derived command id, which stays on the stream, does
// not depend on the card or the PIN (an unkeyed hash of them could be reversed by trying
// every card), and does depend on what tells two commands apart.
func TestCommandIDHoldsNoPatronData(t *testing.T) {
	id := func(term, raw string) string {
		m, err := Parse([]byte(raw), '|')
		if err != nil {
			t.Fatal(err)
		}
		return (&call{m: m, term: Terminal{Branch: "main", Kiosk: term}}).commandID("")
	}
	const fixed = "11NN20300101   Z090000                  "
	base := id("k1", fixed+"AOlethe|AA21000000000001|AB30000001|AD1234|AY1AZ"+Checksum([]byte(fixed+"AOlethe|AA21000000000001|AB30000001|AD1234|AY1AZ")))
	if got := id("k1", fixed+"AOlethe|AA21000000000002|AB30000001|AD9999|"); got == base {
		t.Fatal("the sequence number does not change the id")
	}
	for name, raw := range map[string]string{
		"another card and PIN": fixed + "AOlethe|AA21000000000002|AB30000001|AD9999|AY1AZ",
		"no PIN":               fixed + "AOlethe|AA21000000000003|AB30000001|AY1AZ",
	} {
		if got := id("k1", raw+Checksum([]byte(raw))); got != base {
			t.Errorf("%s: id %s, want %s: the card or PIN changed it", name, got, base)
		}
	}
	for name, raw := range map[string]string{
		"another item":     fixed + "AOlethe|AA21000000000001|AB30000002|AD1234|AY1AZ",
		"another date":     "11NN20300101   Z090001                  AOlethe|AA21000000000001|AB30000001|AD1234|AY1AZ",
		"another sequence": fixed + "AOlethe|AA21000000000001|AB30000001|AD1234|AY2AZ",
	} {
		if got := id("k1", raw+Checksum([]byte(raw))); got == base {
			t.Errorf("%s: same id", name)
		}
	}
	raw := fixed + "AOlethe|AA21000000000001|AB30000001|AD1234|AY1AZ"
	if id("k2", raw+Checksum([]byte(raw))) == base {
		t.Error("another terminal: same id")
	}
}
