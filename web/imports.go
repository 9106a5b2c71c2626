package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/imagineif/lethe/catalog"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/schemas"
)

// Catalog import from the browser: the file is read and every row checked first (a file
// with a bad row imports nothing, as with lethe items import); then the rows go to the
// bulk catalog route in the background, a thousand at a time, as the administrator who
// sent the file, and the page shows the progress by server-sent events.

// maxJobs is how many imports the client remembers (the oldest finished one is
// forgotten first); only one runs at a time.
const maxJobs = 8

type job struct {
	ID      string
	Owner   string // the staff account that sent the file
	Started time.Time

	mu       sync.Mutex
	total    int
	sent     int
	tally    desk.CatalogItemsResult
	problems []catalog.Problem
	err      error
	finished bool
}

// jobState is a job as its page and its events show it.
type jobState struct {
	ID        string            `json:"id"`
	Total     int               `json:"total"`
	Sent      int               `json:"sent"`
	New       int               `json:"new"`
	Updated   int               `json:"updated"`
	Unchanged int               `json:"unchanged"`
	Repeated  int               `json:"repeated"`
	Finished  bool              `json:"finished"`
	Error     *schemas.Error    `json:"error,omitempty"`
	Problems  []catalog.Problem `json:"-"`
	Refused   bool              `json:"refused"` // rows broke the rules: nothing was sent
}

func (j *job) state() jobState {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := jobState{ID: j.ID, Total: j.total, Sent: j.sent, New: j.tally.New, Updated: j.tally.Updated,
		Unchanged: j.tally.Unchanged, Repeated: j.tally.Repeated, Finished: j.finished,
		Problems: j.problems, Refused: len(j.problems) > 0}
	if j.err != nil {
		s.Error = schemas.Public(j.err)
	}
	return s
}

type jobs struct {
	mu      sync.Mutex
	list    []*job
	running bool
}

func (js *jobs) get(id, owner string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	for _, j := range js.list {
		if j.ID == id && j.Owner == owner {
			return j
		}
	}
	return nil
}

func (js *jobs) add(j *job) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if len(js.list) == maxJobs {
		js.list = js.list[1:]
	}
	js.list = append(js.list, j)
}

func (c *Client) importPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Import a catalog", "items"
	v.Data = &jobState{}
	c.render(w, v, "import")
}

// importFile reads the uploaded CSV, checks every row, and starts sending it.
func (c *Client) importFile(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Import a catalog", "items"
	v.Data = &jobState{}
	file, _, err := r.FormFile("file")
	if err != nil {
		drain(r)
		c.refuseOn(w, v, "import", schemas.Errorf(schemas.CodeInvalid, "choose a CSV file of at most %d MiB", MaxImportBytes>>20))
		return
	}
	defer file.Close()
	val, err := schemas.NewValidator()
	if err != nil {
		c.refuseOn(w, v, "import", err)
		return
	}
	rows, problems, err := catalog.Read(file, val)
	if err != nil {
		c.refuseOn(w, v, "import", schemas.Errorf(schemas.CodeInvalid, "%s", err.Error()))
		return
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	j := &job{ID: hex.EncodeToString(id), Owner: v.Who.Name, Started: c.Now(), total: len(rows), problems: problems}
	if len(problems) > 0 {
		j.finished = true
		c.jobs.add(j)
		http.Redirect(w, r, "/items/import/"+j.ID, http.StatusSeeOther)
		return
	}
	c.jobs.mu.Lock()
	busy := c.jobs.running
	c.jobs.running = !busy
	c.jobs.mu.Unlock()
	if busy {
		c.refuseOn(w, v, "import", schemas.Errorf(schemas.CodeConflict, "another import is running: wait for it to finish"))
		return
	}
	c.jobs.add(j)
	cookie := r.Header.Get("Cookie")
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.jobs.mu.Lock()
			c.jobs.running = false
			c.jobs.mu.Unlock()
		}()
		c.runImport(j, r, cookie, rows)
	}()
	http.Redirect(w, r, "/items/import/"+j.ID, http.StatusSeeOther)
}

// runImport sends the rows, a bulk request at a time, as the person who sent the file:
// their session must stay valid, and the API checks it on every request.
func (c *Client) runImport(j *job, r *http.Request, cookie string, rows []catalog.Row) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var err error
	for _, batch := range catalog.Batches(rows) {
		var res desk.CatalogItemsResult
		for wait := 100 * time.Millisecond; ; wait *= 2 {
			err = decodeReply(c.callWith(ctx, r, cookie, http.MethodPost, desk.CatalogItemsPath, catalog.Body(batch)), &res)
			if err == nil || schemas.CodeOf(err) != schemas.CodeUnavailable || wait > 5*time.Second {
				break
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				err = schemas.Errorf(schemas.CodeUnavailable, "the server is stopping: the import stopped")
			}
			if ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			err = fmt.Errorf("lines %d to %d: %w", batch[0].Line, batch[len(batch)-1].Line, err)
			break
		}
		j.mu.Lock()
		j.sent += len(batch)
		j.tally.New += res.New
		j.tally.Updated += res.Updated
		j.tally.Unchanged += res.Unchanged
		j.tally.Repeated += res.Repeated
		j.mu.Unlock()
	}
	j.mu.Lock()
	j.err, j.finished = err, true
	j.mu.Unlock()
}

func (c *Client) importJob(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Import a catalog", "items"
	j := c.jobs.get(r.PathValue("id"), v.Who.Name)
	if j == nil {
		v.Data = &jobState{}
		c.refuseOn(w, v, "import", schemas.Errorf(schemas.CodeNotFound, "no such import of yours"))
		return
	}
	st := j.state()
	v.Data = &st
	if st.Error != nil {
		v.Flash, v.Sound = refusal(st.Error), true
	}
	c.render(w, v, "import")
}

// importReport is the refused rows as CSV: line, barcode, column, the rule broken.
func (c *Client) importReport(w http.ResponseWriter, r *http.Request, v *view) {
	j := c.jobs.get(r.PathValue("id"), v.Who.Name)
	if j == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="import-report.csv"`)
	_ = catalog.WriteReport(w, j.state().Problems)
}

// importEvents streams a job's progress until it finishes.
func (c *Client) importEvents(w http.ResponseWriter, r *http.Request, v *view) {
	j := c.jobs.get(r.PathValue("id"), v.Who.Name)
	if j == nil {
		http.NotFound(w, r)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st := j.state()
		raw, _ := json.Marshal(st)
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: progress\ndata: %s\n\n", raw); err != nil || rc.Flush() != nil || st.Finished {
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		}
	}
}
