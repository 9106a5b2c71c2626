package schemas

import (
	"encoding/json"
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
		if folds := foldKey(name) == foldKey("kid"); folds != matched {
			t.Errorf("foldKey(%q) == foldKey(\"kid\") is %v, but encoding/json matches it to kid: %v", name, folds, matched)
		}
	}
	if got := foldKey("\u017fealed"); got != "sealed" {
		t.Errorf("foldKey(long s + ealed) = %q, want %q", got, "sealed")
	}
	for _, name := range []string{"barcode", "amount_cents", "a1-b"} {
		if got := foldKey(name); got != name {
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
