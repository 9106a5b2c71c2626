package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/imagineif/lethe/catalog"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/progress"
	"github.com/imagineif/lethe/schemas"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// maxShownProblems is how many refused rows the import prints; --report has them all.
const maxShownProblems = 20

// importRetries is how often a request that the server could not take now (unavailable:
// busy, or the stream unreachable) is sent again. Its command ids make that safe.
const importRetries = 6

func cmdItemsImport(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("items import", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	workers := f.Int("workers", 3, fmt.Sprintf("requests in flight, each of up to %d items (at most %d)", ledger.MaxCatalogItems, desk.MaxBulkRequests))
	report := f.str("report", "", "write the rows that break the schema to this CSV file: line,barcode,column,error")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return &exitError{2, errors.New("usage: lethe items import [flags] FILE.csv")}
	}
	if *workers < 1 || *workers > desk.MaxBulkRequests {
		return &exitError{2, fmt.Errorf("--workers must be 1 to %d", desk.MaxBulkRequests)}
	}
	file, err := os.Open(f.Arg(0))
	if err != nil {
		return err
	}
	defer file.Close()
	v, err := schemas.NewValidator()
	if err != nil {
		return err
	}
	start := time.Now()
	rows, problems, err := catalog.Read(file, v)
	if err != nil {
		return err
	}
	if *report != "" {
		if err := writeReport(*report, problems); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		for _, p := range problems[:min(len(problems), maxShownProblems)] {
			fmt.Fprintln(stderr, p)
		}
		if n := len(problems) - maxShownProblems; n > 0 {
			fmt.Fprintf(stderr, "and %d more rows refused (--report FILE lists them all)\n", n)
		}
		lines := map[int]bool{}
		for _, p := range problems {
			lines[p.Line] = true
		}
		return fmt.Errorf("%s of %s rows refused; nothing was sent", count(len(lines)), count(len(rows)+len(lines)))
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no items in the file; nothing was sent")
		return nil
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	bar := progress.NewBar(stderr, "importing items", int64(len(rows)))
	tally, err := sendItems(ctx, c, rows, *workers, func(n int) { bar.Add(n) })
	bar.Stop()
	elapsed := time.Since(start)
	if err != nil {
		fmt.Fprintf(stderr, "import stopped; done before it: %s\n", tally)
		return err
	}
	fmt.Fprintf(stdout, "items: %s (%s rows in %s, %s rows/s)\n", tally, count(len(rows)),
		elapsed.Round(10*time.Millisecond), count(int(float64(len(rows))/max(elapsed.Seconds(), 1e-3))))
	return nil
}

// importTally counts what the server did with the rows sent, from its answers.
type importTally struct{ desk.CatalogItemsResult }

func (t importTally) String() string {
	s := fmt.Sprintf("%s new, %s updated, %s already cataloged unchanged", count(t.New), count(t.Updated), count(t.Unchanged))
	if t.Repeated > 0 {
		s += fmt.Sprintf(", %s not applied again (imported within the last hour, changed since)", count(t.Repeated))
	}
	return s
}

// sendItems sends rows in bulk requests (at most ledger.MaxCatalogItems rows and
// desk.MaxBulkBodyBytes each), workers at a time, calling done with the number of rows of
// each answered request. It stops at the first request refused. The tally is what the
// server answered for the requests it answered.
func sendItems(ctx context.Context, c *client, rows []catalog.Row, workers int, done func(int)) (importTally, error) {
	bodies := catalog.Batches(rows)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		tally    importTally
		firstErr error
	)
	jobs := make(chan []catalog.Row)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for batch := range jobs {
				res, err := sendBulk(ctx, c, batch)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					tally.New += res.New
					tally.Updated += res.Updated
					tally.Unchanged += res.Unchanged
					tally.Repeated += res.Repeated
				}
				mu.Unlock()
				if err == nil {
					done(len(batch))
				}
			}
		})
	}
feed:
	for _, b := range bodies {
		select {
		case jobs <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return tally, firstErr
}

// sendBulk sends one bulk request, again while the server answers unavailable, and checks
// that the answer is about the rows sent, one for one.
func sendBulk(ctx context.Context, c *client, batch []catalog.Row) (desk.CatalogItemsResult, error) {
	body := catalog.Body(batch)
	var out []byte
	var err error
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		out, err = c.send(ctx, http.MethodPost, desk.CatalogItemsPath, body)
		if err == nil || schemas.CodeOf(err) != schemas.CodeUnavailable || attempt == importRetries {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return desk.CatalogItemsResult{}, ctx.Err()
		}
		wait *= 2
	}
	if err != nil {
		return desk.CatalogItemsResult{}, fmt.Errorf("lines %d to %d: %w", batch[0].Line, batch[len(batch)-1].Line, err)
	}
	var res desk.CatalogItemsResult
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("decode the server's answer: %w", err)
	}
	if len(res.Items) != len(batch) || res.New+res.Updated+res.Unchanged+res.Repeated != len(batch) {
		return res, fmt.Errorf("the server answered for %d items, %d were sent", len(res.Items), len(batch))
	}
	for i, it := range res.Items {
		if it.Barcode != batch[i].Barcode {
			return res, fmt.Errorf("line %d: the server answered for another item", batch[i].Line)
		}
	}
	return res, nil
}

// count writes n with thousands separators: 100,000.
func count(n int) string { return message.NewPrinter(language.English).Sprintf("%d", n) }

// writeReport writes the refused rows to path as CSV (catalog.WriteReport). With no
// problems it holds the header only, so a stale report never survives a good run.
func writeReport(path string, problems []catalog.Problem) error {
	var buf bytes.Buffer
	if err := catalog.WriteReport(&buf, problems); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}
