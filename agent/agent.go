package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// Agent is the node daemon.
type Agent struct {
	cfg Config
	log *zap.Logger
	// gossipLog is the logger handed to gossip, which names the node in
	// its lines itself: log would name it twice.
	gossipLog *zap.Logger

	gossip  *gossip.Node
	keys    *gossip.KeyFile // nil without Config.GossipKeyFile
	view    cluster         // a.gossip, but for tests
	torrent *swarm.Client
	inst    releases
	state   stateFile

	mu      sync.Mutex
	apps    map[string]appState
	entered map[string]phaseTimes // by app; in memory only
	rates   map[string]rateSample // download rate by app; in memory only
	sick    map[string]int        // consecutive failed health checks by app; in memory only
	// runSick is, by app, the running release that is not the app's
	// target (a failed install left it, a rollback put it back) once the
	// periodic checks found it unhealthy; in memory only.
	runSick map[string]release.ID
	// refusalShown is the refusal each app's gossiped state carries.
	refusalShown map[string]shownRefusal
	// targetSeen is when each app's target was first seen; in memory only.
	targetSeen map[string]seenTarget
	workers    map[string]*worker // by app
	wake       chan struct{}

	// Owned by Run's goroutine (reconcile).
	verifiedCache map[string]verified // by signature
	stale         map[string]bool     // apps whose desired state has expired; under mu
	lastRefresh   time.Time
	lastRetain    time.Time
	retainMu      sync.Mutex  // one retention pass at a time (reconcile, or a worker short of disk)
	warnedShort   bool        // retention logged that the watermark cannot be met
	retainNow     atomic.Bool // a worker finished: apply retention at the next reconcile

	startOnce sync.Once
	startErr  error
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New builds an agent; it does no I/O.
func New(cfg Config, log *zap.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{
		cfg:       cfg,
		log:       log.Named("agent").With(zap.String("node", cfg.Name)),
		gossipLog: log.Named("agent"),
		state:     stateFile{path: filepath.Join(cfg.DataDir, "agent.json")},
		workers:   map[string]*worker{},
		wake:      make(chan struct{}, 1),
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
		OpenBundle: a.cfg.OpenBundle,
		HookEnv:    a.cfg.HookEnv,
		Shim:       a.cfg.Shim,
	}
	if err := ic.Validate(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	inst, err := installer.New(ic, a.log)
	if err != nil {
		return err
	}
	a.inst = inst
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
	gc.Name, gc.BindAddr, gc.Trust = a.cfg.Name, a.cfg.GossipAddr, a.cfg.Trust
	gc.StatePath, gc.Role, gc.TorrentAddr = filepath.Join(a.cfg.DataDir, "desired.json"), gossip.RoleAgent, a.torrent.Addr()
	gc.Env, gc.PeersPath = a.cfg.Env, filepath.Join(a.cfg.DataDir, "peers.json")
	if err := a.loadGossipKeys(&gc); err != nil {
		return err
	}
	if a.gossip, err = gossip.New(gc, a.gossipLog); err != nil {
		return err
	}
	a.watchGossipKeys()
	if err := a.gossip.Start(); err != nil {
		return err
	}
	a.view = a.gossip
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
			return fmt.Errorf("agent: join: %w; check --join, that the seeder is running and that --gossip-key-file holds a key the cluster uses", err)
		}
	} else {
		a.log.Warn("no --join: this node waits for others to join it, and tries the gossip addresses it knew before a restart",
			zap.Int("known_addrs", a.gossip.KnownAddrs()))
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.healthLoop(ctx)
	}()
	if a.keys != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.keys.Run(ctx, a.cfg.GossipKeyInterval)
		}()
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

// Stale reports whether the node's desired state for app has expired (it
// keeps running its release and takes no new target).
func (a *Agent) Stale(app string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stale[app]
}

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

// Desired is the app's desired state as this agent accepted it.
func (a *Agent) Desired(app string) (release.DesiredState, bool) {
	d, _, ok := a.gossip.Desired(a.key(app))
	return d, ok
}
