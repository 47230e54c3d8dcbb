package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/swarm"
)

// Config configures an Agent. Zero values take the documented defaults.
type Config struct {
	// DataDir holds everything the agent keeps: bundles, releases, state.
	DataDir string
	// Name is the node's unique name in the cluster. Default: the hostname.
	Name string
	// Env is the environment the node belongs to; it follows only the
	// desired states of that environment. Default release.DefaultEnv.
	Env string
	// Join lists gossip addresses ("host:port") of members to join.
	Join []string
	// JoinTimeout bounds the first join. Default 60s.
	JoinTimeout time.Duration
	// Trust lists the pinned public keys; manifests and desired states must
	// be signed by one of them. Required.
	Trust []release.PublicKey
	// GossipAddr and TorrentAddr are listen addresses; port 0 lets the OS
	// pick. Defaults 0.0.0.0:7946 and 0.0.0.0:6881.
	GossipAddr  string
	TorrentAddr string
	// Hook and HealthCheck are the local installer hook and health check
	// executables, both optional; see package installer.
	Hook          string
	HealthCheck   string
	HookTimeout   time.Duration
	HealthTimeout time.Duration
	// Keep is how many releases per app stay on disk, unpacked and as
	// bundles (which keep seeding). Default 3.
	Keep int
	// MinFreeBytes is the disk watermark: while the data dir's file system
	// has less free, bundles beyond the current, previous, desired and
	// in-flight releases are removed, oldest first. 0 = no watermark.
	MinFreeBytes int64
	// UploadRate and DownloadRate cap BitTorrent traffic in bytes/s; 0 = none.
	UploadRate   int64
	DownloadRate int64
	// MaxPeers is how many peers one fetch is told of at a time. Default 20.
	MaxPeers int
	// OriginFeeders is how many nodes fetch each release from the origin,
	// each a different share of its pieces (see swarm.OriginUse); every
	// other node fetches from peers and turns to the origin only when
	// starved (OriginFallback). Nodes agree on the feeders by
	// ranking member names hashed with the release id. 0 = every node uses
	// the origin from the start, so that it uploads until the last node is
	// done. Default 4 (negative: 0).
	OriginFeeders int
	// OriginFallback is how long a node that is no feeder goes starved
	// before it asks the origin: without a verified piece, while no
	// connected peer holds one it lacks and the other agents' gossiped
	// progress for the release is flat (swarm.OriginUse); it then keeps the
	// origin for a quarter of this. Default 10s.
	OriginFallback time.Duration
	// MaxConns caps BitTorrent connections per release; 0 = the swarm
	// package's default.
	MaxConns int
	// SharedBundleDir, for benchmarks that run many agents in one process
	// next to the seeder: the seeder's bundle directory, read instead of a
	// copy of the agent's own (see swarm.Config.SharedDir). Empty on a node.
	SharedBundleDir string
	// Gossip adjusts gossip timing; identity and address fields are ignored.
	Gossip gossip.Config
	// Tick is how often the agent re-reads the cluster without being woken
	// (peers, progress, retries). Default 1s.
	Tick time.Duration
	// RetryBackoff is the wait after a failed download before the next try.
	// Default 2s.
	RetryBackoff time.Duration
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("agent: data dir is required (--data)")
	}
	if len(c.Trust) == 0 {
		return errors.New("agent: at least one trusted key is required (--trust)")
	}
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("agent: no node name and no hostname; set --name")
		}
		c.Name = h
	}
	if c.Env == "" {
		c.Env = release.DefaultEnv
	}
	if err := release.ValidateEnv(c.Env); err != nil {
		return fmt.Errorf("agent: --env: %w", err)
	}
	if c.GossipAddr == "" {
		c.GossipAddr = "0.0.0.0:7946"
	}
	if c.TorrentAddr == "" {
		c.TorrentAddr = "0.0.0.0:6881"
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = 60 * time.Second
	}
	if c.Keep <= 0 {
		c.Keep = 3
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = 20
	}
	switch {
	case c.OriginFeeders == 0:
		c.OriginFeeders = 4
	case c.OriginFeeders < 0:
		c.OriginFeeders = 0
	}
	if c.OriginFallback <= 0 {
		c.OriginFallback = 10 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 2 * time.Second
	}
	if c.MinFreeBytes < 0 {
		return errors.New("agent: min free bytes must not be negative")
	}
	if c.UploadRate < 0 || c.DownloadRate < 0 {
		return errors.New("agent: rates must not be negative")
	}
	if c.MaxConns < 0 {
		return errors.New("agent: max conns must not be negative")
	}
	return nil
}

// Agent is the node daemon.
type Agent struct {
	cfg  Config
	log  *zap.Logger
	ring release.Keyring

	gossip  *gossip.Node
	torrent *swarm.Client
	inst    *installer.Installer
	state   stateFile

	mu      sync.Mutex
	apps    map[string]appState
	entered map[string]phaseTimes // by app; in memory only
	rates   map[string]rateSample // download rate by app; in memory only
	workers map[string]*worker    // by app
	wake    chan struct{}

	// Owned by Run's goroutine (reconcile).
	verifiedCache map[string]verified // by signature
	lastRefresh   time.Time
	lastRetain    time.Time
	warnedShort   bool        // retention logged that the watermark cannot be met
	retainNow     atomic.Bool // a worker finished: apply retention at the next reconcile

	startOnce sync.Once
	startErr  error
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// worker drives one app toward one target release.
type worker struct {
	id     release.ID
	seq    uint64
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds an agent; it does no I/O.
func New(cfg Config, log *zap.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{
		cfg:     cfg,
		log:     log.Named("agent").With(zap.String("node", cfg.Name)),
		ring:    release.NewKeyring(cfg.Trust...),
		state:   stateFile{path: filepath.Join(cfg.DataDir, "agent.json")},
		workers: map[string]*worker{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// key is the gossip key of app's desired state in this node's environment.
func (a *Agent) key(app string) string { return release.StateKey(app, a.cfg.Env) }

func (a *Agent) bundlesDir() string { return filepath.Join(a.cfg.DataDir, "bundles") }

// Start prepares the data dir, loads persisted state and binds gossip and
// BitTorrent. On error everything it opened is closed.
func (a *Agent) Start() error {
	a.startOnce.Do(func() { a.startErr = a.start() })
	return a.startErr
}

func (a *Agent) start() (err error) {
	defer func() {
		if err != nil {
			a.closeParts()
		}
	}()
	if err := prepareDataDir(a.cfg.DataDir); err != nil {
		return err
	}
	if a.apps, err = a.state.load(); err != nil {
		return err
	}
	ic := installer.Config{
		Dir: a.cfg.DataDir, Hook: a.cfg.Hook, HookTimeout: a.cfg.HookTimeout,
		HealthCheck: a.cfg.HealthCheck, HealthTimeout: a.cfg.HealthTimeout, Keep: a.cfg.Keep,
	}
	if err := ic.Validate(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.inst, err = installer.New(ic, a.log); err != nil {
		return err
	}
	tc := swarm.Config{
		Dir: a.bundlesDir(), ListenAddr: a.cfg.TorrentAddr, UploadRate: a.cfg.UploadRate, DownloadRate: a.cfg.DownloadRate,
		MaxConnsPerTorrent: a.cfg.MaxConns, SharedDir: a.cfg.SharedBundleDir,
		// With feeders, the origin's address must not spread by peer
		// exchange to nodes meant to stay off it; gossip names every peer.
		DisablePEX: a.cfg.OriginFeeders > 0,
	}
	if a.torrent, err = swarm.New(tc, a.log); err != nil {
		return err
	}
	if err := a.torrent.Start(); err != nil {
		return err
	}
	gc := a.cfg.Gossip
	gc.Name, gc.BindAddr, gc.Keyring = a.cfg.Name, a.cfg.GossipAddr, a.ring
	gc.StatePath, gc.Role, gc.TorrentAddr = filepath.Join(a.cfg.DataDir, "desired.json"), gossip.RoleAgent, a.torrent.Addr()
	gc.Env = a.cfg.Env
	if a.gossip, err = gossip.New(gc, a.log); err != nil {
		return err
	}
	if err := a.gossip.Start(); err != nil {
		return err
	}
	a.reseed()
	a.report()
	return nil
}

// prepareDataDir creates dir and proves it writable with a real file.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent: data dir %s: %w; choose a writable --data", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return fmt.Errorf("agent: data dir %s is not writable: %w; choose a writable --data", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// reseed serves, after a restart, every release the agent already holds.
func (a *Agent) reseed() {
	for _, m := range a.desiredManifests() {
		// Its own copy only: an agent in shared mode holds none.
		if _, err := os.Stat(swarm.BundlePath(a.bundlesDir(), m.ReleaseID)); err != nil {
			continue
		}
		if err := a.torrent.Seed(m); err != nil {
			a.log.Warn("cannot seed a stored bundle", zap.String("app", m.App), zap.String("release_id", string(m.ReleaseID)), zap.Error(err))
		}
	}
}

// desiredManifests are the target and previous releases of every desired
// state gossip holds, signatures unchecked (gossip accepted only verified
// states).
func (a *Agent) desiredManifests() []release.Manifest {
	var out []release.Manifest
	for _, sd := range a.gossip.DesiredAll() {
		d, err := sd.Unverified()
		if err != nil {
			continue
		}
		for _, smp := range []*release.SignedManifest{&d.Target, d.Previous} {
			if smp == nil {
				continue
			}
			if m, err := smp.Unverified(); err == nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// Run starts the agent if needed, joins the cluster and follows desired
// states until ctx ends; then it stops its workers, leaves and closes.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Start(); err != nil {
		return err
	}
	defer a.Close()
	if len(a.cfg.Join) > 0 {
		jctx, cancel := context.WithTimeout(ctx, a.cfg.JoinTimeout)
		err := a.gossip.Join(jctx, a.cfg.Join)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("agent: join: %w; check --join and that the seeder is running", err)
		}
	}
	tick := time.NewTicker(a.cfg.Tick)
	defer tick.Stop()
	for {
		a.reconcile(ctx)
		select {
		case <-ctx.Done():
			a.stopWorkers()
			return nil
		case <-a.gossip.Changes():
		case <-a.wake:
		case <-tick.C:
		}
	}
}

// Close stops workers, leaves the cluster and stops BitTorrent. Safe twice.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.stopWorkers()
		a.wg.Wait()
		a.closeParts()
	})
	return nil
}

func (a *Agent) closeParts() {
	if a.gossip != nil {
		a.gossip.Close()
	}
	if a.torrent != nil {
		a.torrent.Close()
	}
}

func (a *Agent) stopWorkers() {
	a.mu.Lock()
	ws := make([]*worker, 0, len(a.workers))
	for _, w := range a.workers {
		w.cancel()
		ws = append(ws, w)
	}
	a.mu.Unlock()
	for _, w := range ws {
		<-w.done
	}
}

// GossipAddr is the agent's gossip address, with the real port.
func (a *Agent) GossipAddr() string { return a.gossip.Addr() }

// TorrentAddr is the agent's BitTorrent address, with the real port.
func (a *Agent) TorrentAddr() string { return a.torrent.Addr() }

// Name is the agent's node name.
func (a *Agent) Name() string { return a.cfg.Name }

// GossipMembers is how many members, this node included, the agent's
// gossip knows of; benchmarks wait for it before they publish.
func (a *Agent) GossipMembers() int { return len(a.gossip.Members()) }

// TorrentStats are the agent's transfer counters.
func (a *Agent) TorrentStats() swarm.Stats { return a.torrent.Stats() }

// GossipStats are the agent's desired-state counters.
func (a *Agent) GossipStats() gossip.Stats { return a.gossip.Stats() }

// AppPhase reports the agent's phase for app and the release it refers to.
func (a *Agent) AppPhase(app string) (gossip.Phase, release.ID, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.apps[app]
	return s.Phase, s.ReleaseID, ok
}

// DownloadProgress reports the verified bytes and the size of the release
// the agent is working on for app; ok is false if it is not fetching or
// holding one.
func (a *Agent) DownloadProgress(app string) (have, total int64, ok bool) {
	a.mu.Lock()
	st, known := a.apps[app]
	a.mu.Unlock()
	if !known {
		return 0, 0, false
	}
	return a.torrent.Progress(st.ReleaseID)
}

// Current is the app's active release as the installer has it.
func (a *Agent) Current(app string) (release.Manifest, bool, error) { return a.inst.Current(app) }

// reconcile starts a worker for every app whose target the agent is not
// already working on or running, and retires workers of replaced targets.
func (a *Agent) reconcile(ctx context.Context) {
	states := a.gossip.DesiredAll()
	seen := make(map[string]verified, len(states))
	defer func() { a.verifiedCache = seen }() // forget superseded states
	for _, sd := range states {
		d, m, err := a.verify(sd, seen)
		if err != nil {
			a.log.Error("gossip handed over a desired state that does not verify", zap.Error(err))
			continue
		}
		if d.EnvName() != a.cfg.Env {
			continue // another environment's: relayed by gossip, not ours to follow
		}
		a.mu.Lock()
		w := a.workers[d.App]
		st, known := a.apps[d.App]
		a.mu.Unlock()
		if w != nil {
			if w.id == m.ReleaseID {
				continue // already on it; the worker sees step and pause changes itself
			}
			w.cancel()
			<-w.done
		}
		if known && st.ReleaseID == m.ReleaseID {
			switch {
			case st.Phase == gossip.PhaseActive:
				continue
			case (st.Phase == gossip.PhaseFailed || st.Phase == gossip.PhaseRolledBack) && st.Seq >= d.Sequence:
				continue // failed for this state already; wait for a newer one
			}
		}
		if a.installed(d.App, m.ReleaseID) {
			// Installed before a restart: serve it, do not fetch or install again.
			if err := a.torrent.Seed(m); err != nil {
				a.log.Warn("cannot seed the active release", zap.String("app", m.App), zap.Error(err))
			}
			a.setState(appState{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Phase: gossip.PhaseActive, Healthy: true, Seq: d.Sequence})
			continue
		}
		a.startWorker(ctx, d, m)
	}
	if now := time.Now(); now.Sub(a.lastRefresh) >= a.cfg.Tick {
		// Member changes wake reconcile far more often than peers are
		// worth re-adding: at most once a tick.
		a.lastRefresh = now
		a.refreshPeers()
	}
	if now := time.Now(); now.Sub(a.lastRetain) >= retainEvery || a.retainNow.Swap(false) {
		a.lastRetain = now
		a.retain()
	}
	a.report()
}

// retainEvery is how often reconcile applies bundle retention.
const retainEvery = 10 * time.Second

// verified is a desired state whose signatures checked out, and its target.
type verified struct {
	env release.Envelope
	d   release.DesiredState
	m   release.Manifest
}

// verify checks sd's signatures and returns it with its target manifest,
// recording it in seen. reconcile runs on every gossip change, which in a
// large cluster is many times a second, so a state verified by the previous
// reconcile is not verified again while it is byte-for-byte the same.
func (a *Agent) verify(sd release.SignedDesiredState, seen map[string]verified) (release.DesiredState, release.Manifest, error) {
	key := string(sd.Sig)
	if v, ok := a.verifiedCache[key]; ok && sameEnvelope(v.env, sd.Envelope) {
		seen[key] = v
		return v.d, v.m, nil
	}
	d, err := sd.Verify(a.ring)
	if err != nil {
		return release.DesiredState{}, release.Manifest{}, err
	}
	m, err := d.Target.Verify(a.ring)
	if err != nil {
		return release.DesiredState{}, release.Manifest{}, err
	}
	seen[key] = verified{env: sd.Envelope, d: d, m: m}
	return d, m, nil
}

func sameEnvelope(x, y release.Envelope) bool {
	return x.KeyID == y.KeyID && bytes.Equal(x.Sig, y.Sig) && bytes.Equal(x.Payload, y.Payload)
}

func (a *Agent) startWorker(ctx context.Context, d release.DesiredState, m release.Manifest) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{id: m.ReleaseID, seq: d.Sequence, cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	a.workers[d.App] = w
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(w.done)
		defer cancel()
		a.drive(wctx, d, m)
		a.retainNow.Store(true)
		a.mu.Lock()
		if a.workers[d.App] == w {
			delete(a.workers, d.App)
		}
		a.mu.Unlock()
		a.poke()
	}()
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// drive takes one app from nothing to its target: download, wait for the
// wave, install. It returns when done, failed for good, or cancelled.
func (a *Agent) drive(ctx context.Context, d release.DesiredState, m release.Manifest) {
	log := a.log.With(zap.String("app", m.App), zap.String("version", m.Version), zap.String("release_id", string(m.ReleaseID)))
	st := appState{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Seq: d.Sequence, Phase: gossip.PhaseDownloading}
	a.setState(st)
	log.Info("downloading")
	for {
		err := a.torrent.FetchWith(ctx, m, a.sources(m), a.originUse(m, log))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, release.ErrIDMismatch) {
			log.Error("refused a bundle that does not match its release id", zap.Error(err))
			st.Phase, st.Error = gossip.PhaseFailed, "bundle does not match its release id"
			a.setState(st)
			return
		}
		log.Warn("download failed; retrying", zap.Error(err), zap.Duration("backoff", a.cfg.RetryBackoff))
		st.Error = shortError(err)
		a.setState(st)
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.RetryBackoff):
		}
	}
	if a.cfg.SharedBundleDir == "" {
		if err := a.recordBundle(m); err != nil {
			log.Warn("cannot record the bundle for retention; it stays until removed by hand", zap.Error(err))
		}
	}
	st.Phase, st.Error = gossip.PhaseStaged, ""
	a.setState(st)
	log.Info("staged")

	// Wait for the wave. A newer desired state for the same target (a step
	// forward, a resume) arrives through gossip; a different target cancels us.
	for !a.admitted(m) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.Tick):
		}
	}

	st.Phase = gossip.PhaseInstalling
	a.setState(st)
	res, err := a.inst.Install(ctx, m, a.torrent.BundlePath(m.ReleaseID))
	switch {
	case err == nil:
		st.Phase, st.Healthy, st.Error = gossip.PhaseActive, true, ""
		log.Info("active", zap.String("dir", res.Dir), zap.Bool("already_current", res.AlreadyCurrent))
	case errors.Is(err, installer.ErrHealthFailed):
		st.Phase, st.Healthy, st.Error = gossip.PhaseRolledBack, false, shortError(err)
		log.Error("health check failed; previous release restored", zap.Error(err))
	case ctx.Err() != nil:
		return
	default:
		st.Phase, st.Healthy, st.Error = gossip.PhaseFailed, false, shortError(err)
		log.Error("install failed; previous release stays active", zap.Error(err))
	}
	a.setState(st)
}

// admitted reports whether the latest desired state for m's app still
// targets m and admits this node.
func (a *Agent) admitted(m release.Manifest) bool {
	d, _, ok := a.gossip.Desired(a.key(m.App))
	if !ok {
		return false
	}
	tm, err := d.Target.Unverified()
	if err != nil || tm.ReleaseID != m.ReleaseID {
		return false
	}
	return rollout.Admitted(a.cfg.Name, &d, m.ReleaseID)
}

// originUse is this node's part in fetching m from the origin: a feeder's
// share, or peers first with the origin as a fallback (Config.OriginFeeders).
// Feeders are the OriginFeeders agents whose names, hashed with the release
// id, rank first; every node ranks the members it knows the same way.
func (a *Agent) originUse(m release.Manifest, log *zap.Logger) swarm.OriginUse {
	if a.cfg.OriginFeeders <= 0 {
		return swarm.OriginUse{}
	}
	var names []string
	for _, mbr := range a.gossip.Members() {
		if mbr.Role != gossip.RoleSeeder {
			names = append(names, mbr.Name)
		}
	}
	if !slices.Contains(names, a.cfg.Name) {
		names = append(names, a.cfg.Name)
	}
	rank := feederRank(m.ReleaseID, names)
	k := min(a.cfg.OriginFeeders, len(names))
	use := swarm.OriginUse{Fallback: a.cfg.OriginFallback, SwarmProgress: func() float64 { return a.gossip.ReleaseProgress(m.ReleaseID) }}
	if i := slices.Index(rank, a.cfg.Name); i < k {
		log.Info("origin feeder for this release", zap.Int("share", i), zap.Int("of", k), zap.Int("members", len(names)))
		use.Share, use.Of = i, k
	}
	return use
}

// feederRank orders names by the hash of id and name: a different order
// for every release, the same on every node.
func feederRank(id release.ID, names []string) []string {
	key := func(n string) [32]byte { return sha256.Sum256([]byte(string(id) + "\x00" + n)) }
	out := slices.Clone(names)
	slices.SortFunc(out, func(x, y string) int {
		kx, ky := key(x), key(y)
		return bytes.Compare(kx[:], ky[:])
	})
	return out
}

// sources lists the origin and up to MaxPeers random peers for m: at least
// half of them, if there are that many, peers that gossip progress with it
// (holders), then peers that advertise it, then, while fewer than MaxPeers
// advertise it, members the rollout admits to it that have not said so yet.
//
// Holders have the torrent's info dictionary and pieces to give; a node that
// knows only peers with nothing waits for them to get something, and for the
// info dictionary a hop at a time. The rest stays random so that the first
// holders are not every node's only peers. Admitted members start the same
// release within a gossip round: dialling them before their state has
// spread saves the round (a dial to a node that has not added the release
// yet fails, and is tried again a few seconds later).
func (a *Agent) sources(m release.Manifest) swarm.Sources {
	var src swarm.Sources
	var holders, others, coming []string
	d, _, haveDesired := a.gossip.Desired(a.key(m.App))
	if haveDesired {
		if tm, err := d.Target.Unverified(); err != nil || tm.ReleaseID != m.ReleaseID {
			haveDesired = false
		}
	}
	for _, mbr := range a.gossip.Members() {
		if mbr.Name == a.cfg.Name || mbr.TorrentAddr == "" {
			continue
		}
		if mbr.Role == gossip.RoleSeeder {
			src.Origins = append(src.Origins, mbr.TorrentAddr)
			continue
		}
		i := slices.IndexFunc(mbr.Apps, func(as gossip.AppState) bool { return as.ReleaseID == m.ReleaseID })
		switch {
		case i >= 0 && mbr.Apps[i].Phase == gossip.PhaseFailed:
		case i >= 0 && mbr.Apps[i].Progress > 0:
			holders = append(holders, mbr.TorrentAddr)
		case i >= 0:
			others = append(others, mbr.TorrentAddr)
		case haveDesired && rollout.Admitted(mbr.Name, &d, m.ReleaseID):
			coming = append(coming, mbr.TorrentAddr)
		}
	}
	src.Peers = pickPeers(holders, others, a.cfg.MaxPeers)
	if n := a.cfg.MaxPeers - len(src.Peers); n > 0 && len(coming) > 0 {
		rand.Shuffle(len(coming), func(i, j int) { coming[i], coming[j] = coming[j], coming[i] })
		src.Peers = append(src.Peers, coming[:min(n, len(coming))]...)
	}
	return src
}

// pickPeers picks up to limit peers at random, at least half of them (or
// every one) from holders.
func pickPeers(holders, others []string, limit int) []string {
	shuffle := func(s []string) { rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] }) }
	shuffle(holders)
	n := min(len(holders), (limit+1)/2)
	rest := append(slices.Clone(holders[n:]), others...)
	shuffle(rest)
	return append(holders[:n:n], rest[:min(len(rest), limit-n)]...)
}

// refreshPeers tells running downloads of peers that appeared since.
func (a *Agent) refreshPeers() {
	a.mu.Lock()
	var ids []release.ID
	var apps []appState
	for app, w := range a.workers {
		if st, ok := a.apps[app]; ok && st.Phase == gossip.PhaseDownloading && st.ReleaseID == w.id {
			ids = append(ids, w.id)
			apps = append(apps, st)
		}
	}
	a.mu.Unlock()
	for i, id := range ids {
		a.torrent.AddSources(id, a.sources(release.Manifest{App: apps[i].App, ReleaseID: id}))
	}
}

// setState records and persists one app's state, then gossips it.
func (a *Agent) setState(st appState) {
	a.mu.Lock()
	if a.apps == nil {
		a.apps = map[string]appState{}
	}
	a.apps[st.App] = st
	a.notePhaseLocked(st)
	snapshot := make(map[string]appState, len(a.apps))
	for k, v := range a.apps {
		snapshot[k] = v
	}
	a.mu.Unlock()
	if err := a.state.save(snapshot); err != nil {
		a.log.Error("cannot persist agent state", zap.Error(err))
	}
	a.report()
}

// report gossips the node's per-app state with download progress.
func (a *Agent) report() {
	if a.gossip == nil {
		return
	}
	a.mu.Lock()
	out := make([]gossip.AppState, 0, len(a.apps))
	for _, st := range a.apps {
		as := gossip.AppState{App: st.App, Version: st.Version, ReleaseID: st.ReleaseID, Phase: st.Phase, Healthy: st.Healthy, Error: st.Error}
		switch st.Phase {
		case gossip.PhaseDownloading:
			if have, total, ok := a.torrent.Progress(st.ReleaseID); ok && total > 0 {
				// Whole percents: finer steps would re-gossip the node on
				// every tick for nothing anyone acts on.
				as.Progress = math.Floor(float64(have)/float64(total)*100) / 100
				as.Rate = a.rateLocked(st, have)
			}
		default:
			as.Progress = 1
		}
		out = append(out, as)
	}
	a.mu.Unlock()
	if err := a.gossip.SetApps(out); err != nil {
		a.log.Warn("cannot gossip node state", zap.Error(err))
	}
}

// rateSample is the last download-rate measurement of one app.
type rateSample struct {
	id    release.ID
	bytes int64
	at    time.Time
	rate  int64 // bytes/s, two significant digits
}

// rateWindow is the shortest interval a download rate is measured over.
const rateWindow = time.Second

// rateLocked is st's download rate in bytes/s given have verified bytes now,
// measured over at least rateWindow and rounded to two significant digits
// so that small wobbles do not re-gossip the node.
func (a *Agent) rateLocked(st appState, have int64) int64 {
	if a.rates == nil {
		a.rates = map[string]rateSample{}
	}
	now := time.Now()
	s, ok := a.rates[st.App]
	if !ok || s.id != st.ReleaseID || have < s.bytes {
		a.rates[st.App] = rateSample{id: st.ReleaseID, bytes: have, at: now}
		return 0
	}
	if dt := now.Sub(s.at); dt >= rateWindow {
		s.rate = twoDigits(int64(float64(have-s.bytes) / dt.Seconds()))
		s.bytes, s.at = have, now
		a.rates[st.App] = s
	}
	return s.rate
}

// twoDigits rounds n to two significant decimal digits.
func twoDigits(n int64) int64 {
	if n < 100 {
		return n
	}
	scale := int64(1)
	for n/scale >= 100 {
		scale *= 10
	}
	return (n + scale/2) / scale * scale
}

// shortError keeps gossiped errors within the node-state budget.
func shortError(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// Desired is the app's desired state as this agent accepted it.
func (a *Agent) Desired(app string) (release.DesiredState, bool) {
	d, _, ok := a.gossip.Desired(a.key(app))
	return d, ok
}

// installed reports whether id is the app's current release and passed its
// health check. A release that became current just before a crash, with its
// health check not run, counts as not installed: the worker installs it
// again, which runs the check.
func (a *Agent) installed(app string, id release.ID) bool {
	cur, ok, err := a.inst.Current(app)
	if err != nil || !ok || cur.ReleaseID != id {
		return false
	}
	pending, err := a.inst.HealthPending(app)
	return err == nil && !pending
}

// DesiredAcceptedAt reports when this agent accepted app's current desired
// state and its sequence; benchmarks measure gossip spread with it.
func (a *Agent) DesiredAcceptedAt(app string) (seq uint64, at time.Time, ok bool) {
	return a.gossip.AcceptedAt(a.key(app))
}

// phaseTimes records when one app first entered each phase for one release.
type phaseTimes struct {
	id release.ID
	at map[gossip.Phase]time.Time
}

func (a *Agent) notePhaseLocked(st appState) {
	if a.entered == nil {
		a.entered = map[string]phaseTimes{}
	}
	pt := a.entered[st.App]
	if pt.id != st.ReleaseID || pt.at == nil {
		pt = phaseTimes{id: st.ReleaseID, at: map[gossip.Phase]time.Time{}}
		a.entered[st.App] = pt
	}
	if _, ok := pt.at[st.Phase]; !ok {
		pt.at[st.Phase] = time.Now()
	}
}

// PhaseEnteredAt reports when, in this process, the agent first reached
// phase for release id of app (downloading, staged, active...); benchmarks
// time downloads and installs with it. ok is false if it has not, or has
// moved on to another release since.
func (a *Agent) PhaseEnteredAt(app string, id release.ID, phase gossip.Phase) (at time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pt := a.entered[app]
	if pt.id != id {
		return time.Time{}, false
	}
	at, ok = pt.at[phase]
	return at, ok
}
