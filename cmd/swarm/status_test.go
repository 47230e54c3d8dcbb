package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/seeder"
)

func TestPrintStatusShowsProgressAndRate(t *testing.T) {
	st := seeder.Status{Nodes: []seeder.NodeStatus{
		{Name: "node-a", Apps: []seeder.AppStatus{{App: "web", Version: "1.2.0", ReleaseID: "sha256:0123456789abcdef", Phase: "downloading", Progress: 0.42, RateBps: 12 << 20}}},
		{Name: "node-b", Apps: []seeder.AppStatus{{App: "web", Version: "1.2.0", ReleaseID: "sha256:0123456789abcdef", Phase: "active", Healthy: true, Progress: 1}}},
	}}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	var a, c string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "node-a"):
			a = l
		case strings.HasPrefix(l, "node-b"):
			c = l
		}
	}
	for _, want := range []string{"downloading", "████░░░░░░  42%", "12.0 MiB/s"} {
		if !strings.Contains(a, want) {
			t.Errorf("downloading row %q lacks %q", a, want)
		}
	}
	if !strings.Contains(c, "100%") || !strings.Contains(c, "ok") {
		t.Errorf("active row %q: want 100%% and ok", c)
	}
	// Columns line up (in runes: the bar's cells are multi-byte).
	header := out[strings.Index(out, "NODE"):]
	header = header[:strings.Index(header, "\n")]
	col := len([]rune(header[:max(strings.Index(header, "RATE"), 0)]))
	if ra := []rune(a); col == 0 || len(ra) < col || !strings.HasPrefix(string(ra[col:]), "12.0 MiB/s") {
		t.Errorf("RATE column misaligned:\n%s\n%s", header, a)
	}
}

// TestPrintStatusShowsRunningAndRefusals: a node whose install of 3.0.0
// rolled back shows what it runs and that it is healthy; a desired state
// every node refuses says so under the table and in the ACTIVE column.
func TestPrintStatusShowsRunningAndRefusals(t *testing.T) {
	st := seeder.Status{
		Desired: []seeder.DesiredStatus{{App: "web", Env: "default", Version: "3.0.0", Nodes: 3,
			Refused: []seeder.RefusalCount{{Reason: "untrusted key", Nodes: 3}}, Error: "refused by 3 nodes: untrusted key"}},
		Nodes: []seeder.NodeStatus{
			{Name: "node-a", Apps: []seeder.AppStatus{{App: "web", Version: "3.0.0", ReleaseID: "sha256:3333", Phase: "rolled-back",
				RunningVersion: "1.0.0", RunningReleaseID: "sha256:1111", Healthy: true, Progress: 1, Error: "health check failed"}}},
			{Name: "node-b", Apps: []seeder.AppStatus{{App: "web", Refused: "untrusted key"}}},
		},
	}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"0/3 (3 refused)",
		"error: web in default: refused by 3 nodes: untrusted key",
		"rolled-back → running 1.0.0 (healthy)",
		"refused: untrusted key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "node-a") && (!strings.Contains(l, " ok ") || strings.Contains(l, "bad")) {
			t.Errorf("the rolled-back node's health is not its running release's: %q", l)
		}
	}
}

// A rollout held back by a node's full disk says so, and not as a failure.
func TestPrintStatusShowsHostFaults(t *testing.T) {
	full := "disk full: need 65 MiB, 21 MiB free on /d/bundles (--min-free 0)"
	st := seeder.Status{Rollouts: []rollout.Status{{App: "web", Env: "default", Version: "2.0.0", State: "progressing",
		Step: 1, Steps: 2, Admitted: 1, Nodes: 3, Phases: map[string]int{"failed": 1, "other": 2}, HostFaults: 1, HostFault: full}}}
	var b bytes.Buffer
	printRollouts(&b, st)
	want := "error: web in default: 1 node held back by its host, not counted as failed (e.g. " + full + "); free room there and they retry on their own"
	if !strings.Contains(b.String(), want) {
		t.Errorf("rollouts lack %q:\n%s", want, b.String())
	}
}
