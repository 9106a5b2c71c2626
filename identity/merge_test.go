package identity

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nkeys"

	"github.com/imagineif/lethe/phc"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time   { return t0.Add(time.Duration(s) * time.Second) }
func atp(s int) *time.Time { t := at(s); return &t }

func newKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func hashOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := phc.New(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// permutations calls f with every order of n indexes.
func permutations(n int, f func([]int)) {
	var walk func(p []int, rest []int)
	walk = func(p, rest []int) {
		if len(rest) == 0 {
			f(p)
			return
		}
		for i := range rest {
			next := append(append([]int{}, rest[:i]...), rest[i+1:]...)
			walk(append(p, rest[i]), next)
		}
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	walk(nil, all)
}

// TestMergeOrderDoesNotMatter: copies of one kiosk (two revocations, two SIP2 passwords,
// an untouched one) merged in every order, each more than once, come to one identity:
// revoked at the later revocation, with the later password.
func TestMergeOrderDoesNotMatter(t *testing.T) {
	t.Parallel()
	base := Identity{Kind: Kiosk, Branch: "main", Name: "k1", PublicKey: newKey(t), Added: at(0)}
	h1, h2 := hashOf(t, "first-password"), hashOf(t, "second-password")
	copies := []Identity{base, base, base, base, base}
	copies[1].Revoked = atp(30)
	copies[2].SIP2Password, copies[2].SIP2PasswordSet = h1, at(10)
	copies[3].SIP2Password, copies[3].SIP2PasswordSet = h2, at(20)
	copies[4].Revoked = atp(40)
	want := base
	want.Revoked, want.SIP2Password, want.SIP2PasswordSet = atp(40), h2, at(20)
	permutations(len(copies), func(order []int) {
		got := copies[order[0]]
		for _, i := range append(order[1:], order...) { // each twice: idempotent
			var err error
			if got, err = Merge(got, copies[i]); err != nil {
				t.Fatalf("Merge = %v", err)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("merged in order %v (-want +got):\n%s", order, diff)
		}
	})
	other := base
	other.Name = "k2"
	if _, err := Merge(base, other); !errors.Is(err, ErrConflict) {
		t.Errorf("Merge of two identities under one key = %v, want ErrConflict", err)
	}
}

// TestRegistryMerge: a registry takes copies from other nodes: new identities, a
// revocation that stays whatever comes after it, a revocation of a name that covers an
// identity of that name added before it and not one added after; nothing is written when
// nothing changes, and an invalid copy changes nothing.
func TestRegistryMerge(t *testing.T) {
	t.Parallel()
	r := Open(t.TempDir())
	k1, _, err := r.Add(Kiosk, "main", "k1", at(0))
	if err != nil {
		t.Fatal(err)
	}
	revoked := k1
	revoked.Revoked = atp(20)
	other := Identity{Kind: Kiosk, Branch: "main", Name: "k1", PublicKey: newKey(t), Added: at(10)} // re-added elsewhere before the revocation
	later := Identity{Kind: Kiosk, Branch: "main", Name: "k1", PublicKey: newKey(t), Added: at(30)} // added after it
	auditor := Identity{Kind: Auditor, Name: "ann", PublicKey: newKey(t), Added: at(5)}
	if changed, err := r.Merge([]Identity{revoked, other, auditor}); err != nil || !changed {
		t.Fatalf("Merge = %v, %v, want true, nil", changed, err)
	}
	active, err := r.Active()
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[auditor.PublicKey].Name != "ann" {
		t.Errorf("Active() = %v, want the auditor alone: the revocation at 20 s covers the kiosk added at 10 s", active)
	}
	all, _ := r.List()
	if len(all) != 3 || !all[1].Revoked.Equal(at(20)) {
		t.Errorf("List() = %+v, want 3 identities, the re-added kiosk revoked at 20 s", all)
	}

	v, _ := r.Version()
	if changed, err := r.Merge([]Identity{k1, other, auditor}); err != nil || changed {
		t.Errorf("Merge of active copies of revoked identities = %v, %v, want false, nil", changed, err)
	}
	if v2, _ := r.Version(); v2 != v {
		t.Error("a Merge that changed nothing replaced the file")
	}
	if _, err := r.Merge([]Identity{later}); err != nil {
		t.Fatal(err)
	}
	if active, _ := r.Active(); len(active) != 2 || active[later.PublicKey].Name != "k1" {
		t.Errorf("Active() = %v, want the kiosk added after its revocation, and the auditor", active)
	}

	before, _ := os.ReadFile(r.Path())
	bad := Identity{Kind: Kiosk, Branch: "main", Name: "k 9", PublicKey: newKey(t), Added: at(1)}
	conflict := later
	conflict.Name = "k2"
	for _, ids := range [][]Identity{{auditor, bad}, {auditor, conflict}} {
		if _, err := r.Merge(ids); err == nil {
			t.Errorf("Merge(%+v) succeeded, want an error", ids)
		}
	}
	if after, _ := os.ReadFile(r.Path()); string(after) != string(before) {
		t.Error("a refused Merge changed the registry")
	}
}

// TestAddAfterRevocation: a node whose clock is behind the one that revoked a name adds
// it again after the revocation, so the revocation does not cover the new identity.
func TestAddAfterRevocation(t *testing.T) {
	t.Parallel()
	r := Open(t.TempDir())
	k1 := Identity{Kind: Kiosk, Branch: "main", Name: "k1", PublicKey: newKey(t), Added: at(0), Revoked: atp(60)}
	if _, err := r.Merge([]Identity{k1}); err != nil {
		t.Fatal(err)
	}
	k2, _, err := r.Add(Kiosk, "main", "k1", at(50)) // this clock lags by more than 10 s
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Added.After(at(60)) {
		t.Errorf("Add after a revocation at 60 s made an identity added at %v", k2.Added)
	}
	if _, err := r.Merge([]Identity{k1}); err != nil {
		t.Fatal(err)
	}
	if active, _ := r.Active(); len(active) != 1 {
		t.Errorf("Active() = %v, want the new kiosk", active)
	}
}

// TestLaterRevocationCovers: a kiosk revoked on node B at 10 s and re-added there at
// 15 s, while node C, which had not heard of either, revoked it at 20 s: the two
// revocations meet, the later one is kept, and it covers the re-added kiosk, as the three
// commands would have ended in the order of their times.
func TestLaterRevocationCovers(t *testing.T) {
	t.Parallel()
	r := Open(t.TempDir())
	k1 := Identity{Kind: Kiosk, Branch: "main", Name: "k1", PublicKey: newKey(t), Added: at(0), Revoked: atp(10)}
	k2 := Identity{Kind: Kiosk, Branch: "main", Name: "k1", PublicKey: newKey(t), Added: at(15)}
	if _, err := r.Merge([]Identity{k1, k2}); err != nil {
		t.Fatal(err)
	}
	fromC := k1
	fromC.Revoked = atp(20)
	if _, err := r.Merge([]Identity{fromC}); err != nil {
		t.Fatal(err)
	}
	if active, _ := r.Active(); len(active) != 0 {
		t.Errorf("Active() = %v, want none: the revocation at 20 s covers the kiosk added at 15 s", active)
	}
}
