package config

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// sizeUnit returns the multiplier of a lower-cased unit. KiB and friends are
// binary, KB and friends decimal, as their names say.
func sizeUnit(unit string) (int64, bool) {
	switch unit {
	case "", "b":
		return 1, true
	case "kib":
		return 1 << 10, true
	case "mib":
		return 1 << 20, true
	case "gib":
		return 1 << 30, true
	case "tib":
		return 1 << 40, true
	case "kb":
		return 1e3, true
	case "mb":
		return 1e6, true
	case "gb":
		return 1e9, true
	case "tb":
		return 1e12, true
	}
	return 0, false
}

const sizeHelp = "(use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"

// ParseSize parses a byte size such as "6GiB", "512MiB", "1GB", "300MB",
// "123B" or "123". A number without a unit is bytes. The unit's case does not
// matter ("6gib" is 6GiB): there is no unit in bits to confuse it with. A
// decimal fraction is allowed ("1.5GiB") and rounded down to whole bytes;
// space between the number and the unit is allowed. Negative sizes, sizes
// beyond int64 and unknown units are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := sizeUnit(strings.ToLower(unit))
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q %s", s, sizeHelp)
	}
	// big.Rat keeps "1.1GiB" exact and lets overflow be detected rather
	// than wrap around.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q %s", s, sizeHelp)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n.Int64(), nil
}

// FormatSize writes n in the largest binary unit that keeps one decimal
// ("1.5GiB", "300MiB", "12B"): what ParseSize reads back.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	units := "KMGTPE"
	v := float64(n)
	i := -1
	for (v >= unit || v <= -unit) && i < len(units)-1 {
		v /= unit
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + units[i:i+1] + "iB"
}
