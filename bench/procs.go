package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// KindProcs names a ProcsResult: a seeder and agents as separate OS
// processes.
const KindProcs Kind = "procs"

// ProcsConfig shapes one RunProcs.
type ProcsConfig struct {
	// Binary is the swarm executable run as `swarm seeder` and
	// `swarm agent`; required.
	Binary string
	// Params are the run's inputs: Nodes, SizeBytes, NodeUp, NodeDown,
	// OriginUp (bytes/s; 0 = no cap), MaxConns (0 = the daemons' default),
	// OriginFeeders (0 = every agent on the origin) and Seed.
	Params Params
	// Dir is the scratch directory; required. The caller removes it.
	Dir string
	// Aria2c, when set, is the aria2c executable: after the agents, it
	// fetches the same release from the same seeder alone, by the magnet
	// URI the publish returned.
	Aria2c string
	// StallTimeout ends the run with an error when no agent's progress
	// changed for this long (0 = 2 minutes). The whole run is bounded by
	// the caller's ctx.
	StallTimeout time.Duration
}

// ProcsResult is one process-level run. Every agent is its own process,
// so its CPU time and peak RSS are its own, not an attribution.
type ProcsResult struct {
	Kind   Kind      `json:"kind"` // KindProcs
	Params Params    `json:"params"`
	Start  time.Time `json:"start"` // the publish call

	Nodes       int   `json:"nodes"`
	SizeBytes   int64 `json:"size_bytes"`
	BundleBytes int64 `json:"bundle_bytes"`

	// CompletionS is seconds from the publish call until the last agent
	// switched to the release (its current symlink); Completions are every
	// agent's, sorted. MiBPerS is one agent's throughput: bundle size ÷
	// CompletionS.
	CompletionS float64   `json:"completion_s"`
	Completions []float64 `json:"completions_s"`
	MiBPerS     float64   `json:"mib_per_s"`

	// OriginBytes is the BitTorrent payload the seeder uploaded (its
	// status's origin_bytes_sent) from the publish's return to the last
	// agent active. OriginEgressRatio is OriginBytes ÷ BundleBytes.
	OriginBytes       int64   `json:"origin_bytes"`
	OriginEgressRatio float64 `json:"origin_egress_ratio"`

	// Agents are the per-process costs from the publish call to the last
	// agent active. CPUSPerGiB and RSSPerAgentBytes are their means.
	Agents           []ProcCost `json:"agents"`
	CPUSPerGiB       float64    `json:"cpu_s_per_gib"`
	RSSPerAgentBytes int64      `json:"rss_per_agent_bytes"`
	// FetchCPUSPerGiB is the agents' CPU from the publish call to the start
	// of each one's install (bundle fetched, seeded meanwhile, and checked
	// against its release id) per GiB delivered: the figure to set beside
	// another client's download. CPUSPerGiB less this is the install:
	// unpack (which hashes the bundle again), hook and switch.
	FetchCPUSPerGiB float64 `json:"fetch_cpu_s_per_gib"`
	// FetchS is seconds from the publish call until the last agent began
	// its install: the download alone, to set beside another client's.
	FetchS float64 `json:"fetch_s"`
	// Seeder is the origin process's cost over the same window, per GiB
	// delivered to all agents.
	Seeder ProcCost `json:"seeder"`

	// HostCPUFrac is the machine's busy CPU (every process) over the
	// window ÷ (window × cores); HostBound is HostCPUFrac above
	// HostBoundFrac: the figures are then the host's, not the protocol's.
	HostCPUFrac float64 `json:"host_cpu_frac"`
	HostBound   bool    `json:"host_bound"`

	// Aria2c is the same release fetched by aria2c alone from the same
	// seeder, when asked for.
	Aria2c *ClientRun `json:"aria2c,omitempty"`

	WallS float64 `json:"wall_s"` // the whole call, setup and teardown included
	Notes string  `json:"notes,omitempty"`
}

// ProcCost is what one process used.
type ProcCost struct {
	Name         string  `json:"name"`
	CPUS         float64 `json:"cpu_s"`
	CPUSPerGiB   float64 `json:"cpu_s_per_gib"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	CompletionS  float64 `json:"completion_s,omitempty"`
	// FetchS and FetchCPUS are the seconds from the publish call to the
	// start of the agent's install and its CPU seconds by then.
	FetchS          float64 `json:"fetch_s,omitempty"`
	FetchCPUS       float64 `json:"fetch_cpu_s,omitempty"`
	FetchCPUSPerGiB float64 `json:"fetch_cpu_s_per_gib,omitempty"`
}

// ClientRun is another BitTorrent client fetching the release alone from
// the seeder, for comparison: its wall time from start to exit, its
// throughput, its CPU time (user + system, rusage) per GiB fetched, its peak
// RSS (rusage maxrss) and what the origin sent it.
type ClientRun struct {
	Client            string  `json:"client"`
	WallS             float64 `json:"wall_s"`
	MiBPerS           float64 `json:"mib_per_s"`
	CPUS              float64 `json:"cpu_s"`
	CPUSPerGiB        float64 `json:"cpu_s_per_gib"`
	PeakRSSBytes      int64   `json:"peak_rss_bytes"`
	OriginBytes       int64   `json:"origin_bytes"`
	OriginEgressRatio float64 `json:"origin_egress_ratio"`
	HostCPUFrac       float64 `json:"host_cpu_frac"`
	HostBound         bool    `json:"host_bound"`
}

// ProcsProgress is what RunProcs reports while it runs.
type ProcsProgress struct {
	Stage    string  // "starting", "swarm", "aria2c"
	Active   int     // agents active
	Total    int     // agents
	Progress float64 // mean download progress of the agents, 0..1, as gossiped
	Elapsed  time.Duration
}

// procsApp is the app a process-level run publishes.
const procsApp = "bench"

// LogsDir is where RunProcs keeps the processes' logs under ProcsConfig.Dir.
func LogsDir(dir string) string { return filepath.Join(dir, "logs") }

// stopGrace is how long a stopped process may take before it is killed.
const stopGrace = 10 * time.Second

// startTimeout bounds each daemon's start and the agents' join.
const startTimeout = time.Minute

// RunProcs starts `swarm seeder` and Params.Nodes × `swarm agent` as
// separate processes on 127.0.0.1 with ports the OS chooses, publishes a
// single-file app of SizeBytes seeded random bytes, and waits until every
// agent has switched to it, bounded by ctx and StallTimeout. Then, with
// Aria2c set, it stops the agents and lets aria2c fetch the same release
// from the seeder. Every process is stopped (its process group killed if it
// does not end) on every path. A process that exits early, a timeout or a
// stall is an error; the Result then holds what was measured so far and
// must not be reported as a run.
func RunProcs(ctx context.Context, cfg ProcsConfig, log *zap.Logger, progress func(ProcsProgress)) (r ProcsResult, err error) {
	p := cfg.Params
	began := time.Now()
	r = ProcsResult{Kind: KindProcs, Params: p, Nodes: p.Nodes, SizeBytes: p.SizeBytes}
	if err := p.Validate(); err != nil {
		return r, fmt.Errorf("procs: %w", err)
	}
	if cfg.Binary == "" || cfg.Dir == "" {
		return r, errors.New("procs: Binary and Dir are required")
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 2 * time.Minute
	}
	if progress == nil {
		progress = func(ProcsProgress) {}
	}
	run := &procsRun{cfg: cfg, log: log, progress: progress, logs: LogsDir(cfg.Dir)}
	defer func() {
		run.stopAll()
		r.WallS = time.Since(began).Seconds()
	}()
	if err := os.MkdirAll(run.logs, 0o755); err != nil {
		return r, fmt.Errorf("procs: %w", err)
	}
	progress(ProcsProgress{Stage: "starting", Total: p.Nodes})
	if err := run.start(ctx); err != nil {
		return r, fmt.Errorf("procs: %w", err)
	}
	b, err := run.pack()
	if err != nil {
		return r, fmt.Errorf("procs: %w", err)
	}
	defer b.Close()
	r.BundleBytes = b.Manifest.BundleSize
	r.Params.PieceLength = b.Manifest.PieceLength

	if err := run.swarm(ctx, b, &r); err != nil {
		return r, fmt.Errorf("procs: %w", err)
	}
	if cfg.Aria2c != "" {
		for _, a := range run.agents {
			a.Stop(stopGrace)
		}
		cr, err := run.aria2c(ctx, &r)
		r.Aria2c = &cr
		if err != nil {
			return r, fmt.Errorf("procs: aria2c: %w", err)
		}
	}
	return r, nil
}

// procsRun is the state of one RunProcs.
type procsRun struct {
	cfg      ProcsConfig
	log      *zap.Logger
	progress func(ProcsProgress)
	logs     string

	key    *release.PrivateKey
	seeder *Child
	client *seeder.Client // the seeder's API
	// seederTorrent is the seeder's BitTorrent listen address.
	seederTorrent string
	agents        []*Child
	agentDirs     []string
	magnet        string
	releaseID     release.ID
}

// stopAll stops every process still running.
func (run *procsRun) stopAll() {
	for _, a := range run.agents {
		a.Stop(stopGrace)
	}
	if run.seeder != nil {
		run.seeder.Stop(stopGrace)
	}
}

// start makes a key, starts the seeder and the agents, and waits until the
// seeder sees every agent.
func (run *procsRun) start(ctx context.Context) error {
	dir, p := run.cfg.Dir, run.cfg.Params
	keys := filepath.Join(dir, "keys")
	for _, role := range []string{"release", "rollout"} {
		kg, err := StartChild("keygen", filepath.Join(run.logs, "keygen-"+role+".log"), run.cfg.Binary, "keygen", "--role", role, "--out", keys)
		if err != nil {
			return err
		}
		select {
		case <-kg.done:
		case <-ctx.Done():
			kg.Stop(0)
			return fmt.Errorf("keygen: %w", ctx.Err())
		case <-time.After(startTimeout):
			kg.Stop(0)
			return errors.New("keygen did not finish within a minute")
		}
		if kg.err != nil {
			return kg.Failure()
		}
	}
	var err error
	if run.key, err = release.LoadPrivateKey(filepath.Join(keys, "release.key")); err != nil {
		return fmt.Errorf("load key: %w", err)
	}
	// Gossip encrypted, as in production.
	gossipKey := filepath.Join(keys, "gossip.key")
	gk, err := gossip.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := os.WriteFile(gossipKey, []byte(gk+"\n"), 0o600); err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}

	token, err := seeder.GenerateToken()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(keys, "api-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("API token: %w", err)
	}
	args := []string{"seeder", "--store", filepath.Join(dir, "store"), "--key", filepath.Join(keys, "rollout.key"),
		"--trust-release", filepath.Join(keys, "release.pub"), "--api-token-file", tokenFile,
		"--name", "seeder", "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--gossip-key-file", gossipKey, "--addr-file", filepath.Join(dir, "seeder.addrs"), "--upload-rate", strconv.FormatInt(p.OriginUp, 10)}
	if p.MaxConns > 0 {
		args = append(args, "--max-conns", strconv.Itoa(p.MaxConns))
	}
	if run.seeder, err = StartChild("seeder", filepath.Join(run.logs, "seeder.log"), run.cfg.Binary, args...); err != nil {
		return err
	}
	addrs, err := readAddrFile(ctx, run.seeder, filepath.Join(dir, "seeder.addrs"), startTimeout)
	if err != nil {
		return err
	}
	api, gossipAddr := addrs["api"], addrs["gossip"]
	run.seederTorrent = addrs["torrent"]
	if api == "" || gossipAddr == "" || run.seederTorrent == "" {
		return fmt.Errorf("seeder's address file lacks api, gossip or torrent: %v", addrs)
	}
	if run.client, err = seeder.NewClient(api, seeder.ClientOptions{Token: token}); err != nil {
		return err
	}

	for i := range p.Nodes {
		name := fmt.Sprintf("agent-%03d", i+1)
		data := filepath.Join(dir, name)
		args := []string{"agent", "--data", data, "--name", name, "--join", gossipAddr,
			"--trust-release", filepath.Join(keys, "release.pub"), "--trust-rollout", filepath.Join(keys, "rollout.pub"), "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0",
			"--gossip-key-file", gossipKey,
			"--addr-file", filepath.Join(dir, name+".addrs"),
			"--upload-rate", strconv.FormatInt(p.NodeUp, 10), "--download-rate", strconv.FormatInt(p.NodeDown, 10),
			"--origin-feeders", strconv.Itoa(p.OriginFeeders)}
		if p.MaxConns > 0 {
			args = append(args, "--max-conns", strconv.Itoa(p.MaxConns))
		}
		a, err := StartChild(name, filepath.Join(run.logs, name+".log"), run.cfg.Binary, args...)
		if err != nil {
			return err
		}
		run.agents = append(run.agents, a)
		run.agentDirs = append(run.agentDirs, data)
	}
	for i, a := range run.agents {
		if _, err := readAddrFile(ctx, a, filepath.Join(dir, a.name+".addrs"), startTimeout); err != nil {
			return err
		}
		run.progress(ProcsProgress{Stage: "starting", Active: i + 1, Total: p.Nodes})
	}
	return run.waitJoined(ctx)
}

// membershipSettle is how long a run waits after the seeder lists every
// agent: agents join through the seeder, and the first ones learn of the
// later ones from gossip a few rounds after. Feeders are chosen from each
// agent's view of the members, so a publish into views that still differ
// makes an agent that sees fewer members take a larger share from the
// origin (two agents, one seeing only itself, took 1.5 copies).
const membershipSettle = 2 * time.Second

// waitJoined waits until the seeder's status lists every agent, and then
// membershipSettle for the agents' views of each other.
func (run *procsRun) waitJoined(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if err := run.checkAlive(); err != nil {
			return err
		}
		st, err := run.status(ctx)
		if err == nil && len(st.Nodes) >= len(run.agents) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(membershipSettle):
				return run.checkAlive()
			}
		}
		select {
		case <-ctx.Done():
			seen := 0
			if err == nil {
				seen = len(st.Nodes)
			}
			return fmt.Errorf("the seeder saw %d of %d agents join: %w", seen, len(run.agents), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkAlive fails when the seeder or an agent has exited.
func (run *procsRun) checkAlive() error {
	if run.seeder.Exited() {
		return run.seeder.Failure()
	}
	for _, a := range run.agents {
		if a.Exited() {
			return a.Failure()
		}
	}
	return nil
}

// status reads the seeder's cluster status, within 10 seconds.
func (run *procsRun) status(ctx context.Context) (seeder.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := run.client.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("seeder status: %w", err)
	}
	return st, nil
}

// pack writes the payload and packs it into a signed bundle; the payload is
// removed once packed.
func (run *procsRun) pack() (*seeder.Bundle, error) {
	p := run.cfg.Params
	payloadDir := filepath.Join(run.cfg.Dir, "payload")
	if err := os.MkdirAll(payloadDir, 0o755); err != nil {
		return nil, err
	}
	payload := filepath.Join(payloadDir, "payload.bin")
	if err := WriteRandomFile(payload, p.SizeBytes, p.Seed); err != nil {
		return nil, err
	}
	defer os.Remove(payload)
	b, err := seeder.Pack(seeder.PackOptions{Source: payload, App: procsApp, Version: "1.0.0", Key: run.key, TempDir: run.cfg.Dir})
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	return b, nil
}

// procsPoll is how often the swarm phase looks for agents that switched.
const procsPoll = 25 * time.Millisecond

// statusEvery is how often the swarm phase reads the seeder's status for
// failed agents and progress.
const statusEvery = time.Second

// swarm publishes b and waits until every agent runs it, filling r.
func (run *procsRun) swarm(ctx context.Context, b *seeder.Bundle, r *ProcsResult) error {
	pids := make([]int, len(run.agents))
	cpu0 := make([]float64, len(run.agents))
	for i, a := range run.agents {
		pids[i] = a.cmd.Process.Pid
		var err error
		if cpu0[i], err = pidCPUSeconds(pids[i]); err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
	}
	seederPID := run.seeder.cmd.Process.Pid
	seederCPU0, err := pidCPUSeconds(seederPID)
	if err != nil {
		return fmt.Errorf("seeder: %w", err)
	}
	busy0 := machineBusySeconds()

	r.Start = time.Now()
	pub, err := run.client.PublishBundle(ctx, b, nil)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	st0, err := run.status(ctx)
	if err != nil {
		return err
	}
	run.magnet, run.releaseID = pub.Magnet, pub.ReleaseID

	done := make([]float64, len(run.agents)) // seconds to active, 0 = not yet
	// fetched[i] is seconds to the start of agent i's install (the bundle
	// fetched and verified), fetchCPU[i] its CPU seconds by then.
	fetched := make([]float64, len(run.agents))
	fetchCPU := make([]float64, len(run.agents))
	active := 0
	lastStatus := time.Time{}
	lastProgress, progressAt := -1.0, time.Now()
	mean := 0.0
	for active < len(run.agents) {
		if err := run.checkAlive(); err != nil {
			return err
		}
		for i, d := range run.agentDirs {
			if done[i] > 0 {
				continue
			}
			if fetched[i] == 0 && installStarted(d) {
				fetched[i] = max(time.Since(r.Start).Seconds(), 1e-9)
				if cpu, err := pidCPUSeconds(pids[i]); err == nil {
					fetchCPU[i] = cpu - cpu0[i]
				}
			}
			if _, err := os.Lstat(filepath.Join(d, "releases", procsApp, "current")); err == nil {
				done[i] = max(time.Since(r.Start).Seconds(), 1e-9)
				active++
			}
		}
		if time.Since(lastStatus) >= statusEvery {
			lastStatus = time.Now()
			st, err := run.status(ctx)
			if err != nil {
				return err
			}
			var failed error
			mean, failed = agentsProgress(st, pub.ReleaseID, len(run.agents))
			if failed != nil {
				return failed
			}
			if sum := mean + float64(active); sum != lastProgress {
				lastProgress, progressAt = sum, time.Now()
			} else if time.Since(progressAt) > run.cfg.StallTimeout {
				return fmt.Errorf("stalled: no agent progressed for %s (%d of %d active, mean progress %.0f%%)",
					run.cfg.StallTimeout, active, len(run.agents), 100*mean)
			}
			run.progress(ProcsProgress{Stage: "swarm", Active: active, Total: len(run.agents), Progress: mean, Elapsed: time.Since(r.Start)})
		}
		if active == len(run.agents) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d agents active after %.0fs (mean progress %.0f%%): %w",
				active, len(run.agents), time.Since(r.Start).Seconds(), 100*mean, ctx.Err())
		case <-time.After(procsPoll):
		}
	}
	window := time.Since(r.Start).Seconds()
	busy1 := machineBusySeconds()
	st1, err := run.status(ctx)
	if err != nil {
		return err
	}
	delivered := int64(len(run.agents)) * r.BundleBytes
	var sumCPU, sumFetchCPU float64
	var sumRSS int64
	for i, a := range run.agents {
		cpu, err := pidCPUSeconds(pids[i])
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		rss, err := pidPeakRSS(pids[i])
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		c := ProcCost{Name: a.name, CPUS: cpu - cpu0[i], PeakRSSBytes: rss, CompletionS: done[i],
			FetchS: fetched[i], FetchCPUS: fetchCPU[i]}
		c.CPUSPerGiB = cpuPerGiB(c.CPUS, r.BundleBytes)
		c.FetchCPUSPerGiB = cpuPerGiB(c.FetchCPUS, r.BundleBytes)
		sumFetchCPU += c.FetchCPUS
		r.FetchS = max(r.FetchS, c.FetchS)
		r.Agents = append(r.Agents, c)
		sumCPU += c.CPUS
		sumRSS += rss
	}
	seederCPU, err := pidCPUSeconds(seederPID)
	if err != nil {
		return fmt.Errorf("seeder: %w", err)
	}
	seederRSS, err := pidPeakRSS(seederPID)
	if err != nil {
		return fmt.Errorf("seeder: %w", err)
	}
	r.Seeder = ProcCost{Name: "seeder", CPUS: seederCPU - seederCPU0, PeakRSSBytes: seederRSS}
	r.Seeder.CPUSPerGiB = cpuPerGiB(r.Seeder.CPUS, delivered)
	r.CPUSPerGiB = cpuPerGiB(sumCPU, delivered)
	r.FetchCPUSPerGiB = cpuPerGiB(sumFetchCPU, delivered)
	r.RSSPerAgentBytes = sumRSS / int64(len(run.agents))

	r.Completions = slices.Clone(done)
	slices.Sort(r.Completions)
	r.CompletionS = r.Completions[len(r.Completions)-1]
	r.MiBPerS = float64(r.BundleBytes) / (1 << 20) / r.CompletionS
	r.OriginBytes = max(st1.OriginBytesSent-st0.OriginBytesSent, 0)
	r.OriginEgressRatio = float64(r.OriginBytes) / float64(r.BundleBytes)
	if busy0 >= 0 && busy1 >= 0 {
		r.HostCPUFrac, r.HostBound = hostCPU(busy1-busy0, window, hostCores())
	}
	run.log.Debug("swarm phase done", zap.Float64("completion_s", r.CompletionS), zap.Int64("origin_bytes", r.OriginBytes))
	return nil
}

// installStarted reports whether the agent with data dir d has begun to
// install the run's release: the installer unpacks into a temporary
// directory under releases/<app>/ and renames it into place, so the app's
// directory holds something from the install's first step on.
func installStarted(d string) bool {
	entries, err := os.ReadDir(filepath.Join(d, "releases", procsApp))
	return err == nil && len(entries) > 0
}

// agentsProgress is the agents' mean download progress of id as the
// seeder's status shows it (active counts as 1), or an error naming an
// agent that failed or rolled back.
func agentsProgress(st seeder.Status, id release.ID, agents int) (float64, error) {
	sum := 0.0
	for _, n := range st.Nodes {
		for _, a := range n.Apps {
			if a.App != procsApp || a.ReleaseID != id {
				continue
			}
			switch gossip.Phase(a.Phase) {
			case gossip.PhaseFailed, gossip.PhaseRolledBack:
				msg := a.Error
				if msg == "" {
					msg = "no error given"
				}
				return 0, fmt.Errorf("%s: %s: %s", n.Name, a.Phase, msg)
			case gossip.PhaseActive, gossip.PhaseStaged, gossip.PhaseInstalling:
				sum++
			default:
				sum += a.Progress
			}
		}
	}
	return sum / float64(max(agents, 1)), nil
}
