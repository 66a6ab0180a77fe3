package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Binary units, as Exchange Online counts its message size limits.
const (
	kib ByteSize = 1 << 10
	mib ByteSize = 1 << 20
	gib ByteSize = 1 << 30
)

// sizeUnits are the accepted unit suffixes, lower-cased. MB means MiB here:
// that is what Exchange and Outlook mean by it.
var sizeUnits = map[string]ByteSize{
	"": 1, "b": 1,
	"k": kib, "kb": kib, "kib": kib,
	"m": mib, "mb": mib, "mib": mib,
	"g": gib, "gb": gib, "gib": gib,
}

// ByteSize is a size in bytes. As text it is a whole number with an optional
// unit, case-insensitive and binary: "36700160", "35MB", "35 MiB", "150mb".
// It is a pflag.Value, so it can be a flag.
type ByteSize int64

// String gives the size in the largest unit that divides it, e.g. "35 MiB".
func (b ByteSize) String() string {
	for _, u := range []struct {
		size ByteSize
		name string
	}{{gib, "GiB"}, {mib, "MiB"}, {kib, "KiB"}} {
		if b != 0 && b%u.size == 0 {
			return fmt.Sprintf("%d %s", b/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d B", int64(b))
}

// UnmarshalText parses a size such as "35MB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if !ok || err != nil || n > math.MaxInt64/int64(unit) {
		return fmt.Errorf("invalid size %q: want a whole number with an optional unit B, KB, MB or GB (1 MB = 1024 KB)", s)
	}
	*b = ByteSize(n) * unit
	return nil
}

// Set parses a size for a flag.
func (b *ByteSize) Set(s string) error { return b.UnmarshalText([]byte(s)) }

// Type names the flag's value in --help.
func (*ByteSize) Type() string { return "size" }

// Date is a calendar day, midnight UTC; the zero Date means unset. As text it
// is YYYY-MM-DD, or empty for unset (so "--since=" clears a config file's date).
// It is a pflag.Value, so it can be a flag.
type Date struct{ time.Time }

// String gives YYYY-MM-DD, or "" for the zero Date.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Format(time.DateOnly)
}

// UnmarshalText parses YYYY-MM-DD; empty text gives the zero Date.
func (d *Date) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		*d = Date{}
		return nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return fmt.Errorf("want a date as YYYY-MM-DD: %w", err)
	}
	d.Time = t
	return nil
}

// Set parses a date for a flag.
func (d *Date) Set(s string) error { return d.UnmarshalText([]byte(s)) }

// Type names the flag's value in --help.
func (*Date) Type() string { return "date" }
