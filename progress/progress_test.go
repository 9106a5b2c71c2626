package progress

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestBar: on a terminal the bar shows the label, the count, the percent, the rate in
// items a second and the time left, and ends on a new line; elsewhere it draws nothing
// (lethe items import's summary line is all a log gets, as TestItemsImportBulk checks).
func TestBar(t *testing.T) {
	t.Parallel()
	var tty, pipe bytes.Buffer
	for _, w := range []*bytes.Buffer{&tty, &pipe} {
		p := barOn(w, w == &tty, "importing items", 2000)
		p.Add(1000)
		if w == &tty {
			for _, want := range []string{"importing items", " 50% ", "(1000/2000, ", " items/s)", "[0s:"} {
				if !strings.Contains(tty.String(), want) {
					t.Errorf("bar half way = %q, want %q in it", tty.String(), want)
				}
			}
		}
		p.Add(1000)
		p.Stop()
	}
	if !strings.Contains(tty.String(), "100% ") || !strings.HasSuffix(tty.String(), "\n") {
		t.Errorf("bar at the end = %q, want 100%% and a new line", tty.String())
	}
	if pipe.Len() != 0 {
		t.Errorf("a bar off a terminal drew %q, want nothing", pipe.String())
	}
}

// TestIsTerminal: a buffer and a regular file are not terminals.
func TestIsTerminal(t *testing.T) {
	t.Parallel()
	if IsTerminal(&bytes.Buffer{}) {
		t.Errorf("IsTerminal(buffer) = true, want false")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Errorf("IsTerminal(regular file) = true, want false")
	}
}
