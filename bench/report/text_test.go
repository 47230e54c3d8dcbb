package report

import (
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/bench"
)

func TestText(t *testing.T) {
	real, sim, central := fixtures()
	withGossip := real[1]
	withGossip.Gossip99S, withGossip.Gossip100S, withGossip.Notes = 0.61, 0.83, "loopback"
	tests := []struct {
		golden string
		r      bench.Result
	}{
		{"text_real.txt", withGossip},
		{"text_sim.txt", sim[3]},
		{"text_central.txt", central[0]},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var b strings.Builder
			if err := Text(&b, tt.r); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, b.String())
		})
	}
}

func TestBytesText(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1536, "1.5 KiB"},
		{64 * mib, "64 MiB"},
		{64*mib + 100*1024, "64.1 MiB"},
		{3 << 30, "3 GiB"},
		{3<<30 + 300*mib, "3.29 GiB"},
	}
	for _, tt := range tests {
		if got := bytesText(tt.n); got != tt.want {
			t.Errorf("bytesText(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
