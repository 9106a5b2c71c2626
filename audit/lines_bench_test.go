package audit_test

import (
	"fmt"
	"testing"

	"github.com/imagineif/lethe/audit"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// BenchmarkLines is lethe audit replay's decode of one message (Auditor.Lines), on the
// messages of a real history held in memory: the decode alone, without the read.
//
//	go test ./audit -run '^$' -bench Lines
func BenchmarkLines(b *testing.B) {
	h := lethetest.New(b)
	for p := range 5 {
		h.Register(fmt.Sprintf("2100000000%04d", p), fmt.Sprintf("Reader %d", p), "1980-01-01")
	}
	for i := range 50 {
		bc := fmt.Sprintf("B%05d", i)
		h.Catalog(bc, 100)
		h.MustCheckout(fmt.Sprintf("2100000000%04d", i%5), bc)
		h.Checkin(bc)
	}
	h.ExpungeAll()
	var msgs []ledger.Msg
	if err := ledger.ReadDirect(testkit.Context(b), h.S.NC, ledger.ReadOptions{}, func(m ledger.Msg) error { msgs = append(msgs, m); return nil }); err != nil {
		b.Fatal(err)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	a := audit.New(v, map[string]bool{})
	events := 0
	b.ResetTimer()
	for b.Loop() {
		for _, m := range msgs {
			lines, err := a.Lines(m)
			if err != nil {
				b.Fatal(err)
			}
			events += len(lines)
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
