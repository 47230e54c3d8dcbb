package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/bench"
)

// procsFixture is a process-level run of n agents fetching size bytes in
// last seconds.
func procsFixture(n int, size int64, last float64, bound bool, aria bool) bench.ProcsResult {
	r := bench.ProcsResult{
		Kind: bench.KindProcs, Params: bench.Params{Nodes: n, SizeBytes: size}, Nodes: n, SizeBytes: size,
		BundleBytes: size + 1024, CompletionS: last, MiBPerS: float64(size) / mib / last,
		OriginBytes: size * 11 / 10, OriginEgressRatio: 1.1,
		CPUSPerGiB: 3.25, RSSPerAgentBytes: 61 * mib, HostCPUFrac: 0.4, HostBound: bound,
	}
	if bound {
		r.HostCPUFrac = 0.97
	}
	if aria {
		r.Aria2c = &bench.ClientRun{Client: "aria2c", WallS: last / 2, MiBPerS: float64(size) / mib / (last / 2), CPUSPerGiB: 1.5, PeakRSSBytes: 12 * mib}
	}
	return r
}

func TestSizeTable(t *testing.T) {
	capped := procsFixture(5, 256*mib, 80, false, false)
	capped.Params.NodeUp, capped.Params.NodeDown, capped.Params.OriginUp = 10*mib, 20*mib, 20*mib
	rs := []bench.ProcsResult{
		procsFixture(20, 256*mib, 12.5, true, false),
		procsFixture(1, 32*mib, 0.61, false, true),
		capped,
		procsFixture(5, 32*mib, 1.2, false, false),
		procsFixture(1, 256*mib, 3.1, false, true),
	}
	got := SizeTable(rs)
	checkAligned(t, got)
	if !strings.Contains(got, "host-bound") || !strings.Contains(got, "| yes ") {
		t.Errorf("no host-bound column or no yes:\n%s", got)
	}
	golden(t, "size.md", got)
}

func TestReadProcsJSON(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	want := []bench.ProcsResult{procsFixture(1, 32*mib, 0.61, false, true), procsFixture(5, 32*mib, 1.2, true, false)}
	for _, r := range want {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadProcsJSON(&buf)
	if err != nil || len(got) != 2 || got[0].Aria2c == nil || got[1].Aria2c != nil || !got[1].HostBound {
		t.Fatalf("read back %+v, %v", got, err)
	}
	// A real result in a procs file is refused.
	var other bytes.Buffer
	if err := WriteJSON(&other, bench.Result{Kind: bench.KindReal}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadProcsJSON(&other); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Errorf("a real result was not refused: %v", err)
	}
}

func TestProcsText(t *testing.T) {
	var b strings.Builder
	if err := ProcsText(&b, procsFixture(1, 32*mib, 0.61, false, true)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"host-bound: no", "aria2c wall", "agent CPU per GiB"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
