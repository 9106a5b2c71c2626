package audit

import (
	"errors"
	"sync"

	"github.com/imagineif/lethe/ledger"
)

// errStopped ends a read whose results are no longer wanted.
var errStopped = errors.New("stopped")

// InOrder reads messages with read, runs work on each on workers goroutines (decoding is
// most of an auditor's work, and spreads over the cores), and hands the results to use
// in the order read, on one goroutine. The first error of use stops the read and is
// returned; otherwise read's. Every goroutine it starts has ended when it returns.
func InOrder[T any](read func(fn func(ledger.Msg) error) error, workers int, work func(ledger.Msg) T, use func(T) error) error {
	workers = max(workers, 1)
	type job struct {
		m    ledger.Msg
		out  T
		done chan struct{}
	}
	jobs := make(chan *job, 256*workers)
	order := make(chan *job, 256*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				j.out = work(j.m)
				close(j.done)
			}
		})
	}
	stop := make(chan struct{})
	var useErr error
	used := make(chan struct{})
	go func() {
		defer close(used)
		for j := range order {
			<-j.done
			if useErr == nil {
				if useErr = use(j.out); useErr != nil {
					close(stop)
				}
			}
		}
	}()
	err := read(func(m ledger.Msg) error {
		j := &job{m: m, done: make(chan struct{})}
		select {
		case <-stop:
			return errStopped
		case order <- j:
		}
		jobs <- j
		return nil
	})
	close(jobs)
	close(order)
	wg.Wait()
	<-used
	if useErr != nil {
		return useErr
	}
	return err
}
