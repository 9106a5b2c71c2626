//go:build linux

package bench

import "testing"

func TestDevNumbers(t *testing.T) {
	t.Parallel()
	// makedev as glibc encodes it.
	makedev := func(major, minor uint32) uint64 {
		ma, mi := uint64(major), uint64(minor)
		return mi&0xff | (ma&0xfff)<<8 | (mi&^0xff)<<12 | (ma&^0xfff)<<32
	}
	for _, tc := range []struct {
		dev          uint64
		major, minor uint32
	}{
		{0xfe00, 254, 0}, // vda, as stat(2) gave it on this project's machine
		{0x0801, 8, 1},   // sda1
		{makedev(259, 0x12345), 259, 0x12345},
		{makedev(0x12345, 7), 0x12345, 7},
	} {
		if ma, mi := devMajor(tc.dev), devMinor(tc.dev); ma != tc.major || mi != tc.minor {
			t.Errorf("dev %#x = %d:%d, want %d:%d", tc.dev, ma, mi, tc.major, tc.minor)
		}
	}
}
