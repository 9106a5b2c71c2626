package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestFoldKey checks foldKey against encoding/json itself: two names fold alike exactly
// when encoding/json matches both to the same struct field.
func TestFoldKey(t *testing.T) {
	t.Parallel()
	type target struct {
		Field string `json:"kid"`
	}
	for _, name := range []string{
		"kid", "KID", "Kid", "\u212aid", "k\u0130d", "kıd", "ki\u00f0", "kid ", "ki_d", "sealed", "\u017fealed", "SEALED",
	} {
		var got target
		if err := json.Unmarshal([]byte(`{"`+name+`":"x"}`), &got); err != nil {
			t.Fatal(err)
		}
		matched := got.Field == "x"
		if folds := string(foldKey([]byte(name))) == "kid"; folds != matched {
			t.Errorf("foldKey(%q) == foldKey(\"kid\") is %v, but encoding/json matches it to kid: %v", name, folds, matched)
		}
	}
	if got := string(foldKey([]byte("\u017fealed"))); got != "sealed" {
		t.Errorf("foldKey(long s + ealed) = %q, want %q", got, "sealed")
	}
	for _, name := range []string{"barcode", "amount_cents", "a1-b"} {
		if got := string(foldKey([]byte(name))); got != name {
			t.Errorf("foldKey(%q) = %q, want it unchanged", name, got)
		}
	}
}

func TestSafeNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, name, token string }{
		{"barcode", "barcode", "barcode"},
		{"amount_cents", "amount_cents", "amount_cents"},
		{"0", "?", "0"},
		{"12345", "?", "12345"},
		{"123456", "?", "?"},
		{markerCard, "?", "?"},
		{"Barcode", "?", "?"},
		{"abc1", "?", "?"},
		{"", "?", "?"},
		{strings.Repeat("a", 41), "?", "?"},
		{"a/b", "?", "?"},
	} {
		if got := safeName(tc.in); got != tc.name {
			t.Errorf("safeName(%q) = %q, want %q", tc.in, got, tc.name)
		}
		if got := safeToken(tc.in); got != tc.token {
			t.Errorf("safeToken(%q) = %q, want %q", tc.in, got, tc.token)
		}
	}
}

func TestCheckKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, want string }{
		{`{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}`, ""},
		{`{"a":"x\"y","b":"\\","c":"}{]["}`, ""},
		{`[]`, ""},
		{`{}`, ""},
		{`"a"`, ""},
		{`{"a":1,"a":2}`, "/a is a repeated property"},
		{`{"a":1,"\u0061":2}`, "/a is a repeated property"},
		{`{"a":1,"A":2}`, "/? is a repeated property"},
		{`{"a":{},"b":[],"c":{"x":1,"y":{"z":[]},"x":2}}`, "/c/x is a repeated property"},
		{`{"loans":[{"a":1},{"b":1,"b":2}]}`, "/loans/1/b is a repeated property"},
		{`[[1,2],[3,{"q":{"r":1,"r":1}}]]`, "/1/1/q/r is a repeated property"},
		{`{"x\"":1,"x\"":2}`, "/? is a repeated property"},
		{strings.Repeat("[", 32) + strings.Repeat("]", 32), ""},
		{strings.Repeat("[", 33) + strings.Repeat("]", 33), "JSON nested more than 32 levels deep"},
	} {
		err := checkKeys([]byte(tc.raw))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("checkKeys(%s) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

// TestCheckKeysManyNames checks that an object with very many names is checked in
// linear time, and that a repeat among them is still found.
func TestCheckKeysManyNames(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("{")
	for i := range 10000 {
		fmt.Fprintf(&b, `"k%d":0,`, i)
	}
	b.WriteString(`"k17":1}`)
	if err := checkKeys([]byte(b.String())); err == nil || err.Error() != "/? is a repeated property" {
		t.Errorf("checkKeys(10000 names, one repeated) = %v, want repeated", err)
	}
}

// TestLogLevel: refusals by the rules are quiet, faults loud, and unavailable loud only
// with a cause beneath it.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	bare := Errorf(CodeUnavailable, "the disk is nearly full")
	for _, c := range []struct {
		err  error
		want slog.Level
	}{
		{Errorf(CodeNotFound, "no such item"), slog.LevelDebug},
		{Errorf(CodeRateLimited, "slow down"), slog.LevelDebug},
		{bare, slog.LevelDebug},
		{fmt.Errorf("%w: stream did not answer", bare), slog.LevelWarn},
		{Errorf(CodeInternal, "x"), slog.LevelError},
		{errors.New("a plain fault"), slog.LevelError},
	} {
		if got := LogLevel(c.err); got != c.want {
			t.Errorf("LogLevel(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
