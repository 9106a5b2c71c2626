package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
)

// importNamespace makes an import row's command id a function of its content, so
// importing the same file twice appends nothing new.
var importNamespace = uuid.MustParse("3e0c2b1d-7f5a-4e8b-a6c9-1d2e3f4a5b6c")

var itemColumns = []string{"barcode", "title", "collection", "branch", "replacement_cents"}

func cmdItemsImport(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("items import", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	workers := f.Int("workers", 8, "concurrent requests")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return &exitError{2, errors.New("usage: lethe items import [flags] FILE.csv")}
	}
	file, err := os.Open(f.Arg(0))
	if err != nil {
		return err
	}
	defer file.Close()
	rows, err := readItems(file)
	if err != nil {
		return err
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	var done, failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	jobs := make(chan []string)
	var wg sync.WaitGroup
	for range max(*workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range jobs {
				cents, _ := strconv.ParseInt(r[4], 10, 64)
				_, err := c.command(ctx, schemas.CmdCatalogItem, map[string]any{
					"command_id": uuid.NewSHA1(importNamespace, []byte(strings.Join(r, "\x00"))).String(),
					"barcode":    r[0], "title": r[1], "collection": r[2], "branch": r[3], "replacement_cents": cents,
				})
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("item %s: %w", r[0], err)
					}
					mu.Unlock()
				}
				done.Add(1)
			}
		}()
	}
	progress := newProgress(stderr, "importing items", int64(len(rows)), &done)
	for _, r := range rows {
		select {
		case jobs <- r:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	progress.stop()
	fmt.Fprintf(stdout, "imported %d items, %d refused\n", done.Load()-failed.Load(), failed.Load())
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// readItems reads and checks the whole CSV before anything is sent: a file with a bad row
// imports nothing.
func readItems(r io.Reader) ([][]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(itemColumns)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read CSV header: %w", err)
	}
	for i, c := range itemColumns {
		if strings.TrimSpace(strings.ToLower(head[i])) != c {
			return nil, fmt.Errorf("CSV header must be %s", strings.Join(itemColumns, ","))
		}
	}
	var rows [][]string
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("CSV: %w", err)
		}
		if _, err := strconv.ParseInt(rec[4], 10, 64); err != nil {
			return nil, fmt.Errorf("CSV line %d: replacement_cents must be a whole number of cents", line)
		}
		rows = append(rows, rec)
	}
}

// progress prints "label n/total" on one line, refreshed, when w is a terminal.
type progress struct {
	stopc chan struct{}
	done  chan struct{}
}

func newProgress(w io.Writer, label string, total int64, n *atomic.Int64) *progress {
	p := &progress{stopc: make(chan struct{}), done: make(chan struct{})}
	if !isTerminal(w) {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "\r%s %d/%d", label, n.Load(), total)
			select {
			case <-p.stopc:
				fmt.Fprintf(w, "\r%s %d/%d\n", label, n.Load(), total)
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *progress) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}
