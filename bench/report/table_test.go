package report

import (
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/bench"
)

func TestTable(t *testing.T) {
	real, sim, central := fixtures()
	tests := []struct {
		golden string
		rs     []bench.Result
	}{
		// N=1000 has no central run; N=50 has only a central run.
		{"table_real.md", append(append([]bench.Result{}, central...), real...)},
		{"table_sim.md", append(append([]bench.Result{}, sim...), central...)},
		{"table_mixed.md", append(append(append([]bench.Result{}, real...), sim...), central...)},
		{"table_empty.md", nil},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got := Table(tt.rs)
			checkAligned(t, got)
			golden(t, tt.golden, got)
		})
	}
}

func TestValidation(t *testing.T) {
	real, sim, _ := fixtures()
	tests := []struct {
		golden    string
		real, sim []bench.Result
		flagged   bool
	}{
		// N=1000: completion sim ÷ real 1.41, outside ±25%.
		{"validation.md", real, sim, true},
		{"validation_ok.md", real[:2], sim[:2], false},
		{"validation_none.md", real[:1], sim[1:2], false},
		// The real N=1000 run downloaded in 26 s and spent the rest
		// installing: the comparison uses the download and passes.
		{"validation_download.md", []bench.Result{func() bench.Result {
			r := real[2]
			r.DownloadS, r.CPUSeconds = 26, 45.4
			return r
		}()}, sim[2:3], false},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got := Validation(tt.real, tt.sim)
			if strings.Contains(got, "⚠") != tt.flagged {
				t.Errorf("flagged = %v, want %v:\n%s", !tt.flagged, tt.flagged, got)
			}
			table, _, _ := strings.Cut(got, "\n\n")
			checkAligned(t, table)
			golden(t, tt.golden, got)
		})
	}
}

func TestSimRatio(t *testing.T) {
	tests := []struct {
		sim, real float64
		want      string
		flag      bool
	}{
		{1, 1, "1.00  ", false},
		{1.25, 1, "1.25  ", false},
		{1.26, 1, "1.26 ⚠", true},
		{0.75, 1, "0.75  ", false},
		{0.74, 1, "0.74 ⚠", true},
		{0, 1, none, false},
		{1, 0, none, false},
	}
	for _, tt := range tests {
		got, flag := simRatio(tt.sim, tt.real)
		if got != tt.want || flag != tt.flag {
			t.Errorf("simRatio(%v, %v) = %q, %v; want %q, %v", tt.sim, tt.real, got, flag, tt.want, tt.flag)
		}
	}
}

func TestGossipTable(t *testing.T) {
	rows := []GossipRow{
		{Nodes: 1000, Real99: 1.42, Real100: 2.07, Sim99: 1.31, Sim100: 1.88, IdleCores: 0.65},
		{Nodes: 100, Real99: 0.61, Real100: 0.83, Sim99: 0.57, Sim100: 0.79, IdleCores: 0.04},
		{Nodes: 10000, Sim99: 2.36, Sim100: 3.4}, // real not measured
	}
	in := append([]GossipRow(nil), rows...)
	got := GossipTable(rows)
	if rows[0] != in[0] || rows[1] != in[1] {
		t.Error("GossipTable reordered its input")
	}
	checkAligned(t, got)
	golden(t, "gossip.md", got)
}

func TestDecimals(t *testing.T) {
	tests := []struct {
		vs   []float64
		want int
	}{
		{[]float64{153, 1543}, 0},
		{[]float64{12.3, 153}, 1},
		{[]float64{5.12, 541}, 2},
		{[]float64{0.48, 20}, 2},
		{[]float64{0.048, 20}, 3},
		{[]float64{0.0004}, 3},
		{[]float64{0, 0}, 1},
		{nil, 1},
	}
	for _, tt := range tests {
		if got := decimals(tt.vs...); got != tt.want {
			t.Errorf("decimals(%v) = %d, want %d", tt.vs, got, tt.want)
		}
	}
}

// checkAligned fails unless every line of a Markdown table has its column
// separators at the same positions, so the raw file reads as a table too.
func checkAligned(t *testing.T, table string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	var want []int
	for i, l := range lines {
		var pipes []int
		for j, r := range []rune(l) {
			if r == '|' {
				pipes = append(pipes, j)
			}
		}
		if i == 0 {
			want = pipes
			continue
		}
		if len(pipes) != len(want) {
			t.Fatalf("line %d has %d columns, header %d:\n%s", i+1, len(pipes)-1, len(want)-1, table)
		}
		for k := range pipes {
			if pipes[k] != want[k] {
				t.Fatalf("line %d: column %d not aligned:\n%s", i+1, k+1, table)
			}
		}
	}
}
