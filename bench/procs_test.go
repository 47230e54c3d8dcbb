package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/installer"
)

// built is the swarm binary the process-level tests run, built once.
var built struct {
	once sync.Once
	path string
	err  error
}

// swarmBinary builds cmd/swarm into a temporary directory the first time
// it is called, and skips the test when no go command is at hand.
func swarmBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build the swarm binary")
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "swarm-procs-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "swarm")
		out, err := exec.Command(goCmd, "build", "-o", built.path, "../cmd/swarm").CombinedOutput()
		if err != nil {
			built.err = errors.New(string(out))
		}
	})
	if built.err != nil {
		t.Fatalf("build swarm: %v", built.err)
	}
	return built.path
}

// testShim is the hook shim for in-process agents (ClusterConfig.Shim):
// the swarm binary, built once without the race detector, since every hook
// and health check run starts the shim and a race-built test binary costs
// tens of milliseconds of CPU per start. Empty (this test binary, see
// TestMain) when there is no go command to build it.
func testShim(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		return ""
	}
	return swarmBinary(t)
}

func TestMain(m *testing.M) {
	// In-process agents whose cluster sets no Shim run their hooks under
	// this test binary as the shim.
	installer.MaybeRunShim()
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

func TestRunProcs(t *testing.T) {
	bin := swarmBinary(t)
	aria2c, _ := exec.LookPath("aria2c")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := Params{Nodes: 2, SizeBytes: 4 << 20, OriginFeeders: 1, Seed: 3}
	var stages []string
	r, err := RunProcs(ctx, ProcsConfig{Binary: bin, Params: p, Dir: t.TempDir(), Aria2c: aria2c, StallTimeout: time.Minute},
		zaptest.NewLogger(t), func(pr ProcsProgress) {
			if len(stages) == 0 || stages[len(stages)-1] != pr.Stage {
				stages = append(stages, pr.Stage)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Agents) != 2 || len(r.Completions) != 2 || r.CompletionS <= 0 || r.MiBPerS <= 0 {
		t.Fatalf("agents %d, completions %v, completion %.2fs, %.1f MiB/s", len(r.Agents), r.Completions, r.CompletionS, r.MiBPerS)
	}
	for _, a := range r.Agents {
		if a.CPUS <= 0 || a.CPUSPerGiB <= 0 || a.PeakRSSBytes <= 0 || a.CompletionS <= 0 {
			t.Errorf("agent cost %+v", a)
		}
		// The install starts after the fetch and ends before active.
		if a.FetchS <= 0 || a.FetchS > a.CompletionS || a.FetchCPUS > a.CPUS {
			t.Errorf("agent fetch %+v: want 0 < fetch_s ≤ completion_s, fetch CPU ≤ CPU", a)
		}
	}
	// The origin sent the bundle at least once (one feeder, then peers).
	if r.OriginEgressRatio < 0.9 || r.BundleBytes < p.SizeBytes {
		t.Errorf("origin ÷ F %.2f, bundle %d bytes", r.OriginEgressRatio, r.BundleBytes)
	}
	if r.HostCPUFrac <= 0 || r.HostBound != (r.HostCPUFrac > HostBoundFrac) || r.CPUSPerGiB <= 0 || r.RSSPerAgentBytes <= 0 {
		t.Errorf("host %.2f bound %v, cpu %.2f s/GiB, rss %d", r.HostCPUFrac, r.HostBound, r.CPUSPerGiB, r.RSSPerAgentBytes)
	}
	if aria2c == "" {
		t.Log("aria2c not on PATH: its comparison is not tested")
		if r.Aria2c != nil {
			t.Errorf("aria2c result without aria2c: %+v", r.Aria2c)
		}
	} else if a := r.Aria2c; a == nil || a.WallS <= 0 || a.CPUS <= 0 || a.PeakRSSBytes <= 0 || a.OriginEgressRatio < 0.9 {
		t.Errorf("aria2c: %+v", a)
	}
	if !strings.HasPrefix(strings.Join(stages, ","), "starting,swarm") {
		t.Errorf("progress stages %v", stages)
	}
	t.Logf("N=2 4 MiB: %.2fs, %.1f MiB/s, origin %.2f F, %.1f CPU-s/GiB, RSS %d MiB, host %.0f%%; aria2c %+v",
		r.CompletionS, r.MiBPerS, r.OriginEgressRatio, r.CPUSPerGiB, r.RSSPerAgentBytes>>20, 100*r.HostCPUFrac, r.Aria2c)
}

func TestRunProcsFailsCleanly(t *testing.T) {
	bin := swarmBinary(t)
	p := Params{Nodes: 2, SizeBytes: 1 << 20, Seed: 1}
	t.Run("a process that exits early", func(t *testing.T) {
		_, err := RunProcs(context.Background(), ProcsConfig{Binary: "/bin/false", Params: p, Dir: t.TempDir()}, zaptest.NewLogger(t), nil)
		if err == nil || !strings.Contains(err.Error(), "keygen exited early") {
			t.Fatalf("err = %v, want keygen exited early", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := RunProcs(ctx, ProcsConfig{Binary: bin, Params: p, Dir: t.TempDir()}, zaptest.NewLogger(t), nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the deadline", err)
		}
		// Every process is stopped before RunProcs returns.
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("took %s to give up", took)
		}
	})
}
