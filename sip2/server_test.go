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
