package expunger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/imagineif/lethe/internal/atomicfile"
)

// The erasure watermark.
//
// What the expunger knows about transactions awaiting erasure lives in memory: a restart
// would forget a key destroyed just before it, whose sweep had not run, and a deadline
// that passed while the server was down would go uncounted. So after every successful
// sweep it writes, to a small file beside the data, the stream sequence up to which every
// transaction.expunged record is proven erased: the projections' position when the sweep
// began (a record lands after its key is destroyed, so every record at or before it
// belongs to a key that sweep erased). At the next start, the records after it are handed
// back (Resume) and the first sweep settles them, their deadlines and misses counted as
// always.

// watermark is the file's content.
type watermark struct {
	Version     int    `json:"version"`
	ErasedToSeq uint64 `json:"erased_to_seq"`
}

// Awaiting is a transaction whose key was destroyed and whose erasure is not yet proven.
type Awaiting struct {
	TxnID       string
	ClosedAt    time.Time
	DestroyedAt time.Time
}

// ErasedToSeq returns the watermark: every transaction.expunged record at or before it is
// proven erased. ok is false when none was kept (no StateFile, or no sweep yet).
func (e *Expunger) ErasedToSeq() (seq uint64, ok bool, err error) {
	if e.cfg.StateFile == "" {
		return 0, false, nil
	}
	data, err := os.ReadFile(e.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("erasure watermark: %w", err)
	}
	var w watermark
	if err := json.Unmarshal(data, &w); err != nil || w.Version != 1 {
		return 0, false, fmt.Errorf("erasure watermark %s is damaged: remove it (the misses of the last downtime then go uncounted)", e.cfg.StateFile)
	}
	return w.ErasedToSeq, true, nil
}

// Resume hands back, at a start, the transactions whose key was destroyed after the
// watermark: the next sweep erases them, and counts any whose deadline passed.
func (e *Expunger) Resume(items []Awaiting) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range items {
		e.awaitErasure = append(e.awaitErasure, awaiting{txnID: a.TxnID, closedAt: a.ClosedAt, destroyedAt: a.DestroyedAt})
	}
}

// writeWatermark records seq as erased, atomically.
func (e *Expunger) writeWatermark(seq uint64) error {
	if e.cfg.StateFile == "" {
		return nil
	}
	data, _ := json.Marshal(watermark{Version: 1, ErasedToSeq: seq})
	return atomicfile.Write(e.cfg.StateFile, data)
}
