package audit

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/imagineif/lethe/ledger"
)

// TestInOrder: results reach use in the order read whatever order the workers finish
// in; an error of use stops the read and is returned; an error of read is returned.
func TestInOrder(t *testing.T) {
	t.Parallel()
	read := func(n int) func(fn func(ledger.Msg) error) error {
		return func(fn func(ledger.Msg) error) error {
			for i := 1; i <= n; i++ {
				if err := fn(ledger.Msg{Seq: uint64(i)}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	work := func(m ledger.Msg) uint64 {
		for range rand.IntN(200) { // workers finish out of order
			runtime.Gosched()
		}
		return m.Seq
	}
	var got []uint64
	if err := InOrder(read(2000), 4, work, func(s uint64) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("result %d is of sequence %d", i, s)
		}
	}
	if len(got) != 2000 {
		t.Fatalf("%d results of 2000", len(got))
	}

	stop := errors.New("enough")
	read10k := 0
	err := InOrder(func(fn func(ledger.Msg) error) error {
		err := read(10000)(func(m ledger.Msg) error { read10k++; return fn(m) })
		if !errors.Is(err, errStopped) {
			t.Errorf("read ended with %v, want it stopped", err)
		}
		return err
	}, 2, work, func(s uint64) error {
		if s == 100 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || read10k == 10000 {
		t.Errorf("use's error: InOrder = %v after %d reads, want %v before the end", err, read10k, stop)
	}

	failed := errors.New("stream gone")
	if err := InOrder(func(fn func(ledger.Msg) error) error { return failed }, 2, work, func(uint64) error { return nil }); !errors.Is(err, failed) {
		t.Errorf("read's error: InOrder = %v, want %v", err, failed)
	}
}
