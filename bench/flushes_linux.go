//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// newDiskFlushes finds the disk holding dir: its device number (st_dev), then that block
// device in /sys (its parent disk for a partition).
func newDiskFlushes(dir string) diskFlushes {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return diskFlushes{reason: err.Error()}
	}
	major, minor := devMajor(st.Dev), devMinor(st.Dev)
	stat, disk, err := diskStat("/sys", major, minor)
	if errors.Is(err, fs.ErrNotExist) {
		return diskFlushes{reason: fmt.Sprintf("%s is on %s (device %d:%d), which has no block device", dir, fsType(dir), major, minor)}
	} else if err != nil {
		return diskFlushes{reason: err.Error()}
	}
	return diskFlushes{stat: stat, disk: disk}
}

// devMajor and devMinor split a Linux device number as glibc's major() and minor() do.
func devMajor(dev uint64) uint32 { return uint32((dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)) }
func devMinor(dev uint64) uint32 { return uint32(dev&0xff | (dev>>12)&^uint64(0xff)) }

// fsType names the file system of dir for the reason a disk is not counted.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "a file system"
	}
	switch uint32(st.Type) {
	case 0x01021994:
		return "tmpfs"
	case 0x794c7630:
		return "overlayfs"
	case 0x9123683e:
		return "btrfs"
	case 0x6969:
		return "NFS"
	case 0x65735546:
		return "FUSE"
	case 0x2fc12fc1:
		return "ZFS"
	}
	return fmt.Sprintf("a file system (type %#x)", uint32(st.Type))
}
