// Package units reads and prints byte sizes ("20GiB") for config files
// and messages.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a byte count read from a config file: an integer with an
// optional unit, B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB
// (powers of 1000), e.g. "20GiB" or "1.5TB". A bare integer is bytes.
type Size int64

var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// ParseSize parses a size such as "20GiB". Negative sizes, unknown units
// and sizes past int64 are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := sizeUnits[strings.ToUpper(unit)]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)", s, unit)
	}
	if num == "" {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	if f < 0 || strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("size %q: negative", s)
	}
	v := f * mult
	if v >= math.MaxInt64 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(v), nil
}

// UnmarshalText reads a TOML string ("20GiB") or integer (bytes).
func (z *Size) UnmarshalText(b []byte) error {
	n, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*z = Size(n)
	return nil
}

// FormatSize prints n in binary units ("1.5 GiB").
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit || m <= -unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
