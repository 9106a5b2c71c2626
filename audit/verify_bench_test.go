package audit_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/imagineif/lethe/audit"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// BenchmarkVerify reads one real history (loans opened, returned, fined, expunged, with
// checkpoints) twice in the same run: raw, as JetStream's direct reads deliver it and
// nothing more, and through lethe audit verify's checks. events/s of each is reported;
// the target is verify at half the raw rate or better.
//
//	go test ./audit -run '^$' -bench Verify -benchtime 5x
func BenchmarkVerify(b *testing.B) {
	h := lethetest.New(b)
	ctx := testkit.Context(b)
	const patrons, loans = 20, 400
	for p := range patrons {
		h.Register(fmt.Sprintf("2100000000%04d", p), fmt.Sprintf("Reader %d", p), "1980-01-01")
	}
	for i := range loans {
		bc := fmt.Sprintf("B%05d", i)
		h.Catalog(bc, 100)
		h.MustCheckout(fmt.Sprintf("2100000000%04d", i%patrons), bc)
		h.Checkin(bc)
		if i%100 == 99 {
			h.ExpungeAll()
			if _, err := h.S.Checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	h.ExpungeAll()
	if _, err := h.S.Checkpoint(ctx); err != nil {
		b.Fatal(err)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	key := h.S.VerifierKey()
	// The events the history holds (a command's several events are one message): both
	// rates are given in them, so their ratio is the ratio of the two reads' times.
	events := 0
	if err := ledger.ReadDirect(ctx, h.S.NC, ledger.ReadOptions{}, func(m ledger.Msg) error {
		parts, err := schemas.SplitEvents(m.Data)
		events += len(parts)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			err := ledger.ReadDirect(ctx, h.S.NC, ledger.ReadOptions{}, func(m ledger.Msg) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			vf := audit.NewVerifier(v, audit.VerifyOptions{Key: key})
			err := vf.AddAll(func(fn func(ledger.Msg) error) error {
				return ledger.ReadDirect(ctx, h.S.NC, ledger.ReadOptions{}, fn)
			}, runtime.GOMAXPROCS(0))
			if err != nil {
				b.Fatal(err)
			}
			if r := vf.Finish(); !r.OK {
				b.Fatalf("the history does not verify: %+v", r.Problems)
			}
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
