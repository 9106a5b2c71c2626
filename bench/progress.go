package bench

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagineif/lethe/progress"
)

// progressLine is one line on stderr, redrawn in place, only on a terminal: the phase,
// a counter of requests done in it, and the time since the run began.
//
// It is not a progress.Bar: a run has no total to count to, and schollz/progressbar's
// mode without one (a spinner) does not fit. Between counts it redraws only from a ticker
// goroutine of the library's own, which nothing can wait for and which keeps drawing after
// Exit; Reset, which zeroes its counter for a new phase, restarts its clock too, where
// this line times the whole run; and it shows "(12345/-, 3000 it/s)" for "12,345 done".
// The ticker here has an owner: stop ends it and waits for it.
type progressLine struct {
	w     io.Writer
	tty   bool
	start time.Time
	mu    sync.Mutex
	phase string
	count atomic.Int64
	stopc chan struct{}
	done  chan struct{}
}

func newProgressLine(w io.Writer) *progressLine {
	p := &progressLine{w: w, tty: progress.IsTerminal(w), start: time.Now(), stopc: make(chan struct{}), done: make(chan struct{})}
	if !p.tty {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stopc:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progressLine) draw() {
	p.mu.Lock()
	phase := p.phase
	p.mu.Unlock()
	line := fmt.Sprintf("lethe bench · %s", phase)
	if n := p.count.Load(); n > 0 {
		line += fmt.Sprintf(" · %s done", thousands(n))
	}
	line += fmt.Sprintf(" · %s", time.Since(p.start).Round(time.Second))
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// set names the current phase and resets the counter.
func (p *progressLine) set(format string, args ...any) {
	p.mu.Lock()
	p.phase = fmt.Sprintf(format, args...)
	p.mu.Unlock()
	p.count.Store(0)
}

func (p *progressLine) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}
