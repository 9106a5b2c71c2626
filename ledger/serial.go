package ledger

import (
	"hash/maphash"
	"slices"
	"sync"
)

// Invariants that span subjects. A command's append is conditional on the subject it
// writes (an expectation on one subject is all JetStream offers), but some rules read
// other subjects: a checkout checks the patron's loan limit and that the account is open,
// while close_patron and other checkouts for the same patron write elsewhere; two
// registrations with one card write two new patrons' subjects. Decided on the same state,
// both would be appended.
//
// So a decision names what it relies on beyond its own subject (plan.locks: "p/<patron
// id>", "c/<card hash>"), and commands relying on the same thing run one after another in
// this process: decided, appended and applied under a lock, so the next one decides on a
// state that includes the first. The stream cannot carry this: an event on the patron's
// subject for every loan would put the patron next to the item, in the clear, forever.
// One Lethe process serves a data directory, so a process-wide lock is enough; several
// processes over one stream need the same serialisation between them.

// lockStripes is how many mutexes the locks hash onto: two keys on one stripe only wait
// for each other, never deadlock (stripes are taken in ascending order).
const lockStripes = 256

// locks serialises decisions that rely on the same patron or card.
type locks struct {
	seed    maphash.Seed
	stripes [lockStripes]sync.Mutex
}

func newLocks() *locks { return &locks{seed: maphash.MakeSeed()} }

// held is a set of stripes one command holds.
type held struct {
	l       *locks
	stripes []int // ascending
}

// covers reports whether every key's stripe is held.
func (h held) covers(keys []string) bool {
	for _, k := range keys {
		if _, ok := slices.BinarySearch(h.stripes, h.l.stripe(k)); !ok {
			return false
		}
	}
	return true
}

func (l *locks) stripe(key string) int { return int(maphash.String(l.seed, key) % lockStripes) }

// acquire locks the stripes of keys and of h (which it releases first, so a command never
// waits while holding a stripe out of order).
func (l *locks) acquire(h held, keys []string) held {
	want := slices.Clone(h.stripes)
	h.release()
	for _, k := range keys {
		want = append(want, l.stripe(k))
	}
	slices.Sort(want)
	want = slices.Compact(want)
	for _, s := range want {
		l.stripes[s].Lock()
	}
	return held{l: l, stripes: want}
}

// release unlocks what h holds.
func (h held) release() {
	for i := len(h.stripes) - 1; i >= 0; i-- {
		h.l.stripes[h.stripes[i]].Unlock()
	}
}

// patronLock and cardLock are the keys of plan.locks.
func patronLock(id string) string { return "p/" + id }
func cardLock(hash string) string { return "c/" + hash }
