package audit

import (
	"encoding/json"
	"testing"
)

// TestDetectors plants each shape of personal data in an event's fields and checks it is
// found where it is, and that what Lethe's events legitimately hold is not taken for it.
func TestDetectors(t *testing.T) {
	planted := []struct{ value, detector string }{
		{"write to ann.reader@example.org", "e-mail address"},
		{"card 21000000000001", "card number"},
		{"21000000000001", "card number"},
		{"call 406-555-0147", "phone number"},
		{"(406) 555 0147", "phone number"},
		{"1980-05-17", "date of birth"},
	}
	for _, p := range planted {
		data, _ := json.Marshal(map[string]any{"txn_id": "5b1e6f9a-3c2d-4e8f-9a0b-1c2d3e4f5a6b", "reason": p.value})
		found := Detect(data)
		if len(found) == 0 || found[0].Detector != p.detector || found[0].Path != "/reason" {
			t.Errorf("%q: found %+v, want %s at /reason", p.value, found, p.detector)
		}
	}
	clean := map[string]any{
		"txn_id":    "5b1e6f9a-3c2d-4e8f-9a0b-1c2d3e4f5a6b",
		"card_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"barcode":   "300000012345",
		"title":     "The Lathe of Heaven (ISBN 9780060512750)",
		"due":       "2026-12-21T17:00:00Z",
		"station":   "kiosk-2",
		"source":    "lethe/kiosk/main/k1",
		"amount":    2500,
		"patron":    map[string]any{"kid": "5b1e6f9a", "nonce": "AAAA", "ct": "ann@example.org 21000000000001"},
		"root":      "PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw=",
	}
	data, _ := json.Marshal(clean)
	if found := Detect(data); len(found) > 0 {
		t.Errorf("legitimate fields taken for personal data: %+v", found)
	}
	if _, kids := scan(data); len(kids) != 1 || kids[0] != "5b1e6f9a" {
		t.Errorf("sealed kids = %v, want the patron's", kids)
	}
}
