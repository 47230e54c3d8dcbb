package bench

import (
	"math"
	"testing"
)

func TestTStar(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name string
		p    Params
		want float64
	}{
		// Origin-bound: one node, slow origin.
		{"origin bound", Params{Nodes: 1, SizeBytes: 64 * MiB, OriginUp: 2 * MiB, NodeUp: 2 * MiB, NodeDown: 100 * MiB}, 32},
		// Download-bound: fast everything but the nodes' downlinks.
		{"download bound", Params{Nodes: 10, SizeBytes: 64 * MiB, OriginUp: 1000 * MiB, NodeUp: 1000 * MiB, NodeDown: 4 * MiB}, 16},
		// Aggregate-upload bound: 200 nodes at 2 MiB/s, origin 50 MiB/s.
		{"upload bound", Params{Nodes: 200, SizeBytes: 64 * MiB, OriginUp: 50 * MiB, NodeUp: 2 * MiB, NodeDown: 100 * MiB}, 200 * 64.0 / (50 + 400)},
		// No download cap: that term is left out.
		{"no down cap", Params{Nodes: 4, SizeBytes: 8 * MiB, OriginUp: 8 * MiB, NodeUp: 0}, 1},
		{"no caps", Params{Nodes: 4, SizeBytes: 8 * MiB}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TStar(tc.p); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("TStar = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTStarNeverAboveCentral(t *testing.T) {
	for n := 1; n <= 5000; n *= 3 {
		p := Params{Nodes: n, SizeBytes: 1 << 30, OriginUp: 1250 << 20, NodeUp: 125 << 20, NodeDown: 125 << 20}
		if ts, c := TStar(p), CentralTime(p); ts > c+1e-9 {
			t.Fatalf("N=%d: T* %v above the central bound %v", n, ts, c)
		}
	}
}

func TestResultFinish(t *testing.T) {
	r := Result{
		Params:      Params{Nodes: 4, SizeBytes: 100, OriginUp: 50, NodeUp: 50},
		Completions: []float64{4, 1, 3, 2},
		OriginBytes: 150, PeerBytes: 250,
	}
	r.Finish()
	if r.CompletionS != 4 || r.CompletionP50S != 2 || r.CompletionP90S != 4 {
		t.Errorf("percentiles: %+v", r)
	}
	if r.OriginEgressRatio != 1.5 || r.PeerShare != 250.0/400 {
		t.Errorf("ratios: origin %v peers %v", r.OriginEgressRatio, r.PeerShare)
	}
	// T* = max(100/50, 4*100/(50+200)) = 2.
	if r.TStarS != 2 || r.CompletionRatio != 2 {
		t.Errorf("T* %v ratio %v", r.TStarS, r.CompletionRatio)
	}
}

func TestParamsValidate(t *testing.T) {
	for _, p := range []Params{
		{Nodes: 0, SizeBytes: 1},
		{Nodes: -1, SizeBytes: 1},
		{Nodes: 1, SizeBytes: 0},
		{Nodes: 1, SizeBytes: 1, NodeUp: -1},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v validated", p)
		}
	}
}

func TestAutoFeeders(t *testing.T) {
	for _, tt := range []struct {
		p    Params
		want int
	}{
		{Params{Nodes: 200, NodeDown: 20 << 20, OriginUp: 50 << 20}, 12},
		{Params{Nodes: 5000, NodeDown: 125e6, OriginUp: 1250e6}, 40},
		{Params{Nodes: 5000, NodeDown: 1, OriginUp: 1000}, 64},
		{Params{Nodes: 3, NodeDown: 1, OriginUp: 1000}, 3},
		{Params{Nodes: 10, NodeDown: 100, OriginUp: 10}, 4},
	} {
		if got := AutoFeeders(tt.p); got != tt.want {
			t.Errorf("AutoFeeders(%+v) = %d, want %d", tt.p, got, tt.want)
		}
	}
}
