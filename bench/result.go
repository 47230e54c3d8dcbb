package bench

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Kind names what produced a Result.
type Kind string

// Result kinds.
const (
	KindReal    Kind = "real"    // real agents and seeder in this process
	KindCentral Kind = "central" // every node downloads from one HTTP server
	KindSim     Kind = "sim"     // the piece-level simulator
)

// Params are the inputs of one run, shared by every kind so that runs can be
// compared line by line. Rates are bytes per second; zero means no cap.
type Params struct {
	Nodes       int   `json:"nodes"`
	SizeBytes   int64 `json:"size_bytes"`
	PieceLength int64 `json:"piece_length"`
	NodeUp      int64 `json:"node_up_bps"`
	NodeDown    int64 `json:"node_down_bps"`
	OriginUp    int64 `json:"origin_up_bps"`
	// MaxPeers is how many peers each node is told of; MaxConns caps the
	// connections of one node per torrent.
	MaxPeers int `json:"max_peers"`
	MaxConns int `json:"max_conns"`
	// OriginFeeders is the origin policy: how many nodes fetch from the
	// origin, each a share of the pieces, while the others fetch from peers
	// (see swarm.OriginUse). 0 = every node uses the origin from the start
	// (the naive policy).
	OriginFeeders int    `json:"origin_feeders"`
	Seed          uint64 `json:"seed"`
}

// Validate refuses parameters no run can use, with a message that names
// the flag to change.
func (p Params) Validate() error {
	switch {
	case p.Nodes <= 0:
		return fmt.Errorf("--nodes %d: need at least one node", p.Nodes)
	case p.SizeBytes <= 0:
		return fmt.Errorf("--size %d: need a positive bundle size, e.g. 64MiB", p.SizeBytes)
	case p.NodeUp < 0 || p.NodeDown < 0 || p.OriginUp < 0:
		return errors.New("rates must be positive (or 0 for no cap where a command allows it)")
	case p.MaxPeers < 0 || p.MaxConns < 0:
		return errors.New("--max-peers and --max-conns must not be negative")
	case p.OriginFeeders < 0:
		return errors.New("--origin-feeders must not be negative")
	}
	return nil
}

// Result is one run's measurements. JSON field names are a contract: scripts
// and CI read nodes, size_bytes, completion_s, t_star_s, completion_ratio and
// origin_egress_ratio.
type Result struct {
	Kind   Kind      `json:"kind"`
	Params Params    `json:"params"`
	Start  time.Time `json:"start"`

	Nodes     int   `json:"nodes"`
	SizeBytes int64 `json:"size_bytes"`

	// Completion times in seconds from publish to each node active.
	CompletionS    float64   `json:"completion_s"` // the last node
	CompletionP50S float64   `json:"completion_p50_s"`
	CompletionP90S float64   `json:"completion_p90_s"`
	Completions    []float64 `json:"completions_s,omitempty"` // every node, sorted

	// DownloadS is when the last node held the whole verified bundle
	// (staged), before its install; the simulator's completion is this
	// moment (it does not model installs), so validation compares it.
	DownloadS float64 `json:"download_s,omitempty"`

	TStarS          float64 `json:"t_star_s"`
	CompletionRatio float64 `json:"completion_ratio"` // CompletionS / TStarS

	OriginBytes       int64   `json:"origin_bytes"`
	OriginEgressRatio float64 `json:"origin_egress_ratio"` // OriginBytes / SizeBytes
	PeerBytes         int64   `json:"peer_bytes"`          // useful bytes nodes got from each other
	PeerShare         float64 `json:"peer_share"`          // PeerBytes / all useful bytes
	DuplicateBytes    int64   `json:"duplicate_bytes"`

	// Gossip convergence: seconds from publish until 99% and 100% of nodes
	// accepted the desired state. Zero where not measured.
	Gossip99S  float64 `json:"gossip_99_s,omitempty"`
	Gossip100S float64 `json:"gossip_100_s,omitempty"`

	// Cost of the run in this process (real and central runs).
	CPUSeconds float64 `json:"cpu_s,omitempty"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	WallS      float64 `json:"wall_s"`

	// Cost per node (real and central runs), over the same window as
	// CPUSeconds. CPUSPerGiB is the process's CPU seconds per GiB delivered
	// to the nodes (N × F). RSSPerAgentBytes is the process's peak RSS less
	// its RSS just before the agents (or clients) started, divided by N:
	// in one process this is an attribution, not a measurement of one node
	// (`swarm bench procs` measures agents as separate processes).
	// HostCPUFrac is the machine-wide busy CPU over the window ÷ (wall ×
	// cores), every process counted; HostBound is HostCPUFrac above
	// HostBoundFrac: the run measured the host, not the protocol. Absent
	// (zero, false) where not measured, as for simulated runs.
	CPUSPerGiB       float64 `json:"cpu_s_per_gib,omitempty"`
	RSSPerAgentBytes int64   `json:"rss_per_agent_bytes,omitempty"`
	HostCPUFrac      float64 `json:"host_cpu_frac,omitempty"`
	HostBound        bool    `json:"host_bound,omitempty"`

	Notes string `json:"notes,omitempty"`
}

// Finish fills the derived fields from Completions, OriginBytes and the
// params: percentiles, T*, ratios, and for runs that install nothing
// (sim, central) DownloadS.
func (r *Result) Finish() {
	r.Nodes, r.SizeBytes = r.Params.Nodes, r.Params.SizeBytes
	sort.Float64s(r.Completions)
	if n := len(r.Completions); n > 0 {
		r.CompletionS = r.Completions[n-1]
		r.CompletionP50S = Percentile(r.Completions, 0.50)
		r.CompletionP90S = Percentile(r.Completions, 0.90)
		if r.Kind != KindReal && r.DownloadS == 0 {
			// Nothing is installed: the last download is the completion.
			r.DownloadS = r.CompletionS
		}
	}
	r.TStarS = TStar(r.Params)
	if r.TStarS > 0 {
		r.CompletionRatio = r.CompletionS / r.TStarS
	}
	if r.SizeBytes > 0 {
		r.OriginEgressRatio = float64(r.OriginBytes) / float64(r.SizeBytes)
	}
	if total := r.OriginBytes + r.PeerBytes; total > 0 {
		r.PeerShare = float64(r.PeerBytes) / float64(total)
	}
}

// Percentile returns the q-quantile (0..1) of sorted values, nearest rank.
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// AutoFeeders is the origin feeder count for p: four times as many feeders
// as it takes to absorb the origin's upload rate at the nodes' download
// rate, at most 64 and Nodes. One share per feeder is the only data that
// leaves the origin, so more feeders cost no origin bytes, and they spread
// the fresh pieces over more uploaders: in the simulator at 5000 nodes
// (1 GiB, 1 Gbit/s nodes, 10 Gbit/s origin) 5, 10, 20 and 40 feeders
// completed in 1.85, 1.59, 1.49 and 1.47 × T*, all with the origin sending
// 1.00 copies (every node on the origin: 1.45 × T* and 13.3 copies).
func AutoFeeders(p Params) int {
	k := 1
	if p.NodeDown > 0 && p.OriginUp > 0 {
		k = int((p.OriginUp + p.NodeDown - 1) / p.NodeDown)
	}
	return max(min(4*k, 64, p.Nodes), 1)
}

// TStar is the Kumar–Ross lower bound on the time to get a file of F bytes
// from one origin to N nodes over peer-to-peer distribution (Kumar and Ross,
// 2006):
//
//	T* = max( F/u_s, F/d_min, N·F/(u_s + Σu_i) )
//
// with u_s the origin's upload rate, u_i the nodes' upload rates and d_min the
// smallest node download rate. A zero rate means "not a bound": its term is
// left out. With every rate zero T* is 0.
func TStar(p Params) float64 {
	f, n := float64(p.SizeBytes), float64(p.Nodes)
	t := 0.0
	if p.OriginUp > 0 {
		t = math.Max(t, f/float64(p.OriginUp))
	}
	if p.NodeDown > 0 {
		t = math.Max(t, f/float64(p.NodeDown))
	}
	if p.OriginUp > 0 && p.NodeUp > 0 {
		t = math.Max(t, n*f/(float64(p.OriginUp)+n*float64(p.NodeUp)))
	}
	return t
}

// CentralTime is the lower bound for every node downloading from one server:
// max(N·F/u_s, F/d_min).
func CentralTime(p Params) float64 {
	f, n := float64(p.SizeBytes), float64(p.Nodes)
	t := 0.0
	if p.OriginUp > 0 {
		t = n * f / float64(p.OriginUp)
	}
	if p.NodeDown > 0 {
		t = math.Max(t, f/float64(p.NodeDown))
	}
	return t
}
