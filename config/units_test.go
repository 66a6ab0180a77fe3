package config

import (
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		str  string
		bad  bool
	}{
		{in: "36700160", want: 35 * mib, str: "35 MiB"},
		{in: "35MB", want: 35 * mib, str: "35 MiB"},
		{in: " 35 MiB ", want: 35 * mib, str: "35 MiB"},
		{in: "150mb", want: 150 * mib, str: "150 MiB"},
		{in: "1k", want: kib, str: "1 KiB"},
		{in: "2 GB", want: 2 * gib, str: "2 GiB"},
		{in: "1536 KiB", want: 1536 * kib, str: "1536 KiB"},
		{in: "1000", want: 1000, str: "1000 B"},
		{in: "7b", want: 7, str: "7 B"},
		{in: "0", want: 0, str: "0 B"},
		{in: "", bad: true},
		{in: "MB", bad: true},
		{in: "-1MB", bad: true},
		{in: "1.5MB", bad: true},
		{in: "35 TB", bad: true},
		{in: "35 M B", bad: true},
		{in: "9223372036854775807 KB", bad: true},
		{in: "99999999999999999999", bad: true},
	}
	for _, tt := range tests {
		var b ByteSize
		err := b.Set(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("Set(%q) = %d, want error", tt.in, b)
		case !tt.bad && (err != nil || b != tt.want || b.String() != tt.str):
			t.Errorf("Set(%q) = %d (%q), %v; want %d (%q)", tt.in, b, b.String(), err, tt.want, tt.str)
		}
	}
}

func TestDate(t *testing.T) {
	tests := []struct {
		in   string
		want Date
		bad  bool
	}{
		{in: "2024-01-31", want: Date{time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)}},
		{in: " 2024-02-29 ", want: Date{time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)}},
		{in: "", want: Date{}},
		{in: "2023-02-29", bad: true},
		{in: "2024-1-31", bad: true},
		{in: "31.01.2024", bad: true},
		{in: "2024-01-31T10:00:00Z", bad: true},
	}
	for _, tt := range tests {
		d := Date{time.Now()} // Set must overwrite, even with ""
		err := d.Set(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("Set(%q) = %v, want error", tt.in, d)
		case !tt.bad && (err != nil || !d.Equal(tt.want.Time) || d.String() != tt.want.String()):
			t.Errorf("Set(%q) = %v, %v; want %v", tt.in, d, err, tt.want)
		}
	}
	if s := (Date{time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)}).String(); s != "2024-01-31" {
		t.Errorf("String() = %q", s)
	}
}
