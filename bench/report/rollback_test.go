package report

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/swarmdeploy/swarm/bench"
)

func TestRollbackTable(t *testing.T) {
	got := RollbackTable([]bench.RollbackResult{
		{Kind: bench.KindReal, Trigger: "manual", Nodes: 100, Moved: 100,
			Back: bench.Spread{P50: 0.061, P99: 0.2, Max: 0.25}, Seen: bench.Spread{P50: 1.2, P99: 2.5, Max: 2.61},
			ReportedS: 2.7, HostCPUFrac: 0.9, HostBound: true},
		{Kind: bench.KindSim, Trigger: "sim", Nodes: 5000, Moved: 5000,
			Back: bench.Spread{P50: 0.0197, P99: 0.024, Max: 0.024}, Seen: bench.Spread{P50: 15, P99: 106, Max: 161.3}},
	})
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header, a rule and 2 rows:\n%s", got)
	}
	for i, want := range [][]string{
		{"kind", "trigger", "fleet s", "seen max s", "status s", "host busy"},
		{"---"},
		{"real", "manual", "100", "0.061", "0.250", "2.61", "2.70", "90.0% (bound)"},
		{"sim", "sim", "5000", "0.020", "0.024", "161.30", "—"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	if w := utf8.RuneCountInString(lines[0]); utf8.RuneCountInString(lines[2]) != w || utf8.RuneCountInString(lines[3]) != w {
		t.Errorf("columns not aligned:\n%s", got)
	}
}
