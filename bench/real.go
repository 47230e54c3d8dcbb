package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// RealConfig shapes one RunReal.
type RealConfig struct {
	// Params are the run's inputs: Nodes, SizeBytes, NodeUp, NodeDown,
	// OriginUp (bytes/s; 0 = no cap), MaxPeers, MaxConns (0 = defaults) and
	// Seed (the payload's bytes). PieceLength is the seeder's choice for
	// SizeBytes and is filled in.
	Params Params
	// Dir is the scratch directory; required. The caller removes it.
	Dir string
	// SharedStorage runs the agents with ClusterConfig.SharedStorage: one
	// copy of the bundle on disk for the whole run, flat memory.
	SharedStorage bool
	// Gossip is the timing every node uses; zero (no gossip or probe
	// interval) = FastGossip(), or LargeGossip() above largeCluster nodes.
	Gossip gossip.Config
}

// largeCluster is the size above which RunReal's default gossip timing is
// LargeGossip.
const largeCluster = 100

// benchApp is the app a real run publishes.
const benchApp = "bench"

// pollInterval is how often RunReal looks at the agents' phases.
const pollInterval = 25 * time.Millisecond

// RunReal starts a seeder and Params.Nodes agents in this process, all on
// 127.0.0.1, waits until every agent has joined the seeder, then publishes
// a single-file app of SizeBytes seeded random bytes and waits until every
// agent runs it (bounded by ctx). Installs use no hook.
//
// The clock starts at the publish call (packing is done before): Completions
// are seconds from it to each agent's active phase. OriginBytes is what the
// seeder uploaded, PeerBytes the useful bytes agents got from each other,
// DuplicateBytes the bytes received twice. Gossip99S and Gossip100S are
// when 99% and all agents had accepted the desired state. CPUSeconds is the
// process's CPU time from publish to the last agent active (CPUSeconds /
// CompletionS near the core count means the run was CPU-bound); PeakRSSMiB
// and Goroutines are the process's peaks over the whole call, WallS its
// length, setup and teardown included. Notes add the download times (to
// staged) beside the install times. progress(active, total) is called as
// agents become active.
//
// On error after the publish the Result holds what was measured so far.
func RunReal(ctx context.Context, cfg RealConfig, log *zap.Logger, progress func(active, total int)) (Result, error) {
	p := cfg.Params
	if err := p.Validate(); err != nil {
		return Result{}, fmt.Errorf("real: %w", err)
	}
	if cfg.Dir == "" {
		return Result{}, errors.New("real: Dir is required")
	}
	if cfg.Gossip.GossipInterval == 0 && cfg.Gossip.ProbeInterval == 0 {
		cfg.Gossip = FastGossip()
		if p.Nodes > largeCluster {
			cfg.Gossip = LargeGossip()
		}
	}
	r := Result{Kind: KindReal, Params: p}
	meter := startProcMeter(100 * time.Millisecond)
	defer meter.finish(&r)

	payloadDir := filepath.Join(cfg.Dir, "payload")
	if err := os.MkdirAll(payloadDir, 0o755); err != nil {
		return r, fmt.Errorf("real: %w", err)
	}
	payload := filepath.Join(payloadDir, "payload.bin")
	if err := WriteRandomFile(payload, p.SizeBytes, p.Seed); err != nil {
		return r, fmt.Errorf("real: %w", err)
	}

	setup := time.Now()
	c, err := NewCluster(ctx, ClusterConfig{
		Dir:             filepath.Join(cfg.Dir, "cluster"),
		AgentUploadRate: p.NodeUp, AgentDownloadRate: p.NodeDown, OriginUploadRate: p.OriginUp,
		MaxConns: p.MaxConns, MaxPeers: p.MaxPeers, SharedStorage: cfg.SharedStorage,
		Gossip: cfg.Gossip, OriginFeeders: feedersFor(p.OriginFeeders),
	}, log)
	if err != nil {
		return r, fmt.Errorf("real: start cluster: %w", err)
	}
	closed := false
	closeCluster := func() {
		if !closed {
			closed = true
			c.Close()
		}
	}
	defer closeCluster()

	b, err := seeder.Pack(seeder.PackOptions{Source: payload, App: benchApp, Version: "1.0.0", Key: c.ReleaseKeys[0], TempDir: payloadDir})
	if err != nil {
		return r, fmt.Errorf("real: pack: %w", err)
	}
	defer b.Close()
	if p.PieceLength != 0 && p.PieceLength != b.Manifest.PieceLength {
		addNote(&r, fmt.Sprintf("piece length %d asked, the seeder uses %d", p.PieceLength, b.Manifest.PieceLength))
	}
	r.Params.PieceLength = b.Manifest.PieceLength
	baseRSS := rssMiB() // the seeder alone: what the agents add is theirs
	if err := addAgents(ctx, c, p.Nodes); err != nil {
		return r, fmt.Errorf("real: %w", err)
	}
	if least := waitMembership(ctx, c.Agents(), p.Nodes+1); least < p.Nodes+1 {
		addNote(&r, fmt.Sprintf("membership had not converged at the publish: an agent knew %d of %d members", least, p.Nodes+1))
	}
	setupS := time.Since(setup).Seconds()

	meter.markCPU()
	r.Start = time.Now()
	pub, err := c.Client.PublishBundle(ctx, b, nil)
	if err != nil {
		return r, fmt.Errorf("real: publish: %w", err)
	}
	publishS := time.Since(r.Start).Seconds()
	nodes := c.Agents()
	waitErr := waitAllActive(ctx, nodes, pub.ReleaseID, progress)
	var others float64
	r.CPUSeconds, others = meter.cpuSince()
	busyS, windowS := meter.hostSince()
	noteContention(&r, others)

	r.OriginBytes = c.Seeder.TorrentStats().BytesSent
	var staged, installs, gossiped []float64
	var opened int64
	var fromOrigin []int64 // per agent that got any
	for _, n := range nodes {
		s := n.TorrentStats()
		opened += s.ConnsOpened
		if s.BytesFromOrigin > 0 {
			fromOrigin = append(fromOrigin, s.BytesFromOrigin)
		}
		r.PeerBytes += s.BytesFromPeers
		r.DuplicateBytes += s.BytesWasted
		active, okA := n.PhaseEnteredAt(benchApp, pub.ReleaseID, gossip.PhaseActive)
		if okA {
			r.Completions = append(r.Completions, active.Sub(r.Start).Seconds())
		}
		if at, ok := n.PhaseEnteredAt(benchApp, pub.ReleaseID, gossip.PhaseStaged); ok {
			staged = append(staged, at.Sub(r.Start).Seconds())
			if okA {
				installs = append(installs, active.Sub(at).Seconds())
			}
		}
		if at, ok := n.TargetSeenAt(benchApp, pub.ReleaseID); ok {
			gossiped = append(gossiped, at.Sub(r.Start).Seconds())
		}
	}
	slices.Sort(staged)
	slices.Sort(installs)
	slices.Sort(gossiped)
	if len(gossiped) == p.Nodes {
		r.Gossip99S = Percentile(gossiped, 0.99)
		r.Gossip100S = gossiped[len(gossiped)-1]
	}
	storage := "own copies"
	if cfg.SharedStorage {
		storage = "shared storage"
	}
	addNote(&r, fmt.Sprintf("bundle %d bytes, %s; setup %.1fs; publish call %.2fs", b.Manifest.BundleSize, storage, setupS, publishS))
	addNote(&r, fmt.Sprintf("%d peer connections opened (%.1f per agent)", opened, float64(opened)/float64(max(len(nodes), 1))))
	addNote(&r, originSpread(fromOrigin, b.Manifest.BundleSize))
	if len(staged) == p.Nodes {
		r.DownloadS = staged[len(staged)-1]
	}
	if len(staged) > 0 {
		addNote(&r, fmt.Sprintf("downloaded (staged) p50 %.2fs p90 %.2fs last %.2fs",
			Percentile(staged, 0.5), Percentile(staged, 0.9), staged[len(staged)-1]))
	}
	if len(installs) > 0 {
		addNote(&r, fmt.Sprintf("install (staged to active) p50 %.2fs p90 %.2fs max %.2fs",
			Percentile(installs, 0.5), Percentile(installs, 0.9), installs[len(installs)-1]))
	}

	if waitErr != nil {
		addNote(&r, fmt.Sprintf("only %d of %d agents active when the run ended: completion figures cover those", len(r.Completions), p.Nodes))
	}

	closeCluster()
	meter.finish(&r)
	setCost(&r, costSample{
		CPUS: r.CPUSeconds, Delivered: int64(p.Nodes) * p.SizeBytes,
		PeakRSS: int64(r.PeakRSSMiB * (1 << 20)), BaseRSS: int64(baseRSS * (1 << 20)), Nodes: p.Nodes,
		BusyS: busyS, WallS: windowS, Cores: hostCores(),
	})
	r.Finish()
	if waitErr != nil {
		return r, fmt.Errorf("real: %w", waitErr)
	}
	return r, nil
}

// feedersFor turns Params.OriginFeeders (0 = naive) into
// ClusterConfig.OriginFeeders (negative = naive).
func feedersFor(k int) int {
	if k == 0 {
		return -1
	}
	return k
}

// joinBatch is how many agents RunReal starts at once. Hundreds of joins
// at the same instant make the seeder's push/pull answers time out.
const joinBatch = 25

// addAgents starts n agents in batches, each once the seeder sees the ones
// before, so that every agent has joined before the publish. Each batch is
// bounded by ctx and a minute.
func addAgents(ctx context.Context, c *Cluster, n int) error {
	for started := 0; started < n; {
		for end := min(started+joinBatch, n); started < end; started++ {
			if _, err := c.AddAgent(fmt.Sprintf("agent-%03d", started+1), AgentOptions{}); err != nil {
				return fmt.Errorf("start agent %d: %w", started+1, err)
			}
		}
		if err := waitJoined(ctx, c, started); err != nil {
			return err
		}
	}
	return nil
}

// waitJoined waits until the seeder sees n agents, bounded by ctx and a
// minute.
func waitJoined(ctx context.Context, c *Cluster, n int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		seen := len(c.Seeder.Status().Nodes)
		if seen >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d agents joined: %w", seen, n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitMembership waits until every node knows want members (itself
// included), bounded by ctx and two minutes, and returns the fewest any
// node knows. A desired state published while members still join spreads
// slowly: memberlist fills its packets with membership news first.
func waitMembership(ctx context.Context, nodes []*Node, want int) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		least := want
		for _, n := range nodes {
			least = min(least, n.GossipMembers())
		}
		if least >= want {
			return least
		}
		select {
		case <-ctx.Done():
			return least
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitAllActive polls until every node runs id, one fails it, or ctx ends.
func waitAllActive(ctx context.Context, nodes []*Node, id release.ID, progress func(active, total int)) error {
	active := make([]bool, len(nodes))
	count := 0
	for {
		for i, n := range nodes {
			if active[i] {
				continue
			}
			ph, rid, _ := n.AppPhase(benchApp)
			if rid != id {
				continue
			}
			switch ph {
			case gossip.PhaseActive:
				active[i] = true
				count++
				if progress != nil {
					progress(count, len(nodes))
				}
			case gossip.PhaseFailed, gossip.PhaseRolledBack:
				return fmt.Errorf("%s: %s", n.Name(), ph)
			}
		}
		if count == len(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d agents active: %w", count, len(nodes), ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// originSpread says how many agents received bytes from the origin and how
// many bundle copies the largest of them took: with feeders, as many agents
// as feeders, each a share; an agent that fell back shows as a larger one.
func originSpread(perAgent []int64, size int64) string {
	if len(perAgent) == 0 || size <= 0 {
		return "no agent received bytes from the origin"
	}
	return fmt.Sprintf("%d agents received bytes from the origin, the most %.2f bundle copies", len(perAgent), float64(slices.Max(perAgent))/float64(size))
}
