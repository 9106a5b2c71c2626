package staff

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imagineif/lethe/phc"
	"github.com/imagineif/lethe/policy"
)

var r0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func rat(s int) time.Time { return r0.Add(time.Duration(s) * time.Second) }

// TestMergeRecordsOrderDoesNotMatter: copies of one account (a password change on one
// node, a disable on another, an enable later on a third) merged in every order, each
// twice, come to one record: the later status and the later password, both kept.
func TestMergeRecordsOrderDoesNotMatter(t *testing.T) {
	t.Parallel()
	h1, _ := phc.New("the first password")
	h2, _ := phc.New("the second password")
	base := Record{Name: "ann", Role: policy.Circulation, Created: rat(0), PasswordChanged: rat(0), StatusChanged: rat(0), Hash: h1}
	copies := []Record{base, base, base, base}
	copies[1].Hash, copies[1].PasswordChanged = h2, rat(10)
	copies[2].Disabled, copies[2].StatusChanged = true, rat(20)
	copies[3].StatusChanged = rat(30) // enabled again
	want := base
	want.Hash, want.PasswordChanged, want.StatusChanged = h2, rat(10), rat(30)
	orders := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}, {2, 3, 1, 0}}
	for _, order := range orders {
		got := copies[order[0]]
		for _, i := range append(order[1:], order...) {
			var err error
			if got, err = MergeRecords(got, copies[i]); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("merged in order %v (-want +got):\n%s", order, diff)
		}
	}

	tie := base
	tie.Disabled = true
	if got, _ := MergeRecords(base, tie); !got.Disabled {
		t.Error("a disable and an enable at the same time merged to enabled, want disabled")
	}
	second := base
	second.Created, second.Role, second.Hash = rat(5), policy.Administrator, h2
	for _, pair := range [][2]Record{{base, second}, {second, base}} {
		if got, _ := MergeRecords(pair[0], pair[1]); !sameRecord(got, base) {
			t.Errorf("an account made twice under one name merged to %+v, want the first one", got)
		}
	}
	if _, err := MergeRecords(base, Record{Name: "bob"}); err == nil {
		t.Error("MergeRecords of two accounts succeeded")
	}
}

// TestStoreMerge: an account read from one store (Records) and merged into another
// verifies there with the same password, its hash as it was; an older copy changes
// nothing and writes nothing; an invalid one is refused; a disable on a node whose clock
// lags still comes after the status it changes.
func TestStoreMerge(t *testing.T) {
	t.Parallel()
	const pw = "a long enough secret"
	a, b := openStore(t, t.TempDir(), nil), openStore(t, t.TempDir(), nil)
	if err := a.Add("ann", policy.Circulation, pw); err != nil {
		t.Fatal(err)
	}
	recs, err := a.Records()
	if err != nil || len(recs) != 1 {
		t.Fatalf("Records() = %v, %v", recs, err)
	}
	if changed, err := b.Merge(recs[0]); err != nil || !changed {
		t.Fatalf("Merge into an empty store = %v, %v, want true, nil", changed, err)
	}
	if _, err := b.Verify("ann", pw); err != nil {
		t.Errorf("Verify on the other store = %v", err)
	}
	if got, _ := b.Records(); !sameRecord(got[0], recs[0]) {
		t.Errorf("merged record %+v, want %+v", got[0], recs[0])
	}

	if err := b.Disable("ann"); err != nil {
		t.Fatal(err)
	}
	v := b.Version()
	if changed, err := b.Merge(recs[0]); err != nil || changed || b.Version() != v {
		t.Errorf("Merge of an older copy = %v, %v (version %d -> %d), want no change", changed, err, v, b.Version())
	}
	bad := recs[0]
	bad.Hash = "not a hash"
	if _, err := a.Merge(bad); err == nil {
		t.Error("Merge of a record with a malformed hash succeeded")
	}
	if _, err := a.Verify("ann", pw); err != nil {
		t.Errorf("Verify after a refused Merge = %v", err)
	}

	newer, _ := b.Records()
	if _, err := a.Merge(newer[0]); err != nil {
		t.Fatal(err)
	}
	if acct, _ := a.Get("ann"); !acct.Disabled {
		t.Error("a disable merged from another store did not disable")
	}
	a.now = func() time.Time { return newer[0].StatusChanged.Add(-time.Hour) } // a lagging clock
	if err := a.Enable("ann"); err != nil {
		t.Fatal(err)
	}
	enabled, _ := a.Records()
	if !enabled[0].StatusChanged.After(newer[0].StatusChanged) {
		t.Errorf("Enable with a lagging clock set its status at %v, not after %v", enabled[0].StatusChanged, newer[0].StatusChanged)
	}
}
