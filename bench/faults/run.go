package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// Config shapes every scenario of one suite run.
type Config struct {
	// Binary is the swarm executable the daemons run; required.
	Binary string
	// Agents is the fleet size (besides the seeder); at least 3.
	Agents int
	// SizeBytes is the release's payload: seeded random bytes.
	SizeBytes int64
	// Seed makes the payload.
	Seed uint64
	// Rate is every link end's tc rate ("50mbit"): each node's upload
	// and download cap.
	Rate string
	// Timeout bounds a scenario's wait for convergence after its fault.
	Timeout time.Duration
	// Partition is how long the partition scenario keeps a third of the
	// fleet cut off; SeederDown how long the seeder stays dead.
	Partition, SeederDown time.Duration
	// HookSleep is how long the hook runs in the kill-hook scenario.
	HookSleep time.Duration
	// KeepLogs keeps a failed scenario's logs (in a directory named in
	// its Result) instead of removing them with the rest.
	KeepLogs bool
}

// DefaultConfig is what `make test-faults` runs: network-bound on two
// cores (9 agents × 50 Mbit/s each way, 64 MiB).
func DefaultConfig(binary string) Config {
	return Config{Binary: binary, Agents: 9, SizeBytes: 64 << 20, Seed: 1, Rate: "50mbit",
		Timeout: 4 * time.Minute, Partition: 30 * time.Second, SeederDown: 20 * time.Second, HookSleep: 4 * time.Second, KeepLogs: true}
}

func (c Config) validate() error {
	switch {
	case c.Binary == "":
		return errors.New("faults: Config.Binary is required")
	case c.Agents < 3:
		return fmt.Errorf("faults: %d agents: need at least 3", c.Agents)
	case c.SizeBytes <= 0 || c.Rate == "" || c.Timeout <= 0:
		return errors.New("faults: SizeBytes, Rate and Timeout are required")
	}
	return nil
}

// Result is one scenario's run and verdict.
type Result struct {
	Scenario    string `json:"scenario"`
	Nodes       int    `json:"nodes"` // agents
	SizeBytes   int64  `json:"size_bytes"`
	BundleBytes int64  `json:"bundle_bytes"`
	Rate        string `json:"rate"`
	// Fault is what was injected, as it happened.
	Fault string `json:"fault"`
	// ConvergeS is seconds from the publish until every agent ran the
	// release and the seeder's status showed each of them active on it;
	// 0 when that never happened.
	ConvergeS float64 `json:"converge_s"`
	// OriginBytes is what the seeder's link sent (the kernel's count,
	// headers and gossip included) from the publish to convergence;
	// OriginRatio is that ÷ BundleBytes and OriginLimit the bound it is
	// held to: 1.2 plus what a partition forced.
	OriginBytes int64   `json:"origin_bytes"`
	OriginRatio float64 `json:"origin_ratio"`
	OriginLimit float64 `json:"origin_limit"`
	// WorstRX is the highest of the agents' received bytes ÷ the bytes
	// they were missing, summed over every life; WorstNode is whose.
	WorstRX   float64 `json:"worst_rx_ratio"`
	WorstNode string  `json:"worst_node"`
	// RX is every agent's ratio; RXBound the bound they were held to:
	// the median's (at least rxFloor) plus rxMargin.
	RX      map[string]float64 `json:"rx_ratios,omitempty"`
	RXBound float64            `json:"rx_bound"`
	// HookRuns are the hook runs for the release that completed, over
	// every agent; HookCut those cut short by a kill.
	HookRuns int `json:"hook_runs"`
	HookCut  int `json:"hook_cut"`

	Pass     bool     `json:"pass"`
	Problems []string `json:"problems,omitempty"`
	// Logs is where a failed scenario's daemon logs were kept.
	Logs  string  `json:"logs,omitempty"`
	WallS float64 `json:"wall_s"`
}

// Scenario is one fault injected into one rollout.
type Scenario struct {
	Name string
	// Doc says what it does, for FAULTS.md and --help.
	Doc string
	run func(ctx context.Context, s *scenarioRun) error
}

// Scenarios is the suite, in the order it runs.
func Scenarios() []Scenario {
	return []Scenario{
		{"baseline", "no fault: the reference for the others' figures", baseline},
		{"kill-download", "kill -9 one agent at 40% of its download, restart it 2 s later", killDownload},
		{"kill-hook", "kill -9 one agent while its install hook runs (the hook sleeps), restart it 1 s later", killHook},
		{"seeder-join", "kill -9 the seeder at 30% of the rollout, restart it after SeederDown with --join an agent", seederJoin},
		{"seeder-nojoin", "the same, restarted without --join: the agents must find it again", seederNoJoin},
		{"partition", "take the links of a third of the agents down for Partition during a two-step rollout, then heal", partition},
		{"disk-full", "one agent's data dir on a tmpfs half the release's size; grown after it fails, it must finish by itself", diskFull},
		{"corrupt-peer", "an agent that has the release serves it corrupted (its bundle overwritten on disk) to the agents that start after", corruptPeer},
		{"churn", "kill -9 and restart 10% of the agents every 4 s during the rollout, 8 rounds at most", churn},
	}
}

// rxSlack and rxMargin bound the payload an agent may receive (Bytes.
// RXPayload: its link's bytes less a frame header each, which also takes
// out the ACKs of its uploads) for the bytes it was missing, over all its
// lives, without having fetched a verified piece twice. BitTorrent's
// framing costs well under 0.1% (13 bytes per 16 KiB block, a 9-byte have
// per piece and peer), but the torrent client also receives blocks twice
// (endgame, requests re-sent after slow peers): agents that no fault
// touched measure 1.10–1.33 on a busy two-core machine (FAULTS.md), more
// when it is busier. So the bound is the run's own median agent's ratio
// (rxFloor at least) plus rxMargin: a restart at 40% that fetched its
// verified pieces again adds 0.4 to what that agent would have wasted
// anyway. rxSlack covers gossip (a few KB/s), handshakes and metadata.
const (
	rxFloor  = 1.10
	rxMargin = 0.25
	rxSlack  = 2 << 20
)

// originBound is the bound on origin egress, in copies.
const originBound = 1.2

// scenarioRun is the state of one scenario.
type scenarioRun struct {
	cfg   Config
	f     *fleet
	r     *Result
	log   *zap.Logger
	base  map[string]Bytes
	t0    time.Time
	fault []string
	// problems are failures a scenario found on its way (judge adds them).
	problems []string
	// forced is origin bytes a partition forced; rxExtra bytes any agent
	// may receive beyond its bound (what a corrupt peer served).
	forced, rxExtra int64
}

// Run runs one scenario in a lab of its own and judges it. The error is
// for a suite that could not run at all (no root, no ip); a scenario that
// failed is a Result with Pass false and its problems.
func Run(ctx context.Context, cfg Config, sc Scenario, log *zap.Logger) (r Result, err error) {
	began := time.Now()
	r = Result{Scenario: sc.Name, Nodes: cfg.Agents, SizeBytes: cfg.SizeBytes, Rate: cfg.Rate}
	defer func() { r.WallS = time.Since(began).Seconds() }()
	if err := cfg.validate(); err != nil {
		return r, err
	}
	if err := Check(); err != nil {
		return r, err
	}
	if err := Sweep(ctx); err != nil {
		log.Warn("sweep of an earlier run's leftovers", zap.Error(err))
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-%s-", DirPrefix, os.Getpid(), sc.Name))
	if err != nil {
		return r, err
	}
	lab, err := NewLab(ctx, cfg.Rate, log)
	if err != nil {
		os.RemoveAll(dir)
		return r, err
	}
	s := &scenarioRun{cfg: cfg, r: &r, log: log}
	defer func() {
		if s.f != nil {
			s.f.close()
		}
		if cerr := lab.Close(); cerr != nil {
			r.Problems = append(r.Problems, "cleanup: "+cerr.Error())
			r.Pass = false
		}
		r.Logs = keepLogs(dir, cfg.KeepLogs && !r.Pass)
		os.RemoveAll(dir)
	}()
	if s.f, err = newFleet(ctx, cfg, lab, dir, log); err != nil {
		r.Problems = append(r.Problems, "setup: "+err.Error())
		return r, nil
	}
	if err := s.f.pack(); err != nil {
		r.Problems = append(r.Problems, "setup: "+err.Error())
		return r, nil
	}
	r.BundleBytes = s.f.bundle.Manifest.BundleSize
	runErr := sc.run(ctx, s)
	r.Fault = strings.Join(s.fault, "; ")
	s.judge(ctx, runErr)
	return r, nil
}

// keepLogs moves a run's logs out of dir when keep, and says where.
func keepLogs(dir string, keep bool) string {
	if !keep {
		return ""
	}
	kept, err := os.MkdirTemp("", "swarm-faults-logs-")
	if err != nil {
		return ""
	}
	dst := filepath.Join(kept, "logs")
	if os.Rename(filepath.Join(dir, "logs"), dst) != nil {
		return ""
	}
	_ = os.Rename(filepath.Join(dir, "hooks"), filepath.Join(kept, "hooks"))
	return dst
}

// note records what a scenario injected, for Result.Fault.
func (s *scenarioRun) note(format string, args ...any) {
	s.fault = append(s.fault, fmt.Sprintf(format, args...))
}

// begin starts the seeder and every agent and publishes with plan.
func (s *scenarioRun) begin(ctx context.Context, plan *release.Plan) error {
	if err := s.f.startSeeder(ctx); err != nil {
		return err
	}
	if err := s.f.startAgents(ctx); err != nil {
		return err
	}
	if err := s.mark(ctx); err != nil {
		return err
	}
	return s.f.publish(ctx, plan)
}

// mark starts the measurement: counters and clock from here, and every
// agent that does not run the release yet is missing all of it.
func (s *scenarioRun) mark(ctx context.Context) error {
	var err error
	if s.base, err = s.f.lab.Counters(ctx); err != nil {
		return err
	}
	s.t0 = time.Now()
	for _, a := range s.f.agents {
		a.missing = s.r.BundleBytes
		if s.f.releaseID != "" && s.f.onRelease(a) {
			a.missing = 0
		}
	}
	return nil
}

// delta is what a node's link counted since mark.
func (s *scenarioRun) delta(now map[string]Bytes, name string) Bytes {
	n, b := now[name], s.base[name]
	return Bytes{RX: n.RX - b.RX, RXPackets: n.RXPackets - b.RXPackets, TX: n.TX - b.TX, TXPackets: n.TXPackets - b.TXPackets}
}

// waitFor polls cond until it holds, a daemon dies by itself, or timeout.
func (s *scenarioRun) waitFor(ctx context.Context, what string, timeout time.Duration, cond func(map[string]Bytes) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := s.f.checkAlive(); err != nil {
			return err
		}
		now, err := s.f.lab.Counters(ctx)
		if err != nil {
			return err
		}
		ok, err := cond(now)
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s for %s", errWaitTimeout, timeout, what)
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// rxFraction is how much of the bundle an agent received since mark
// (payload, estimated).
func (s *scenarioRun) rxFraction(now map[string]Bytes, a *agentProc) float64 {
	return float64(s.delta(now, a.node.Name).RXPayload()) / float64(s.r.BundleBytes)
}

// meanRX is the agents' mean rxFraction.
func (s *scenarioRun) meanRX(now map[string]Bytes) float64 {
	sum := 0.0
	for _, a := range s.f.agents {
		sum += min(s.rxFraction(now, a), 1)
	}
	return sum / float64(len(s.f.agents))
}

// converge waits until every agent runs the release and the seeder's
// status shows each of them active on it, and records when.
func (s *scenarioRun) converge(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.Timeout)
	for {
		if err := s.f.checkAlive(); err != nil {
			return err
		}
		behind := s.behind(ctx)
		if len(behind) == 0 {
			s.r.ConvergeS = time.Since(s.t0).Seconds()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w within %s after the fault: %s", errConverge, s.cfg.Timeout, strings.Join(behind, "; "))
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// behind says, per agent not yet done, why: what it runs, or what the
// seeder's status shows of it.
func (s *scenarioRun) behind(ctx context.Context) []string {
	var out []string
	for _, a := range s.f.agents {
		if !s.f.onRelease(a) {
			out = append(out, fmt.Sprintf("%s runs %q", a.node.Name, a.current()))
		}
	}
	if len(out) > 0 {
		return out
	}
	st, err := s.f.status(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	seen := map[string]string{}
	for _, n := range st.Nodes {
		phase := "no state for " + app
		for _, ap := range n.Apps {
			if ap.App == app {
				phase = ap.Phase
				if ap.ReleaseID != s.f.releaseID {
					phase += " on another release"
				}
			}
		}
		seen[n.Name] = phase
	}
	missing := 0
	for _, a := range s.f.agents {
		switch p, ok := seen[a.node.Name]; {
		case !ok:
			missing++
		case p != string(gossip.PhaseActive):
			out = append(out, fmt.Sprintf("the seeder shows %s %s", a.node.Name, p))
		}
	}
	if missing > 0 {
		out = append(out, fmt.Sprintf("the seeder sees %d of %d agents", len(s.f.agents)-missing, len(s.f.agents)))
	}
	return out
}

// errWaitTimeout marks a wait for a fault's moment that ran out.
var errWaitTimeout = errors.New("waited in vain")

// judge fills the Result's figures and verdict.
func (s *scenarioRun) judge(ctx context.Context, runErr error) {
	r := s.r
	if runErr != nil {
		r.Problems = append(r.Problems, runErr.Error())
	}
	r.Problems = append(r.Problems, s.problems...)
	if s.base == nil {
		r.Pass = len(r.Problems) == 0
		return
	}
	// Let hook runs a kill left behind finish, so that a second run shows.
	s.settleHooks(ctx)
	now, err := s.f.lab.Counters(ctx)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return
	}
	F := float64(r.BundleBytes)
	r.OriginBytes = s.delta(now, "seeder").TX
	r.OriginRatio = float64(r.OriginBytes) / F
	r.OriginLimit = originBound + float64(s.forced)/F
	if r.OriginRatio > r.OriginLimit {
		r.Problems = append(r.Problems, fmt.Sprintf("origin sent %.2f copies, over its bound of %.2f", r.OriginRatio, r.OriginLimit))
	}
	var ratios []float64
	r.RX = map[string]float64{}
	for _, a := range s.f.agents {
		if a.missing > 0 {
			ratio := float64(s.delta(now, a.node.Name).RXPayload()) / float64(a.missing)
			r.RX[a.node.Name] = ratio
			ratios = append(ratios, ratio)
		}
	}
	sort.Float64s(ratios)
	r.RXBound = rxFloor + rxMargin
	if len(ratios) > 0 {
		r.RXBound = max(ratios[len(ratios)/2], rxFloor) + rxMargin
	}
	for _, a := range s.f.agents {
		rx := s.delta(now, a.node.Name).RXPayload()
		if ratio := r.RX[a.node.Name]; ratio > r.WorstRX || r.WorstNode == "" {
			r.WorstRX, r.WorstNode = ratio, a.node.Name
		}
		if limit := int64(r.RXBound*float64(a.missing)) + rxSlack + s.rxExtra; rx > limit {
			r.Problems = append(r.Problems, fmt.Sprintf("%s received %.1f MiB of payload for %.1f MiB it lacked (bound %.1f MiB): pieces fetched twice",
				a.node.Name, mib(rx), mib(a.missing), mib(limit)))
		}
		runs, err := hookRuns(a.hookLog, string(s.f.releaseID))
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: hook log: %v", a.node.Name, err))
			continue
		}
		v := judgeHooks(runs)
		r.HookRuns += v.completed
		r.HookCut += v.cut
		if v.problem != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %s", a.node.Name, v.problem))
		}
		if v.completed == 0 && s.f.onRelease(a) && a.missing > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s runs the release but its hook never completed", a.node.Name))
		}
	}
	s.explain()
	r.Pass = len(r.Problems) == 0
}

// settleHooks waits, up to twice the hook's sleep, while any hook run for
// the release is still going.
func (s *scenarioRun) settleHooks(ctx context.Context) {
	deadline := time.Now().Add(2*s.cfg.HookSleep + time.Second)
	for time.Now().Before(deadline) {
		running := 0
		for _, a := range s.f.agents {
			runs, _ := hookRuns(a.hookLog, string(s.f.releaseID))
			running += judgeHooks(runs).running
		}
		if running == 0 || sleep(ctx, poll) != nil {
			return
		}
	}
}

// explain adds, for a failed scenario, what the daemons' logs say about
// it: the first line of each that reads as a crash or a failure.
func (s *scenarioRun) explain() {
	if len(s.r.Problems) == 0 {
		return
	}
	logs := []string{filepath.Join(s.f.logs, "seeder.log")}
	for _, a := range s.f.agents {
		logs = append(logs, a.log)
	}
	var seen []string
	for _, l := range logs {
		if line := grepLog(l, "fatal error", "panic:", "SIGBUS", "no space left", "disk full", `"level":"error"`); line != "" {
			seen = append(seen, filepath.Base(l)+": "+line)
		}
	}
	sort.Strings(seen)
	if len(seen) > 3 {
		seen = append(seen[:3], fmt.Sprintf("(%d more logs with errors)", len(seen)-3))
	}
	for _, l := range seen {
		s.r.Problems = append(s.r.Problems, "log "+l)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
