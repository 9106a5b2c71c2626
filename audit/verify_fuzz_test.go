package audit

import (
	"testing"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// FuzzVerify: no message an export or a damaged stream can hold makes verify panic, and
// what is not an event is reported, never passed.
func FuzzVerify(f *testing.F) {
	v, err := schemas.NewValidator()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"specversion":"1.0"}`), uint64(1))
	f.Add([]byte(`{"data":{"note":"lethe/circulation\n1\nAAAA\n\n— lethe AAAA\n","ct":1}}`), uint64(7))
	f.Add([]byte("\x00\xff"), uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, seq uint64) {
		vf := NewVerifier(v, VerifyOptions{Key: "lethe+00000000+AQ"})
		vf.Add(ledger.Msg{Seq: seq, Data: data})
		vf.Add(ledger.Msg{Seq: seq + 1, Data: data})
		if r := vf.Finish(); r.OK {
			t.Fatalf("a history of %q verified", data)
		}
		_, _ = scan(data)
	})
}
