package agent

import "testing"

func TestTwoDigits(t *testing.T) {
	for _, tt := range []struct{ in, want int64 }{
		{0, 0}, {99, 99}, {100, 100}, {104, 100}, {105, 110}, {2_345_678, 2_300_000}, {2_350_000, 2_400_000},
	} {
		if got := twoDigits(tt.in); got != tt.want {
			t.Errorf("twoDigits(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
