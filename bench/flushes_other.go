//go:build !linux

package bench

import "runtime"

// newDiskFlushes counts nothing: disk flushes are read from Linux's /sys.
func newDiskFlushes(string) diskFlushes {
	return diskFlushes{reason: "block device statistics are read from Linux's /sys, not on " + runtime.GOOS}
}
