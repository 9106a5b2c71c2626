package main

import (
	"errors"
	"strconv"
	"strings"
)

// parseSize reads a size such as 256MiB, 2GiB or 0. A number needs a unit unless it is
// 0, so that "256" cannot be misread as bytes or as MiB.
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
		if err != nil || n > (1<<63)>>u.shift {
			break
		}
		return n << u.shift, nil
	}
	return 0, errors.New("not a size: write a number and a unit, such as 256MiB or 2GiB (or 0)")
}
