package report

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/swarmdeploy/swarm/bench"
)

// ReadProcsJSON reads process-level results (`swarm bench procs --json` or
// --out, one JSON object per line). Blank lines are skipped; a line of
// another kind is refused, so that a mixed-up file is noticed.
func ReadProcsJSON(r io.Reader) ([]bench.ProcsResult, error) {
	dec := json.NewDecoder(r)
	var rs []bench.ProcsResult
	for {
		var res bench.ProcsResult
		err := dec.Decode(&res)
		if errors.Is(err, io.EOF) {
			return rs, nil
		}
		if err != nil {
			return rs, fmt.Errorf("read result %d: %w", len(rs)+1, err)
		}
		if res.Kind != bench.KindProcs {
			return rs, fmt.Errorf("read result %d: kind %q, want %q", len(rs)+1, res.Kind, bench.KindProcs)
		}
		rs = append(rs, res)
	}
}

// SizeTable renders process-level runs as a Markdown table, one row per
// run sorted by size, then caps (uncapped first), then N: seconds from the
// publish to the last agent active, one agent's MiB/s, origin ÷ F, the
// agents' CPU seconds per GiB delivered and mean peak RSS (each agent its
// own process), the part of that CPU spent before the installs began
// (fetch), whether the host's cores were the limit, and aria2c
// fetching the same release alone from the same seeder where it ran.
func SizeTable(rs []bench.ProcsResult) string {
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b bench.ProcsResult) int {
		return cmp.Or(cmp.Compare(a.SizeBytes, b.SizeBytes), cmp.Compare(capsOf(a.Params), capsOf(b.Params)), cmp.Compare(a.Nodes, b.Nodes))
	})
	var secs, ariaSecs []float64
	for _, r := range rs {
		secs = append(secs, r.CompletionS)
		if r.Aria2c != nil {
			ariaSecs = append(ariaSecs, r.Aria2c.WallS)
		}
	}
	d, ad := decimals(secs...), decimals(ariaSecs...)

	t := &mdTable{}
	t.col("N", true)
	t.col("size", true)
	t.col("caps up/down/origin", false)
	t.col("wall s", true)
	t.col("fetch s", true)
	t.col("MiB/s", true)
	t.col("origin ÷ F", true)
	t.col("CPU-s/GiB", true)
	t.col("fetch CPU-s/GiB", true)
	t.col("RSS/agent MiB", true)
	t.col("host-bound", false)
	t.col("aria2c wall s", true)
	t.col("aria2c MiB/s", true)
	t.col("aria2c CPU-s/GiB", true)
	t.col("aria2c RSS MiB", true)
	for _, r := range rs {
		cells := []string{
			strconv.Itoa(r.Nodes), bytesText(r.SizeBytes), capsText(r.Params),
			fixed(r.CompletionS, d), orNone(r.FetchS, d), fixed(r.MiBPerS, 1), fixed(r.OriginEgressRatio, 2),
			fixed(r.CPUSPerGiB, 2), orNone(r.FetchCPUSPerGiB, 2), mibCell(r.RSSPerAgentBytes), yesNo(r.HostBound, r.HostCPUFrac),
		}
		if a := r.Aria2c; a != nil {
			cells = append(cells, fixed(a.WallS, ad), fixed(a.MiBPerS, 1), fixed(a.CPUSPerGiB, 2), mibCell(a.PeakRSSBytes))
		} else {
			cells = append(cells, none, none, none, none)
		}
		t.row(cells...)
	}
	return t.String()
}

// orNone is v with the given decimals, or — when it was not measured.
func orNone(v float64, decimals int) string {
	if v == 0 {
		return none
	}
	return fixed(v, decimals)
}

// yesNo renders a host-bound flag, or — when the host was not measured.
func yesNo(bound bool, frac float64) string {
	switch {
	case frac == 0:
		return none
	case bound:
		return "yes"
	}
	return "no"
}

// capsOf orders rate settings: 0 for none, else the smallest cap.
func capsOf(p bench.Params) int64 {
	var least int64
	for _, v := range []int64{p.NodeUp, p.NodeDown, p.OriginUp} {
		if v > 0 && (least == 0 || v < least) {
			least = v
		}
	}
	return least
}

// capsText names the rate caps of a run: "none", or up/down/origin.
func capsText(p bench.Params) string {
	if p.NodeUp == 0 && p.NodeDown == 0 && p.OriginUp == 0 {
		return "none"
	}
	short := func(bps int64) string {
		if bps == 0 {
			return "∞"
		}
		return strings.ReplaceAll(bytesText(bps), " ", "")
	}
	return short(p.NodeUp) + "/" + short(p.NodeDown) + "/" + short(p.OriginUp)
}

// ProcsText renders one process-level run for a terminal: an aligned
// two-column summary.
func ProcsText(w io.Writer, r bench.ProcsResult) error {
	var lines [][2]string
	add := func(what, value string) { lines = append(lines, [2]string{what, value}) }
	p := r.Params
	add("run", "swarm (separate processes)")
	add("agents", strconv.Itoa(r.Nodes))
	add("bundle", bytesText(r.BundleBytes))
	add("node up / down", rateText(p.NodeUp)+" / "+rateText(p.NodeDown))
	add("origin up", rateText(p.OriginUp))
	add("completion (last agent)", secondsText(r.CompletionS))
	add("per agent", fixed(r.MiBPerS, 1)+" MiB/s")
	add("fetched (last agent)", secondsText(r.FetchS)+", before its install")
	add("origin egress", fmt.Sprintf("%s (%s F)", bytesText(r.OriginBytes), timesText(r.OriginEgressRatio)))
	add("agent CPU per GiB", sig(r.CPUSPerGiB)+" s ("+sig(r.FetchCPUSPerGiB)+" s before the install)")
	add("agent peak RSS (mean)", bytesText(r.RSSPerAgentBytes))
	add("seeder CPU per GiB", sig(r.Seeder.CPUSPerGiB)+" s (of all agents' bytes)")
	add("seeder peak RSS", bytesText(r.Seeder.PeakRSSBytes))
	add("host CPU", fmt.Sprintf("%s of the cores busy, host-bound: %s", percent(r.HostCPUFrac), yesNo(r.HostBound, r.HostCPUFrac)))
	if a := r.Aria2c; a != nil {
		add("aria2c wall", secondsText(a.WallS)+", "+fixed(a.MiBPerS, 1)+" MiB/s")
		add("aria2c CPU per GiB", sig(a.CPUSPerGiB)+" s")
		add("aria2c peak RSS", bytesText(a.PeakRSSBytes))
		add("aria2c origin egress", fmt.Sprintf("%s (%s F)", bytesText(a.OriginBytes), timesText(a.OriginEgressRatio)))
	}
	add("wall", secondsText(r.WallS))
	if r.Notes != "" {
		add("notes", r.Notes)
	}
	return writeAligned(w, lines)
}
