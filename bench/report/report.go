// Package report turns benchmark results into what people read: JSON Lines
// and CSV for scripts, Markdown tables for BENCHMARKS.md, an aligned summary
// for a terminal and PNG plots comparing swarm (real and simulated) with a
// central server and the Kumar–Ross bound T*.
//
// Results are saved with WriteJSON and read back with ReadJSON, so tables and
// plots can be regenerated from saved runs without running them again.
package report

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/swarmdeploy/swarm/bench"
)

// WriteJSON writes one JSON object per result, one per line (JSON Lines), to
// w. Per-node completion times are kept so that CDFs can be plotted later.
func WriteJSON(w io.Writer, rs ...bench.Result) error {
	enc := json.NewEncoder(w)
	for i, r := range rs {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write result %d (%s N=%d): %w", i+1, r.Kind, nodes(r), err)
		}
	}
	return nil
}

// ReadJSON reads results written by WriteJSON. Blank lines are skipped and
// fields it does not know are ignored, so older readers accept newer files.
func ReadJSON(r io.Reader) ([]bench.Result, error) {
	dec := json.NewDecoder(r)
	var rs []bench.Result
	for {
		var res bench.Result
		err := dec.Decode(&res)
		if errors.Is(err, io.EOF) {
			return rs, nil
		}
		if err != nil {
			return rs, fmt.Errorf("read result %d: %w", len(rs)+1, err)
		}
		rs = append(rs, res)
	}
}

// csvHeader names the CSV columns; the names match the JSON field names so
// that one vocabulary serves both formats.
var csvHeader = []string{
	"kind", "nodes", "size_bytes", "node_up_bps", "node_down_bps", "origin_up_bps",
	"completion_s", "completion_p50_s", "completion_p90_s", "t_star_s", "completion_ratio",
	"origin_bytes", "origin_egress_ratio", "peer_share", "duplicate_bytes",
	"gossip_99_s", "gossip_100_s", "cpu_s", "peak_rss_mib", "goroutines", "wall_s",
	"cpu_s_per_gib", "rss_per_agent_bytes", "host_cpu_frac", "host_bound",
}

// WriteCSV writes a header and one row per result, for spreadsheets and
// plotting tools. Numbers are written in full precision.
func WriteCSV(w io.Writer, rs ...bench.Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("write csv header: %w", err)
	}
	for i, r := range rs {
		row := []string{
			string(r.Kind),
			strconv.Itoa(nodes(r)),
			strconv.FormatInt(size(r), 10),
			strconv.FormatInt(r.Params.NodeUp, 10),
			strconv.FormatInt(r.Params.NodeDown, 10),
			strconv.FormatInt(r.Params.OriginUp, 10),
			csvFloat(r.CompletionS),
			csvFloat(r.CompletionP50S),
			csvFloat(r.CompletionP90S),
			csvFloat(r.TStarS),
			csvFloat(r.CompletionRatio),
			strconv.FormatInt(r.OriginBytes, 10),
			csvFloat(r.OriginEgressRatio),
			csvFloat(r.PeerShare),
			strconv.FormatInt(r.DuplicateBytes, 10),
			csvFloat(r.Gossip99S),
			csvFloat(r.Gossip100S),
			csvFloat(r.CPUSeconds),
			csvFloat(r.PeakRSSMiB),
			strconv.Itoa(r.Goroutines),
			csvFloat(r.WallS),
			csvFloat(r.CPUSPerGiB),
			strconv.FormatInt(r.RSSPerAgentBytes, 10),
			csvFloat(r.HostCPUFrac),
			strconv.FormatBool(r.HostBound),
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv row %d: %w", i+1, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

func csvFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// nodes is the number of nodes of a run, also for a Result whose Finish was
// not called.
func nodes(r bench.Result) int {
	if r.Nodes > 0 {
		return r.Nodes
	}
	return r.Params.Nodes
}

// size is the bundle size F of a run, also for a Result whose Finish was not
// called.
func size(r bench.Result) int64 {
	if r.SizeBytes > 0 {
		return r.SizeBytes
	}
	return r.Params.SizeBytes
}

// kindLabel names a kind the way tables and legends show it.
func kindLabel(k bench.Kind) string {
	switch k {
	case bench.KindReal:
		return "swarm (real)"
	case bench.KindSim:
		return "swarm (sim)"
	case bench.KindCentral:
		return "central"
	}
	return string(k)
}

// kindOrder sorts kinds real, sim, central, then anything else.
func kindOrder(k bench.Kind) int {
	switch k {
	case bench.KindReal:
		return 0
	case bench.KindSim:
		return 1
	case bench.KindCentral:
		return 2
	}
	return 3
}

// firstByN keeps, for each N, the first result of kind k.
func firstByN(rs []bench.Result, k bench.Kind) map[int]bench.Result {
	m := make(map[int]bench.Result)
	for _, r := range rs {
		if r.Kind != k {
			continue
		}
		if _, ok := m[nodes(r)]; !ok {
			m[nodes(r)] = r
		}
	}
	return m
}
