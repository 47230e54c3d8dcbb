package report

import (
	"errors"
	"flag"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/swarmdeploy/swarm/bench"
)

var samples = flag.String("samples", "", "also write the sample plots to this directory, to look at them")

func TestPlots(t *testing.T) {
	real, sim, central := fixtures()
	all := append(append(append([]bench.Result{}, real...), sim...), central...)
	narrow := append(append([]bench.Result{}, real[:2]...), central[0], central[2]) // N 10..100: linear axes
	one := []bench.Result{real[1]}
	var many []bench.Result // crowded N axis, a long legend, differing params
	for i, n := range []int{10, 20, 50, 100, 200, 500, 1000, 2000, 5000} {
		t := 8 + 4*math.Log10(float64(n))
		many = append(many,
			result(bench.KindReal, n, t, 1.2+0.1*float64(i)),
			result(bench.KindSim, n, t*1.1, 1.3+0.1*float64(i)))
		if n <= 500 {
			many = append(many, result(bench.KindCentral, n, 5.37*float64(n), float64(n)))
		}
	}
	many[0].Params.SizeBytes, many[0].SizeBytes = 2*many[0].Params.SizeBytes, 2*many[0].SizeBytes

	plots := []struct {
		name string
		plot func(string, []bench.Result) error
	}{
		{"origin_egress", PlotOriginEgress},
		{"completion", PlotCompletion},
		{"cdf", PlotCDF},
	}
	inputs := []struct {
		name string
		rs   []bench.Result
	}{
		{"all", all},
		{"narrow", narrow},
		{"one", one},
		{"many", many},
	}
	for _, p := range plots {
		for _, in := range inputs {
			t.Run(p.name+"_"+in.name, func(t *testing.T) {
				t.Parallel()
				path := filepath.Join(t.TempDir(), p.name+".png")
				if err := p.plot(path, in.rs); err != nil {
					t.Fatal(err)
				}
				checkPNG(t, path)
				if *samples != "" {
					b, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.MkdirAll(*samples, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(*samples, p.name+"_"+in.name+".png"), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

func TestPlotsRefuseEmptyInput(t *testing.T) {
	noCompletions := fixturesWithoutCompletions()
	tests := []struct {
		name string
		plot func(string, []bench.Result) error
		rs   []bench.Result
	}{
		{"origin egress, none", PlotOriginEgress, nil},
		{"completion, none", PlotCompletion, nil},
		{"cdf, none", PlotCDF, nil},
		{"origin egress, nothing measured", PlotOriginEgress, []bench.Result{{Kind: bench.KindReal, Nodes: 10}}},
		{"completion, nothing measured", PlotCompletion, []bench.Result{{Kind: bench.KindReal, Nodes: 10}}},
		{"cdf, no per-node times", PlotCDF, noCompletions},
		{"cdf, no usable times", PlotCDF, []bench.Result{{Kind: bench.KindReal, Nodes: 2, Completions: []float64{0, math.Inf(1)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plot.png")
			err := tt.plot(path, tt.rs)
			if !errors.Is(err, ErrNoData) {
				t.Fatalf("err = %v, want ErrNoData", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed plot left %s behind (stat: %v)", path, err)
			}
		})
	}
}

func TestPlotUnwritablePath(t *testing.T) {
	real, _, _ := fixtures()
	path := filepath.Join(t.TempDir(), "missing-dir", "plot.png")
	if err := PlotCompletion(path, real); err == nil {
		t.Fatal("no error writing into a directory that does not exist")
	}
}

func fixturesWithoutCompletions() []bench.Result {
	real, _, _ := fixtures()
	for i := range real {
		real[i].Completions = nil
	}
	return real
}

// checkPNG fails unless path is a PNG of 8×5 inches at 96 DPI with
// something drawn on it.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if got, want := img.Bounds(), image.Rect(0, 0, 768, 480); got != want {
		t.Errorf("size %v, want %v", got.Size(), want.Size())
	}
	coloured := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r != g || g != bl {
				coloured++
			}
		}
	}
	if coloured < 20 {
		t.Errorf("only %d coloured pixels sampled: no data lines drawn?", coloured)
	}
}

func TestLinearTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []string
	}{ // eight labels or so, as on an X axis
		{0, 15, []string{"0", "2", "4", "6", "8", "10", "12", "14"}},
		{0, 1, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
		{0, 541, []string{"0", "100", "200", "300", "400", "500"}},
		{0, 18, []string{"0", "2.5", "5", "7.5", "10", "12.5", "15", "17.5"}},
	}
	for _, tt := range tests {
		var got []string
		for _, tk := range (linearTicks{n: 8}).Ticks(tt.lo, tt.hi) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Ticks(%v, %v) labels %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestLogTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []string
	}{
		{4.3, 676, []string{"5", "10", "20", "50", "100", "200", "500"}},
		{0.8, 12000, []string{"1", "10", "100", "1000", "10000"}},
		{0.04, 0.3, []string{"0.05", "0.1", "0.2"}},
	}
	for _, tt := range tests {
		var got []string
		for _, tk := range (logTicks{}).Ticks(tt.lo, tt.hi) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Ticks(%v, %v) labels %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestNTicks(t *testing.T) {
	tests := []struct {
		name   string
		ns     []float64
		log    bool
		lo, hi float64
		want   []string
	}{
		{"log, room for every N", []float64{10, 100, 1000, 5000}, true, 10, 5000, []string{"10", "100", "1000", "5000"}},
		{"linear, room for every N", []float64{100, 200, 500}, false, 100, 500, []string{"100", "200", "500"}},
		{"one N", []float64{100}, false, 99, 101, []string{"100"}},
		{"crowded: usual ticks", []float64{1000, 1010, 1020, 2000}, false, 1000, 2000,
			[]string{"1000", "1200", "1400", "1600", "1800", "2000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, tk := range (nTicks{ns: tt.ns, log: tt.log}).Ticks(tt.lo, tt.hi) {
				if tk.Label != "" {
					got = append(got, tk.Label)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("labels %q, want %q", got, tt.want)
			}
		})
	}
}
