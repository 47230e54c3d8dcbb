package main

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"512", 512}, {"64MiB", 64 << 20}, {"64M", 64 << 20}, {" 2 GiB ", 2 << 30}, {"1tib", 1 << 40}, {"8KiB", 8 << 10}, {"0", 0},
	} {
		if got, err := parseBytes(tc.in); err != nil || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"lots", "not a byte count"},
		{"1.5GiB", "not a byte count"},
		{"99999999999GiB", "too large"},
		{"9223372036854775807K", "too large"},
	} {
		if got, err := parseBytes(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseBytes(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.want)
		}
	}
}
