package bench

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// GossipScaleConfig shapes a gossip-at-scale run: Nodes real gossip nodes
// (real memberlist, real signature checks) in this process, on one
// in-memory network. Zero fields take defaults that NOTES-deps.md found to
// hold up to about 1000 nodes on 2 cores.
type GossipScaleConfig struct {
	// Nodes is the cluster size; node 0 is the seeder that publishes.
	Nodes int
	// GossipInterval is how often nodes gossip queued broadcasts; default
	// 200ms.
	GossipInterval time.Duration
	// ProbeInterval drives failure detection; default 5s up to 1000 nodes
	// (1s spirals into false deaths at 1000 nodes on one machine), then
	// growing with N (10s at 2000). The probe timeout is a fifth of it.
	// On one machine every node's packets queue behind every other's: a
	// probe answered late is a false suspicion, whose refutation costs the
	// cluster as much as a join, so the interval (and with it the timeout
	// and the suspicion period) grows with the load.
	ProbeInterval time.Duration
	// RetransmitMult scales how often each node re-gossips a broadcast
	// (RetransmitMult × ceil(log10 N) times). Default memberlist's 4 up to
	// 1000 nodes and 2 above: each join is one broadcast, so joining N
	// nodes costs about N² × that many deliveries, the load that sank 2000
	// nodes. Halving it still leaves each broadcast about 8 forwards per
	// node at 2000, enough to reach all but a rare member, and push/pull
	// repairs those.
	RetransmitMult int
	// RumourFanout is gossip.Config.RumourFanout: 0 takes the gossip
	// package's default, negative turns direct sends off (the broadcast
	// queue and push/pull alone, for comparison).
	RumourFanout int
	// PushPullInterval is the base anti-entropy interval; memberlist scales
	// it up with the cluster size (×(log2(N/32)+1) above 32 nodes).
	// Default 30s, memberlist's own.
	PushPullInterval time.Duration
	// PublishEarly publishes as soon as every node has started and its join
	// returned, without waiting for membership to settle: the state then
	// competes with the join broadcasts still in flight, as when a release
	// is published while a fleet boots. JoinS and SettleS stay zero.
	PublishEarly bool
	// Seed makes the join targets repeatable.
	Seed uint64
	// JoinRate is how many nodes start per second. Zero spreads them all
	// over one gossip interval, as a fleet booting together. Each join
	// costs about 32 message deliveries per member already there, all on
	// this process's cores: above ~500 nodes on 2 cores a cluster started at
	// once stays CPU-bound for minutes and probes time out into false
	// deaths, so larger runs start fewer nodes per second.
	JoinRate float64

	// SettleTimeout bounds the wait, after the last node joined, until
	// every node knows 99% of the cluster and the join broadcasts have
	// drained; default 30s + 80ms per node, at most 4 minutes.
	SettleTimeout time.Duration
	// SpreadTimeout bounds the wait for every node to accept the published
	// state; default 60s.
	SpreadTimeout time.Duration
	// MaxRSSMiB stops the run when the process's resident memory passes it;
	// default 16 GiB.
	MaxRSSMiB float64
}

// GossipScaleResult is what a run measured. Times are seconds; zero means
// not reached (Notes says why).
type GossipScaleResult struct {
	Nodes int `json:"nodes"`
	// StartS runs from the first node's start until the last one has
	// started and every join has returned.
	StartS float64 `json:"start_s"`
	// JoinS runs from the first node's start until every node knows at
	// least 99% of the members.
	JoinS        float64 `json:"join_s"`
	JoinFailures int     `json:"join_failures"`
	// SettleS runs from the first node's start until memberlist's join
	// broadcasts have drained and the network is quiet; the state is
	// published then.
	SettleS float64 `json:"settle_s"`
	// MembersMinFrac is the smallest share of the cluster any node knew
	// when the state was published.
	MembersMinFrac float64 `json:"members_min_frac"`
	// Reach99S and Reach100S run from Publish on node 0 until 99% and 100%
	// of the nodes accepted the state (Node.AcceptedAt).
	Reach99S  float64 `json:"reach_99_s"`
	Reach100S float64 `json:"reach_100_s"`
	Accepted  int     `json:"accepted"`
	// DirectSent is how many direct copies of the state the nodes sent
	// (gossip.Stats.DirectSent): the rumour's cost, at most N × fan-out.
	DirectSent uint64 `json:"direct_sent"`
	// The timings the run used, defaults applied.
	JoinRate       float64 `json:"join_rate"`
	ProbeIntervalS float64 `json:"probe_interval_s"`
	RetransmitMult int     `json:"retransmit_mult"`
	// Delivered and Dropped count packets on the in-memory network from the
	// first start until the nodes close; a packet is dropped when its
	// receiver's queue is full.
	Delivered uint64 `json:"packets_delivered"`
	Dropped   uint64 `json:"packets_dropped"`
	// PeakRSSMiB is the process's peak resident memory (VmHWM), reset at
	// the start of the run where the kernel allows.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// CPUSeconds is user+system CPU of the whole process during the run.
	CPUSeconds float64 `json:"cpu_s"`
	// CPUIdleCores and CPUSpreadCores are the cores kept busy while the
	// settled cluster idled before the publish and while the state spread:
	// timings taken near runtime.NumCPU() are not to be trusted.
	CPUIdleCores   float64 `json:"cpu_idle_cores"`
	CPUSpreadCores float64 `json:"cpu_spread_cores"`
	// CPUGranted is the CPU the process got divided by the time the Go
	// scheduler was running its goroutines: near 1 when it had the cores to
	// itself, lower when other processes competed for them and every
	// timing above stretched.
	CPUGranted float64 `json:"cpu_granted"`
	Goroutines int     `json:"goroutines"` // the most seen at once
	CloseS     float64 `json:"close_s"`
	WallS      float64 `json:"wall_s"`
	Notes      string  `json:"notes,omitempty"`
}

// Defaults and bounds of a gossip-scale run.
const (
	scaleGossipInterval = 200 * time.Millisecond
	scaleProbeInterval  = 5 * time.Second
	// scaleProbeNodes is the cluster size up to which scaleProbeInterval
	// and memberlist's retransmit multiplier hold; above it both scale.
	scaleProbeNodes       = 1000
	scaleRetransmitMult   = 4
	scaleRetransmitLarge  = 2
	scalePushPullInterval = 30 * time.Second
	scaleSpreadTimeout    = time.Minute
	scaleMaxSettle        = 4 * time.Minute
	// scaleQuietWindow is how long the packet rate must stay low for the
	// cluster to count as settled.
	scaleQuietWindow = time.Second
	scaleMaxRSSMiB   = 16 << 10
	scaleMinAvailMiB = 1 << 10
	// scaleJoinPeers is how many earlier nodes each node joins through.
	scaleJoinPeers = 3
	// scaleJoinsInFlight is how many joins run at once.
	scaleJoinsInFlight = 16
	// scaleClosers is how many nodes close at once.
	scaleClosers = 8
	scaleApp     = "scale"
)

// errScaleMemory: the run passed GossipScaleConfig.MaxRSSMiB, or the
// machine is running out of memory.
var errScaleMemory = errors.New("out of memory budget")

func (c *GossipScaleConfig) applyDefaults() {
	if c.GossipInterval == 0 {
		c.GossipInterval = scaleGossipInterval
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = scaleProbeInterval
		if c.Nodes > scaleProbeNodes {
			c.ProbeInterval = scaleProbeInterval * time.Duration(c.Nodes) / scaleProbeNodes
		}
	}
	if c.RetransmitMult == 0 {
		c.RetransmitMult = scaleRetransmitMult
		if c.Nodes > scaleProbeNodes {
			c.RetransmitMult = scaleRetransmitLarge
		}
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = scalePushPullInterval
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = min(30*time.Second+time.Duration(c.Nodes)*80*time.Millisecond, scaleMaxSettle)
	}
	if c.SpreadTimeout == 0 {
		c.SpreadTimeout = scaleSpreadTimeout
	}
	if c.MaxRSSMiB == 0 {
		c.MaxRSSMiB = scaleMaxRSSMiB
	}
}

// RunGossipScale starts cfg.Nodes gossip nodes on one in-memory network,
// node creation spread over one gossip interval and each node joined to a
// few random earlier ones; waits (bounded) until every node knows 99% of the
// cluster and memberlist's join broadcasts have drained; publishes one
// signed desired state from node 0 and polls every node until all accepted
// it (bounded). It closes every node before it returns, error or not.
// progress, if not nil, is called with the stage ("start", "settle",
// "spread", "close") and how far it is.
func RunGossipScale(ctx context.Context, cfg GossipScaleConfig, log *zap.Logger, progress func(stage string, done, total int)) (GossipScaleResult, error) {
	if cfg.Nodes < 1 {
		return GossipScaleResult{}, fmt.Errorf("gossip scale: nodes %d: need at least one", cfg.Nodes)
	}
	if cfg.JoinRate < 0 || cfg.GossipInterval < 0 || cfg.ProbeInterval < 0 || cfg.PushPullInterval < 0 || cfg.RetransmitMult < 0 {
		return GossipScaleResult{}, errors.New("gossip scale: join rate, intervals and retransmit mult must not be negative")
	}
	cfg.applyDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	if progress == nil {
		progress = func(string, int, int) {}
	}
	r := &gossipScaleRun{
		cfg:      cfg,
		log:      log.WithOptions(zap.IncreaseLevel(zap.WarnLevel)).Named("gossipscale"),
		progress: progress,
		network:  gossip.NewMemNetwork(),
		res: GossipScaleResult{Nodes: cfg.Nodes, JoinRate: cfg.JoinRate,
			ProbeIntervalS: cfg.ProbeInterval.Seconds(), RetransmitMult: cfg.RetransmitMult},
	}
	err := r.run(ctx)
	return r.res, err
}

// gossipScaleRun is one RunGossipScale in progress.
type gossipScaleRun struct {
	cfg      GossipScaleConfig
	log      *zap.Logger
	progress func(string, int, int)
	network  *gossip.MemNetwork
	nodes    []*gossip.Node
	key      *release.PrivateKey // signs the desired state and node 0's announcement as the seeder
	res      GossipScaleResult
	notes    []string
}

func (r *gossipScaleRun) run(ctx context.Context) error {
	start := time.Now()
	cpu0, busy0 := cpuSeconds(), goBusySeconds()
	if !resetPeakRSS() {
		r.note("peak RSS is the process's since it started: VmHWM could not be reset")
	}
	defer func() {
		r.res.Delivered, r.res.Dropped = r.network.Stats()
		closeStart := time.Now()
		r.closeAll()
		end := time.Now()
		r.res.CloseS = end.Sub(closeStart).Seconds()
		r.res.WallS = end.Sub(start).Seconds()
		r.res.CPUSeconds = cpuSeconds() - cpu0
		if busy := goBusySeconds() - busy0; busy > 0 {
			r.res.CPUGranted = r.res.CPUSeconds / busy
		}
		r.res.PeakRSSMiB = peakRSSMiB()
		r.res.Notes = strings.Join(r.notes, "; ")
	}()

	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0))
	key, err := release.GenerateKey(crand.Reader)
	if err != nil {
		return fmt.Errorf("gossip scale: %w", err)
	}
	relKey, err := release.GenerateKey(crand.Reader)
	if err != nil {
		return fmt.Errorf("gossip scale: %w", err)
	}
	ring := release.Trust{Release: release.NewKeyring(relKey.Public()), Rollout: release.NewKeyring(key.Public())}
	r.key = key
	sd, err := scaleDesired(relKey, key)
	if err != nil {
		return fmt.Errorf("gossip scale: %w", err)
	}

	if err := r.start(ctx, start, ring, rng); err != nil {
		return err
	}
	r.res.StartS = time.Since(start).Seconds()
	if r.cfg.PublishEarly {
		r.res.MembersMinFrac = float64(r.leastMembers()) / float64(r.cfg.Nodes)
		r.note("published before membership settled")
	} else if err := r.settle(ctx, start); err != nil {
		return err
	}
	return r.spread(ctx, sd)
}

// start creates, starts and joins every node, node i no earlier than i/N of
// a gossip interval after the first so that their tickers are not in step.
// Joins run in the background, a few at a time, as in a fleet starting up;
// start returns when all have ended.
func (r *gossipScaleRun) start(ctx context.Context, t0 time.Time, ring release.Trust, rng *rand.Rand) error {
	n := r.cfg.Nodes
	r.nodes = make([]*gossip.Node, 0, n)
	var (
		joins    sync.WaitGroup
		inFlight = make(chan struct{}, scaleJoinsInFlight)
		failed   atomic.Int64
	)
	defer joins.Wait()
	// Returning early ends the joins still running (cancel runs first).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gossip scale: starting node %d of %d: %w", i, n, err)
		}
		if wait := time.Until(t0.Add(r.startOffset(i))); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("gossip scale: starting node %d of %d: %w", i, n, ctx.Err())
			case <-t.C:
			}
		}
		node, err := gossip.New(r.nodeConfig(i, ring), r.log)
		if err != nil {
			return fmt.Errorf("gossip scale: %w", err)
		}
		if err := node.Start(); err != nil {
			return fmt.Errorf("gossip scale: %w", err)
		}
		r.nodes = append(r.nodes, node)
		if i > 0 {
			k := min(i, scaleJoinPeers)
			addrs := make([]string, 0, k)
			for _, j := range rng.Perm(i)[:k] {
				addrs = append(addrs, r.nodes[j].Addr())
			}
			select {
			case inFlight <- struct{}{}:
			case <-ctx.Done():
				return fmt.Errorf("gossip scale: starting node %d of %d: %w", i, n, ctx.Err())
			}
			joins.Go(func() {
				defer func() { <-inFlight }()
				if err := node.Join(ctx, addrs); err != nil && ctx.Err() == nil {
					failed.Add(1)
					r.log.Warn("node did not join", zap.Int("node", i), zap.Error(err))
				}
			})
		}
		if i%50 == 49 || i == n-1 {
			r.progress("start", i+1, n)
			if err := r.sample(); err != nil {
				return err
			}
		}
	}
	joins.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gossip scale: joining: %w", err)
	}
	if r.res.JoinFailures = int(failed.Load()); r.res.JoinFailures > 0 {
		r.note("%d nodes failed to join", r.res.JoinFailures)
	}
	return nil
}

// startOffset is when node i starts, after the first.
func (r *gossipScaleRun) startOffset(i int) time.Duration {
	if r.cfg.JoinRate > 0 {
		return time.Duration(float64(i) / r.cfg.JoinRate * float64(time.Second))
	}
	return time.Duration(i) * r.cfg.GossipInterval / time.Duration(r.cfg.Nodes)
}

func (r *gossipScaleRun) nodeConfig(i int, ring release.Trust) gossip.Config {
	role, sign := gossip.RoleAgent, (*release.PrivateKey)(nil)
	if i == 0 {
		role, sign = gossip.RoleSeeder, r.key
	}
	return gossip.Config{
		Name:             fmt.Sprintf("node-%05d", i),
		Network:          r.network,
		Trust:            ring,
		Role:             role,
		SigningKey:       sign,
		TorrentAddr:      "127.0.0.1:6881",
		GossipInterval:   r.cfg.GossipInterval,
		ProbeInterval:    r.cfg.ProbeInterval,
		ProbeTimeout:     r.cfg.ProbeInterval / 5,
		PushPullInterval: r.cfg.PushPullInterval,
		RetransmitMult:   r.cfg.RetransmitMult,
		RumourFanout:     r.cfg.RumourFanout,
		// Teardown need not be graceful: do not wait for leave messages.
		LeaveTimeout: time.Millisecond,
	}
}

// settle waits, within SettleTimeout, until every node knows 99% of the
// cluster (JoinS), then until memberlist's join broadcasts have drained
// (SettleS): fewer than two packets a second per node on the network, where
// probes alone send about 0.4 and a node still gossiping joins 15. A state
// published before then waits behind those broadcasts, which fill each
// packet first. It then measures the idle cluster's CPU over ten gossip
// intervals (at least 2s).
func (r *gossipScaleRun) settle(ctx context.Context, t0 time.Time) error {
	n := r.cfg.Nodes
	want := int(math.Ceil(0.99 * float64(n)))
	deadline := time.Now().Add(r.cfg.SettleTimeout)
	type count struct {
		at        time.Time
		delivered uint64
	}
	var counts []count // the last few seconds of packet counts
	for {
		now := time.Now()
		least := r.leastMembers()
		delivered, _ := r.network.Stats()
		counts = append(counts, count{now, delivered})
		for len(counts) > 1 && now.Sub(counts[1].at) >= scaleQuietWindow {
			counts = counts[1:]
		}
		r.progress("settle", least, n)
		if r.res.JoinS == 0 && least >= want {
			r.res.JoinS = now.Sub(t0).Seconds()
		}
		if old := counts[0]; r.res.JoinS > 0 && now.Sub(old.at) >= scaleQuietWindow {
			rate := float64(delivered-old.delivered) / now.Sub(old.at).Seconds()
			if rate < 2*float64(n) {
				r.res.SettleS = now.Sub(t0).Seconds()
				break
			}
		}
		if now.After(deadline) {
			if r.res.JoinS == 0 {
				r.note("membership did not settle within %v: one node knew only %d of %d", r.cfg.SettleTimeout, least, n)
			} else {
				r.note("join broadcasts still draining after %v; published anyway", r.cfg.SettleTimeout)
			}
			break
		}
		if err := r.pause(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("gossip scale: settling: %w", err)
		}
	}
	quiet := max(10*r.cfg.GossipInterval, 2*time.Second)
	cpu0, idle0 := cpuSeconds(), time.Now()
	if err := r.pause(ctx, quiet); err != nil {
		return fmt.Errorf("gossip scale: settling: %w", err)
	}
	r.res.CPUIdleCores = (cpuSeconds() - cpu0) / time.Since(idle0).Seconds()
	r.res.MembersMinFrac = float64(r.leastMembers()) / float64(n)
	return nil
}

func (r *gossipScaleRun) leastMembers() int {
	least := math.MaxInt
	for _, node := range r.nodes {
		least = min(least, node.NumMembers())
	}
	return least
}

// spread publishes sd on node 0 and polls every node until all accepted it
// or SpreadTimeout passes. The times come from AcceptedAt, so the polling
// period bounds only when the wait ends, not what is measured.
func (r *gossipScaleRun) spread(ctx context.Context, sd release.SignedDesiredState) error {
	n := r.cfg.Nodes
	every := 10 * time.Millisecond
	if n > 200 {
		every = 20 * time.Millisecond
	}
	cpu0 := cpuSeconds()
	published := time.Now()
	if err := r.nodes[0].Publish(sd); err != nil {
		return fmt.Errorf("gossip scale: %w", err)
	}
	deadline := published.Add(r.cfg.SpreadTimeout)
	took := make([]float64, 0, n)
	for {
		took = took[:0]
		for _, node := range r.nodes {
			if seq, at, ok := node.AcceptedAt(release.StateKey(scaleApp, "")); ok && seq == 1 {
				took = append(took, at.Sub(published).Seconds())
			}
		}
		r.progress("spread", len(took), n)
		if len(took) == n || time.Now().After(deadline) {
			break
		}
		if err := r.sample(); err != nil {
			return err
		}
		if err := r.pause(ctx, every); err != nil {
			r.res.Accepted = len(took)
			r.note("%d of %d nodes accepted when the run was cut short", len(took), n)
			return fmt.Errorf("gossip scale: spreading: %w", err)
		}
	}
	r.res.CPUSpreadCores = (cpuSeconds() - cpu0) / time.Since(published).Seconds()
	r.res.Accepted = len(took)
	for _, node := range r.nodes {
		r.res.DirectSent += node.Stats().DirectSent
	}
	slices.Sort(took)
	if len(took) >= int(math.Ceil(0.99*float64(n))) {
		r.res.Reach99S = took[int(math.Ceil(0.99*float64(n)))-1]
	}
	if len(took) == n {
		r.res.Reach100S = took[n-1]
	} else {
		r.note("%d of %d nodes accepted within %v", len(took), n, r.cfg.SpreadTimeout)
	}
	return nil
}

// sample records the goroutine peak and enforces the memory limit.
func (r *gossipScaleRun) sample() error {
	r.res.Goroutines = max(r.res.Goroutines, runtime.NumGoroutine())
	if rss := rssMiB(); rss > r.cfg.MaxRSSMiB {
		r.note("stopped at %.0f MiB resident, over the %.0f MiB limit", rss, r.cfg.MaxRSSMiB)
		return fmt.Errorf("gossip scale: %w: %.0f MiB > %.0f MiB", errScaleMemory, rss, r.cfg.MaxRSSMiB)
	}
	// Other processes share the machine: leave them room too.
	if avail := memAvailableMiB(); avail > 0 && avail < scaleMinAvailMiB {
		r.note("stopped with %.0f MiB left available on the machine", avail)
		return fmt.Errorf("gossip scale: %w: %.0f MiB available", errScaleMemory, avail)
	}
	return nil
}

// pause waits d, sampling every 100ms, or until ctx ends.
func (r *gossipScaleRun) pause(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(min(left, 100*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := r.sample(); err != nil {
			return err
		}
	}
}

// closeAll cuts the network, so that departures are not gossiped, then
// closes every node, a few at a time, and waits for them.
func (r *gossipScaleRun) closeAll() {
	r.network.Close()
	var (
		wg   sync.WaitGroup
		next = make(chan *gossip.Node)
		done sync.Mutex
		n    int
	)
	for range scaleClosers {
		wg.Go(func() {
			for node := range next {
				if err := node.Close(); err != nil {
					r.log.Warn("close", zap.Error(err))
				}
				done.Lock()
				n++
				if n%100 == 0 || n == len(r.nodes) {
					r.progress("close", n, len(r.nodes))
				}
				done.Unlock()
			}
		})
	}
	for _, node := range r.nodes {
		next <- node
	}
	close(next)
	wg.Wait()
}

func (r *gossipScaleRun) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// goBusySeconds is how long the Go scheduler's Ps have been running
// goroutines, whether or not the OS gave their threads a core meanwhile.
func goBusySeconds() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/total:cpu-seconds"}, {Name: "/cpu/classes/idle:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 || s[1].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s[0].Value.Float64() - s[1].Value.Float64()
}

// memAvailableMiB is the memory the machine can still give (MemAvailable in
// /proc/meminfo), in MiB; 0 where there is no /proc.
func memAvailableMiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}

// scaleDesired is the state a run publishes: a realistic manifest and plan,
// the manifest signed with relKey, the state with key, about 900 bytes on
// the wire.
func scaleDesired(relKey, key *release.PrivateKey) (release.SignedDesiredState, error) {
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	m, err := release.SignManifest(release.Manifest{
		App:          scaleApp,
		Version:      "1.0.0",
		ReleaseID:    release.IDOf([]byte("gossip scale 1.0.0")),
		BundleSize:   64 << 20,
		UnpackedSize: 200 << 20,
		InfoHash:     "0123456789abcdef0123456789abcdef01234567",
		PieceLength:  1 << 20,
		Created:      created,
	}, relKey)
	if err != nil {
		return release.SignedDesiredState{}, err
	}
	return release.SignDesired(release.DesiredState{
		App:      scaleApp,
		Sequence: 1,
		Target:   m,
		Plan:     release.Plan{Steps: []release.Step{{Percent: 10}, {Percent: 50}, {Percent: 100}}},
		Issued:   created,
	}, key)
}
