package main

import (
	"bytes"
	"strings"
	"testing"

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
