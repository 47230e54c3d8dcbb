package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/bench"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update after checking):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

const mib = 1 << 20

// params are the inputs every fixture shares: a 64 MiB bundle over
// 100 Mbit/s links, so T* is about 5.37 s at every N.
func params(n int) bench.Params {
	return bench.Params{
		Nodes: n, SizeBytes: 64 * mib, PieceLength: 256 << 10,
		NodeUp: 12_500_000, NodeDown: 12_500_000, OriginUp: 12_500_000,
		MaxPeers: 30, MaxConns: 40, Seed: 1,
	}
}

// result makes a finished result of kind k with N nodes whose last node
// completes at last seconds and whose origin sends originF bundle sizes.
func result(k bench.Kind, n int, last, originF float64) bench.Result {
	r := bench.Result{
		Kind:   k,
		Params: params(n),
		Start:  time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		WallS:  last + 2,
	}
	// A CDF shaped like a swarm's: slow start, then most nodes at once.
	for i := range n {
		x := float64(i+1) / float64(n)
		r.Completions = append(r.Completions, last*(0.35+0.65*x*x*(3-2*x)))
	}
	r.OriginBytes = int64(originF * 64 * mib)
	if k != bench.KindCentral {
		r.PeerBytes = int64(n)*64*mib - r.OriginBytes
		r.DuplicateBytes = int64(n) * 3 * mib / 10
	}
	if k != bench.KindSim {
		r.CPUSeconds, r.PeakRSSMiB, r.Goroutines = last*1.7, 180+float64(n)/4, 40*n
		// The host's cores: half busy plus a little per node, so the
		// largest run is host-bound.
		r.CPUSPerGiB = r.CPUSeconds / (float64(n) * 64 / 1024)
		r.RSSPerAgentBytes = 3 * mib / 2
		r.HostCPUFrac = 0.5 + float64(n)/2000
		r.HostBound = r.HostCPUFrac > bench.HostBoundFrac
	}
	r.Finish()
	return r
}

func fixtures() (real, sim, central []bench.Result) {
	real = []bench.Result{
		result(bench.KindReal, 10, 9.84, 1.31),
		result(bench.KindReal, 100, 14.2, 1.62),
		result(bench.KindReal, 1000, 22.7, 2.04),
	}
	sim = []bench.Result{
		result(bench.KindSim, 10, 9.12, 1.25),
		result(bench.KindSim, 100, 15.1, 1.70),
		result(bench.KindSim, 1000, 31.9, 1.58), // completion +41%, origin −23%
		result(bench.KindSim, 5000, 38.4, 2.31),
	}
	central = []bench.Result{
		result(bench.KindCentral, 10, 53.9, 10),
		result(bench.KindCentral, 50, 270, 50), // no swarm run with this N
		result(bench.KindCentral, 100, 541, 100),
	}
	return real, sim, central
}

func TestJSONRoundTrip(t *testing.T) {
	real, sim, central := fixtures()
	tests := []struct {
		name string
		rs   []bench.Result
	}{
		{"none", nil},
		{"one", real[:1]},
		{"all kinds", append(append(append([]bench.Result{}, real...), sim...), central...)},
		{"gossip and notes", []bench.Result{func() bench.Result {
			r := real[0]
			r.Gossip99S, r.Gossip100S, r.Notes = 0.41, 0.58, "loopback, GOMAXPROCS=8"
			return r
		}()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteJSON(&buf, tt.rs...); err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(buf.String(), "\n"); got != len(tt.rs) {
				t.Errorf("%d lines, want one per result (%d)", got, len(tt.rs))
			}
			got, err := ReadJSON(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.rs) {
				t.Errorf("round trip changed the results:\ngot  %+v\nwant %+v", got, tt.rs)
			}
		})
	}
}

func TestReadJSONErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{"kind":"real"}` + "\n" + "nodes=3\n", "read result 2"},
		{"truncated", `{"kind":"real","nodes":`, "read result 1"},
		{"wrong type", `{"kind":"real","nodes":"many"}`, "read result 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadJSON(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReadJSONSkipsBlankLinesAndUnknownFields(t *testing.T) {
	in := "\n" + `{"kind":"sim","nodes":7,"from_the_future":true}` + "\n\n"
	rs, err := ReadJSON(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Kind != bench.KindSim || rs[0].Nodes != 7 {
		t.Errorf("got %+v", rs)
	}
}

func TestWriteCSV(t *testing.T) {
	real, sim, central := fixtures()
	all := append(append(append([]bench.Result{}, real...), sim...), central...)
	tests := []struct {
		name string
		rs   []bench.Result
	}{
		{"none", nil},
		{"all", all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteCSV(&buf, tt.rs...); err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(tt.rs)+1 {
				t.Fatalf("%d records, want header + %d rows", len(recs), len(tt.rs))
			}
			if !reflect.DeepEqual(recs[0], csvHeader) {
				t.Errorf("header %v", recs[0])
			}
			for i, rec := range recs[1:] {
				if rec[0] != string(tt.rs[i].Kind) {
					t.Errorf("row %d kind %q, want %q", i+1, rec[0], tt.rs[i].Kind)
				}
			}
		})
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, all...); err != nil {
		t.Fatal(err)
	}
	golden(t, "results.csv", buf.String())
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWritersReportErrors(t *testing.T) {
	real, _, _ := fixtures()
	for name, write := range map[string]func() error{
		"json": func() error { return WriteJSON(failWriter{}, real...) },
		"csv":  func() error { return WriteCSV(failWriter{}, real...) },
		"text": func() error { return Text(failWriter{}, real[0]) },
	} {
		if err := write(); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: err = %v, want the writer's error", name, err)
		}
	}
}
