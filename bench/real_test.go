package bench

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// burstBound is T* allowing for the token buckets: every limiter starts
// full with rateBurst bytes, so the origin can send F in (F - burst)/u_s, a
// node receive it in (F - burst)/d, and the N+1 uploaders send N·F in
// (N·F - (N+1)·burst)/(u_s + N·u). A run faster than this broke the caps.
func burstBound(p Params) float64 {
	f, n, b := float64(p.SizeBytes), float64(p.Nodes), float64(rateBurst)
	t := 0.0
	if p.OriginUp > 0 {
		t = math.Max(t, (f-b)/float64(p.OriginUp))
	}
	if p.NodeDown > 0 {
		t = math.Max(t, (f-b)/float64(p.NodeDown))
	}
	if p.OriginUp > 0 && p.NodeUp > 0 {
		t = math.Max(t, (n*f-(n+1)*b)/(float64(p.OriginUp)+n*float64(p.NodeUp)))
	}
	return t
}

func TestRunReal(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "own-storage"
		if shared {
			name = "shared-storage"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			p := Params{Nodes: 5, SizeBytes: 4 << 20, NodeUp: 2 << 20, OriginUp: 2 << 20, Seed: 7}
			dir := t.TempDir()
			var calls, last int
			r, err := RunReal(ctx, RealConfig{Params: p, Dir: dir, SharedStorage: shared}, zaptest.NewLogger(t),
				func(active, total int) {
					calls++
					if active < last || total != p.Nodes {
						t.Errorf("progress(%d, %d) after %d", active, total, last)
					}
					last = active
				})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			checkRealResult(t, r, p)
			if calls != p.Nodes || last != p.Nodes {
				t.Errorf("progress called %d times, last with %d; want %d", calls, last, p.Nodes)
			}
			// Shared storage keeps no bundle per agent.
			bundles, _ := filepath.Glob(filepath.Join(dir, "cluster", "agent-*", "bundles", "*", "*.tar.zst"))
			if shared && len(bundles) != 0 {
				t.Errorf("shared storage left bundles in agents' dirs: %v", bundles)
			}
			if !shared && len(bundles) != p.Nodes {
				t.Errorf("found %d agent bundles, want %d: %v", len(bundles), p.Nodes, bundles)
			}
		})
	}
}

func checkRealResult(t *testing.T, r Result, p Params) {
	t.Helper()
	if r.Kind != KindReal || r.Nodes != p.Nodes || r.SizeBytes != p.SizeBytes {
		t.Errorf("kind %s, nodes %d, size %d", r.Kind, r.Nodes, r.SizeBytes)
	}
	if len(r.Completions) != p.Nodes {
		t.Fatalf("%d completions, want %d", len(r.Completions), p.Nodes)
	}
	if r.OriginBytes < p.SizeBytes {
		t.Errorf("origin sent %d bytes, less than one copy (%d)", r.OriginBytes, p.SizeBytes)
	}
	if r.PeerBytes <= 0 {
		t.Errorf("agents got %d bytes from each other", r.PeerBytes)
	}
	// Every node got a whole bundle, from the origin or from peers (the
	// bundle is a little larger than the payload).
	if got := r.OriginBytes + r.PeerBytes; got < int64(p.Nodes)*p.SizeBytes {
		t.Errorf("origin %d + peers %d < %d nodes x %d", r.OriginBytes, r.PeerBytes, p.Nodes, p.SizeBytes)
	}
	if r.TStarS <= 0 || r.CompletionRatio <= 0 {
		t.Errorf("t* %v, ratio %v", r.TStarS, r.CompletionRatio)
	}
	if lb := burstBound(p); r.Completions[0] < lb {
		t.Errorf("first node active after %.3fs, faster than the caps allow (%.3fs; T* %.3fs)", r.Completions[0], lb, r.TStarS)
	}
	if r.Gossip100S <= 0 || r.Gossip100S < r.Gossip99S || r.Gossip100S > r.CompletionS {
		t.Errorf("gossip 99%% %.3fs, 100%% %.3fs, completion %.3fs", r.Gossip99S, r.Gossip100S, r.CompletionS)
	}
	if r.CPUSeconds <= 0 || r.PeakRSSMiB <= 0 || r.Goroutines <= 0 || r.WallS < r.CompletionS {
		t.Errorf("cost: cpu %.2fs, rss %.0f MiB, goroutines %d, wall %.2fs", r.CPUSeconds, r.PeakRSSMiB, r.Goroutines, r.WallS)
	}
	if r.CPUSPerGiB <= 0 || r.HostCPUFrac <= 0 || r.RSSPerAgentBytes < 0 || r.HostBound != (r.HostCPUFrac > HostBoundFrac) {
		t.Errorf("cost per node: cpu %.2f s/GiB, rss/agent %d, host %.2f bound %v", r.CPUSPerGiB, r.RSSPerAgentBytes, r.HostCPUFrac, r.HostBound)
	}
	if r.Params.PieceLength <= 0 {
		t.Errorf("piece length not filled in")
	}
}

func TestRunRealRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := RunReal(ctx, RealConfig{Params: Params{Nodes: 0, SizeBytes: 1}, Dir: t.TempDir()}, zaptest.NewLogger(t), nil); err == nil {
		t.Error("RunReal accepted zero nodes")
	}
	if _, err := RunReal(ctx, RealConfig{Params: Params{Nodes: 1, SizeBytes: 1}}, zaptest.NewLogger(t), nil); err == nil {
		t.Error("RunReal accepted an empty Dir")
	}
}

func TestRunCentral(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := Params{Nodes: 4, SizeBytes: 2 << 20, NodeDown: 2 << 20, OriginUp: 4 << 20, Seed: 3}
	path := filepath.Join(t.TempDir(), "payload.bin")
	if err := WriteRandomFile(path, p.SizeBytes, p.Seed); err != nil {
		t.Fatal(err)
	}
	var done int
	r, err := RunCentral(ctx, p, path, func(d, total int) {
		if d != done+1 || total != p.Nodes {
			t.Errorf("progress(%d, %d) after %d", d, total, done)
		}
		done = d
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.Kind != KindCentral || len(r.Completions) != p.Nodes || done != p.Nodes {
		t.Fatalf("kind %s, %d completions, %d progress; want %d", r.Kind, len(r.Completions), done, p.Nodes)
	}
	if want := int64(p.Nodes) * p.SizeBytes; r.OriginBytes != want {
		t.Errorf("served %d bytes, want %d", r.OriginBytes, want)
	}
	if r.OriginEgressRatio != float64(p.Nodes) || r.PeerShare != 0 {
		t.Errorf("egress ratio %v, peer share %v", r.OriginEgressRatio, r.PeerShare)
	}
	// N·F/u_s = 2 s; the buckets give the server rateBurst and each client
	// rateBurst ahead.
	lb := (float64(p.Nodes)*float64(p.SizeBytes) - rateBurst) / float64(p.OriginUp)
	if r.CompletionS < lb {
		t.Errorf("last client done after %.3fs, faster than the cap allows (%.3fs)", r.CompletionS, lb)
	}
	if r.CompletionS > 5*CentralTime(p) {
		t.Errorf("last client done after %.3fs, bound %.3fs", r.CompletionS, CentralTime(p))
	}
}

func TestRunCentralDetectsMissingFile(t *testing.T) {
	_, err := RunCentral(context.Background(), Params{Nodes: 1, SizeBytes: 1}, filepath.Join(t.TempDir(), "nope"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want not exist", err)
	}
}

func TestOriginSpread(t *testing.T) {
	for _, tc := range []struct {
		per  []int64
		want string
	}{
		{nil, "no agent received bytes from the origin"},
		{[]int64{25, 25, 50}, "3 agents received bytes from the origin, the most 0.50 bundle copies"},
	} {
		if got := originSpread(tc.per, 100); got != tc.want {
			t.Errorf("originSpread(%v) = %q, want %q", tc.per, got, tc.want)
		}
	}
}
