package node

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// freeDisk returns what ledger.Config.FreeDisk needs: the bytes free to an ordinary user
// (statfs f_bavail) on the disk holding the data directory. It takes the least over the
// directory and the parts of it Lethe writes, because an operator may have mounted one of
// them on a disk of its own; a part that does not exist yet is skipped.
func freeDisk(data string) func() (uint64, error) {
	parts := []string{data}
	for _, p := range []string{"nats", "keystore", "projections", "staff"} {
		parts = append(parts, filepath.Join(data, p))
	}
	return func() (uint64, error) {
		least := uint64(0)
		for i, p := range parts {
			var st syscall.Statfs_t
			if err := syscall.Statfs(p, &st); err != nil {
				if i > 0 && errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return 0, fmt.Errorf("statfs %s: %w", p, err)
			}
			free := uint64(st.Bavail) * uint64(st.Bsize)
			if i == 0 || free < least {
				least = free
			}
		}
		return least, nil
	}
}

// checkFreeDisk refuses to start on a disk with less than min bytes free (0: no check).
// Starting there does not fail cleanly on its own: Pebble stops the process when it
// cannot write the MANIFEST of a new database, hangs in Open when an existing one has a
// log to replay (it retries the flush forever), and JetStream refuses to create the
// stream.
func checkFreeDisk(data string, min uint64) error {
	if min == 0 {
		return nil
	}
	free, err := freeDisk(data)()
	if err != nil {
		return fmt.Errorf("free space of the data directory's disk: %w", err)
	}
	if free < min {
		return fmt.Errorf("the disk holding the data directory %s has %d MiB free, less than the minimum of %d MiB (--min-free-disk, LETHE_MIN_FREE_DISK): free some space, or lower the minimum, and start again",
			data, free>>20, min>>20)
	}
	return nil
}
