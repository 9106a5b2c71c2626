package replica

import (
	"encoding/hex"
	"errors"
	"strconv"

	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// accounts is the staff store as a mirror's local copy: an entry per account, keyed by
// its name in hex, merged by staff.MergeRecords. The store logs what it merges.
type accounts struct{ st *staff.Store }

func (accounts) key(r staff.Record) string { return hex.EncodeToString([]byte(r.Name)) }

func (a accounts) decode(key string, raw []byte) (staff.Record, error) {
	var r staff.Record
	if err := schemas.DecodeStrict(raw, &r); err != nil {
		return staff.Record{}, err
	}
	if err := r.Validate(); err != nil {
		return staff.Record{}, err
	}
	if a.key(r) != key {
		return staff.Record{}, errors.New("the entry's key is not its account's name")
	}
	return r, nil
}

func (accounts) merge(a, b staff.Record) (staff.Record, error) { return staff.MergeRecords(a, b) }

func (a accounts) list() ([]staff.Record, error) { return a.st.Records() }

func (a accounts) apply(rs []staff.Record) error {
	var errs []error
	for _, r := range rs {
		if _, err := a.st.Merge(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a accounts) version() (string, error) { return strconv.FormatUint(a.st.Version(), 10), nil }
