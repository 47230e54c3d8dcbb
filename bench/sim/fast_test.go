package sim

import (
	"context"
	"slices"
	"testing"

	"github.com/swarmdeploy/swarm/bench"
)

// TestShortcutsChangeNothing checks that pick's shortcut for saturated
// candidates, and source's stop at the first free holder, give exactly the
// result of counting every time, including where connections close
// (complete peers, feeders leaving the origin, replacement).
func TestShortcutsChangeNothing(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"fleet", Config{Params: bench.Params{Nodes: 800, SizeBytes: 64 * MiB, NodeUp: 10 * MiB, NodeDown: 10 * MiB, OriginUp: 100 * MiB, OriginFeeders: 8, Seed: 2}}},
		{"naive fleet", Config{Params: bench.Params{Nodes: 300, SizeBytes: 32 * MiB, NodeUp: 4 * MiB, NodeDown: 8 * MiB, OriginUp: 40 * MiB, Seed: 4}}},
	}
	for _, sc := range scenarios {
		cases = append(cases, struct {
			name string
			cfg  Config
		}{sc.name, sc.cfg})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			counted, ce, err := simulate(context.Background(), c.cfg, nil, runOptions{check: true, alwaysCount: true})
			if err != nil {
				t.Fatal(err)
			}
			fast, fe, err := simulate(context.Background(), c.cfg, nil, runOptions{check: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(counted.Completions, fast.Completions) || counted.OriginBytes != fast.OriginBytes || counted.PeerBytes != fast.PeerBytes || ce.replaced != fe.replaced {
				t.Fatalf("with shortcuts: completion %v s, origin %d B, %d replaced; counting every time: %v s, %d B, %d replaced",
					fast.CompletionS, fast.OriginBytes, fe.replaced, counted.CompletionS, counted.OriginBytes, ce.replaced)
			}
			if ce.shortcuts != 0 || c.cfg.Nodes >= 300 && fe.shortcuts == 0 {
				t.Errorf("%d shortcuts counting every time, %d with them", ce.shortcuts, fe.shortcuts)
			}
		})
	}
}
