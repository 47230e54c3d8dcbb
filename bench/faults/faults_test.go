package faults

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// TestSuiteSubset is the bounded subset of the fault suite that `make test`
// (and so CI) runs: a few scenarios on a small fleet and release. The whole
// suite is `make test-faults`. It needs root and iproute2 and skips,
// saying so, without them.
func TestSuiteSubset(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("fault suite skipped: %v", err)
	}
	if testing.Short() {
		t.Skip("fault suite skipped in -short mode")
	}
	if err := Probe(context.Background(), zaptest.NewLogger(t)); err != nil {
		t.Skipf("fault suite skipped: this machine cannot build its network lab: %v", err)
	}
	bin := buildSwarm(t)
	cfg := DefaultConfig(bin)
	cfg.Agents, cfg.SizeBytes, cfg.Rate = 4, 16<<20, "100mbit"
	cfg.Timeout, cfg.HookSleep, cfg.KeepLogs = 2*time.Minute, 2*time.Second, false
	want := map[string]bool{"kill-download": true, "corrupt-peer": true}
	for _, sc := range Scenarios() {
		if !want[sc.Name] {
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			r, err := Run(ctx, cfg, sc, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: converge %.1fs, origin %.2f/F (bound %.2f), worst rx %.2f (%s), hooks %d ok %d cut; %s",
				r.Scenario, r.ConvergeS, r.OriginRatio, r.OriginLimit, r.WorstRX, r.WorstNode, r.HookRuns, r.HookCut, r.Fault)
			if !r.Pass {
				t.Errorf("%s failed:\n  %s", sc.Name, strings.Join(r.Problems, "\n  "))
			}
		})
	}
	assertNoLeftovers(t)
}

// assertNoLeftovers checks that the lab removed every namespace it made.
func assertNoLeftovers(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if pid, ok := runPID(e.Name(), NamePrefix); ok && pid == os.Getpid() {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

// buildSwarm builds cmd/swarm into the test's temporary directory.
func buildSwarm(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build the swarm binary")
	}
	bin := filepath.Join(t.TempDir(), "swarm")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "../../cmd/swarm").CombinedOutput(); err != nil {
		t.Fatalf("build swarm: %v\n%s", err, out)
	}
	return bin
}

func TestJudgeHooks(t *testing.T) {
	tests := []struct {
		name    string
		runs    []hookRun
		problem bool
		ok, cut int
	}{
		{"one run", []hookRun{{pid: 1 << 30, start: 1, end: 2}}, false, 1, 0},
		{"cut then retried", []hookRun{{pid: 1 << 30, start: 1}, {pid: 1<<30 + 1, start: 3, end: 4}}, false, 1, 1},
		{"twice in turn", []hookRun{{pid: 1 << 30, start: 1, end: 2}, {pid: 1<<30 + 1, start: 3, end: 4}}, true, 2, 0},
		{"overlapping", []hookRun{{pid: 1 << 30, start: 1, end: 5}, {pid: 1<<30 + 1, start: 3, end: 4}}, true, 2, 0},
		{"none", nil, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := judgeHooks(tt.runs)
			if (v.problem != "") != tt.problem || v.completed != tt.ok || v.cut != tt.cut {
				t.Errorf("judgeHooks = %+v, want problem %v, %d completed, %d cut", v, tt.problem, tt.ok, tt.cut)
			}
		})
	}
}

func TestHookRunsParsesTheLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hook.log")
	log := "start sha256:a 10 100.5\nstart sha256:b 11 101\nend sha256:a 10 102.5\ngarbage\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := hookRuns(p, "sha256:a")
	if err != nil || len(runs) != 1 || runs[0].pid != 10 || runs[0].start != 100.5 || runs[0].end != 102.5 {
		t.Fatalf("hookRuns = %+v, %v", runs, err)
	}
}

func TestRunPID(t *testing.T) {
	for name, want := range map[string]int{"swf123-hub": 123, "swf7-agent-01": 7, "swfx-hub": 0, "other-1": 0, "swf12": 0} {
		got, ok := runPID(name, NamePrefix)
		if ok != (want > 0) || got != want && ok {
			t.Errorf("runPID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}
