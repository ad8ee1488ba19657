package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnit returns the multiplier of a lower-cased unit. KiB and friends
// are binary, KB and friends decimal, as in config's sizes.
func sizeUnit(unit string) (float64, bool) {
	switch unit {
	case "", "b":
		return 1, true
	case "kib":
		return 1 << 10, true
	case "mib":
		return 1 << 20, true
	case "gib":
		return 1 << 30, true
	case "kb":
		return 1e3, true
	case "mb":
		return 1e6, true
	case "gb":
		return 1e9, true
	}
	return 0, false
}

// parseSize reads a byte count such as "300MiB", "1GB", "1.5GiB" or "4096".
// The unit's case does not matter. Fractions round down to whole bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnit(unit)
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q (use B, KiB, MiB, GiB, KB, MB or GB)", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	b := n * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}
