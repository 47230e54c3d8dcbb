package bench

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// TestRollbackRun runs the fleet rollback benchmark on a few agents, both
// ways, and checks what it must have done: every node that moved to 2.0.0
// runs 1.0.0 again, ran the hook as rollback, and the seeder saw it. Times
// are not asserted (BENCHMARKS.md has them); only their order.
func TestRollbackRun(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster")
	}
	tests := []struct {
		name      string
		cfg       RollbackRunConfig
		wantMoved int
	}{
		{"manual, all at once", RollbackRunConfig{Nodes: 6}, 6},
		{"auto, two canaries", RollbackRunConfig{Nodes: 6, Auto: true, Canaries: 2, HealthInterval: 100 * time.Millisecond, ControlInterval: 50 * time.Millisecond}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir = t.TempDir()
			tt.cfg.Shim = testShim(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := RunRollback(ctx, tt.cfg, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if res.Moved != tt.wantMoved || res.Nodes != tt.cfg.Nodes || res.Kind != KindReal {
				t.Errorf("moved %d of %d (%s), want %d of %d", res.Moved, res.Nodes, res.Kind, tt.wantMoved, tt.cfg.Nodes)
			}
			if len(res.PerNode) != res.Moved {
				t.Errorf("%d per-node entries for %d moved nodes", len(res.PerNode), res.Moved)
			}
			if ran := hookRuns(filepath.Join(tt.cfg.Dir, "hook.log"), "1.0.0", "rollback"); len(ran) != tt.wantMoved {
				t.Errorf("the hook ran as rollback on %v, want %d nodes", ran, tt.wantMoved)
			}
			if ran := hookRuns(filepath.Join(tt.cfg.Dir, "hook.log"), "2.0.0", "install"); len(ran) != tt.wantMoved {
				t.Errorf("2.0.0 was installed on %v, want %d nodes", ran, tt.wantMoved)
			}
			for name, s := range map[string]Spread{"accept": res.Accept, "back": res.Back, "seen": res.Seen} {
				if !(s.P50 <= s.P99 && s.P99 <= s.Max && s.Max > 0) {
					t.Errorf("%s: %+v", name, s)
				}
			}
			if res.Back.Max != res.FleetS || res.Seen.Max < res.Back.Max || res.ReportedS <= 0 {
				t.Errorf("fleet %v, back %+v, seen %+v, reported %v", res.FleetS, res.Back, res.Seen, res.ReportedS)
			}
			if want := []string{"manual", "auto"}[btoi(tt.cfg.Auto)]; res.Trigger != want {
				t.Errorf("trigger %q, want %q", res.Trigger, want)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSpreadOf(t *testing.T) {
	if s := SpreadOf(nil); s != (Spread{}) {
		t.Errorf("no values: %+v", s)
	}
	xs := []float64{5, 1, 3, 2, 4}
	if s := SpreadOf(xs); s != (Spread{P50: 3, P99: 5, Max: 5}) {
		t.Errorf("%+v", s)
	}
	if !slices.Equal(xs, []float64{5, 1, 3, 2, 4}) {
		t.Errorf("SpreadOf sorted its input: %v", xs)
	}
}
