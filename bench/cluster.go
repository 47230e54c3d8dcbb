package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/agent"
	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// ClusterConfig shapes an in-process cluster.
type ClusterConfig struct {
	// Dir holds every node's data; required (tests pass t.TempDir()).
	Dir string
	// Agents is how many agents start with the cluster.
	Agents int
	// Hook and HealthCheck are given to every agent unless AgentOptions
	// overrides them.
	Hook, HealthCheck string
	// Shim is the agents' agent.Config.Shim: the program their hooks and
	// health checks run under; empty = the running executable. Tests set
	// a swarm binary built without the race detector (see testShim): each
	// run starts it, and a race-built test binary is slow to start.
	Shim string
	// AgentUploadRate and AgentDownloadRate cap each agent's BitTorrent
	// upload and download in bytes/s; 0 = none.
	AgentUploadRate   int64
	AgentDownloadRate int64
	// MaxConns caps each agent's connections per release; 0 = the swarm
	// package's default.
	MaxConns int
	// MaxPeers is how many peers an agent's fetch is told of at a time;
	// 0 = the agent's default.
	MaxPeers int
	// SharedStorage makes agents keep no bundle of their own: they read the
	// seeder's stored copy and only hash what they receive, so that hundreds
	// of agents fit one machine (see swarm.Config.SharedDir). Bytes still
	// cross TCP and every piece is still checked.
	SharedStorage bool
	// OriginUploadRate caps the seeder's upload in bytes/s; 0 = none.
	OriginUploadRate int64
	// Gossip is the timing every node uses; zero = FastGossip().
	Gossip gossip.Config
	// Tick is the agents' reconcile tick; default 100ms.
	Tick time.Duration
	// OriginFeeders is the agents' agent.Config.OriginFeeders: 0 = the
	// agent's default, negative = none (every agent uses the origin).
	OriginFeeders int
	// OriginFallback is the agents' agent.Config.OriginFallback; 0 = the
	// agent's default (10s).
	OriginFallback time.Duration
	// ControlInterval and Settle are the seeder's rollout controller timing
	// (seeder.Config); zero = its defaults.
	ControlInterval, Settle time.Duration
	// RefusalGrace is the seeder's (seeder.Config); 0 = its default.
	RefusalGrace time.Duration
	// DesiredTTL is the seeder's (seeder.Config); 0 = states never expire.
	DesiredTTL time.Duration
	// HealthInterval and HealthFailures are the agents' periodic health
	// check (agent.Config); zero = the agent's defaults.
	HealthInterval time.Duration
	HealthFailures int
	// ReleaseKeys is how many release keys the cluster makes (default 1)
	// and ReleaseThreshold how many must sign a manifest (default 1):
	// the seeder and every agent pin them all.
	ReleaseKeys, ReleaseThreshold int
}

// FastGossip is gossip timing for in-process clusters of tens of nodes:
// probes and gossip in milliseconds, push/pull every second.
func FastGossip() gossip.Config {
	return gossip.Config{
		GossipInterval:   50 * time.Millisecond,
		ProbeInterval:    200 * time.Millisecond,
		ProbeTimeout:     100 * time.Millisecond,
		PushPullInterval: time.Second,
	}
}

// LargeGossip is gossip timing for in-process clusters of hundreds of nodes
// on a small machine: FastGossip's 200ms probes and 50ms gossip make
// memberlist's queues overflow at 200 nodes on two cores (members flap,
// joins time out), while these keep failure detection quiet.
func LargeGossip() gossip.Config {
	return gossip.Config{
		GossipInterval:   100 * time.Millisecond,
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		PushPullInterval: 5 * time.Second,
	}
}

// Cluster is a seeder and agents running in this process.
type Cluster struct {
	cfg ClusterConfig
	log *zap.Logger
	// Key is the seeder's rollout key: it signs desired states.
	Key *release.PrivateKey
	// ReleaseKeys sign manifests; Publish signs with the first only.
	ReleaseKeys []*release.PrivateKey
	Seeder      *seeder.Seeder
	// Client talks to the seeder's API with APIToken.
	Client *seeder.Client
	// APIToken is the bearer token the seeder's API requires.
	APIToken string

	ctx    context.Context
	cancel context.CancelFunc

	stopSeeder context.CancelFunc
	seederDone chan struct{}

	mu     sync.Mutex
	agents []*Node
	wg     sync.WaitGroup
}

// StopSeeder stops the seeder (the origin: its gossip, BitTorrent and API)
// and waits for it; the agents keep running.
func (c *Cluster) StopSeeder() {
	c.stopSeeder()
	<-c.seederDone
	c.Seeder.Close()
}

// Node is one agent of a Cluster.
type Node struct {
	*agent.Agent
	cancel context.CancelFunc
	done   chan error
}

// Stop stops the agent and waits for it; its data dir stays.
func (n *Node) Stop() error {
	n.cancel()
	return <-n.done
}

// NewCluster starts a seeder and cfg.Agents agents, all on 127.0.0.1 with
// ports from the OS. Close stops them.
func NewCluster(ctx context.Context, cfg ClusterConfig, log *zap.Logger) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cluster: Dir is required")
	}
	if cfg.Gossip.GossipInterval == 0 && cfg.Gossip.ProbeInterval == 0 {
		cfg.Gossip = FastGossip()
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	key, err := release.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	token, err := seeder.GenerateToken()
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: log, Key: key, APIToken: token}
	for range max(cfg.ReleaseKeys, 1) {
		k, err := release.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		c.ReleaseKeys = append(c.ReleaseKeys, k)
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))

	if err := c.startSeeder("127.0.0.1:0", nil); err != nil {
		return nil, err
	}
	if c.Client, err = seeder.NewClient(c.Seeder.APIURL(), seeder.ClientOptions{Token: token}); err != nil {
		c.Close()
		return nil, err
	}
	for i := range cfg.Agents {
		if _, err := c.AddAgent(fmt.Sprintf("agent-%02d", i+1), AgentOptions{}); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Trust is what the cluster's agents pin: its release keys and threshold
// and the seeder's rollout key.
func (c *Cluster) Trust() release.Trust {
	t := release.Trust{Release: release.Keyring{}, Rollout: release.NewKeyring(c.Key.Public()), ReleaseThreshold: c.cfg.ReleaseThreshold}
	for _, k := range c.ReleaseKeys {
		t.Release[k.ID()] = k.Public()
	}
	return t
}

// startSeeder starts the seeder on its store; join lists gossip addresses
// it joins (a restarted seeder joins its agents).
func (c *Cluster) startSeeder(gossipAddr string, join []string) error {
	s, err := seeder.New(seeder.Config{
		StoreDir: c.seederDir(), Key: c.Key, Trust: release.Trust{Release: c.Trust().Release, ReleaseThreshold: c.cfg.ReleaseThreshold}, Name: "seeder",
		GossipAddr: gossipAddr, TorrentAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		UploadRate: c.cfg.OriginUploadRate, Gossip: c.cfg.Gossip, Join: join,
		ControlInterval: c.cfg.ControlInterval, Settle: c.cfg.Settle, RefusalGrace: c.cfg.RefusalGrace, APIToken: c.APIToken,
		DesiredTTL: c.cfg.DesiredTTL,
	}, c.log)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	c.Seeder = s
	sctx, scancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.seederDone = done
	c.stopSeeder = scancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		if err := s.Run(sctx); err != nil {
			c.log.Error("seeder stopped", zap.Error(err))
		}
	}()
	return nil
}

// RestartSeeder stops the seeder and starts it again on the same store and
// gossip address, as a seeder bound to its configured port restarts,
// joining the agents (the API and torrent ports are new: Client points at
// the new API). A new gossip address under the same name would be refused
// by every member that still holds the old one alive ("conflicting
// address") until memberlist declares it dead.
func (c *Cluster) RestartSeeder() error {
	addr := c.Seeder.GossipAddr()
	c.StopSeeder()
	var join []string
	for _, n := range c.Agents() {
		join = append(join, n.GossipAddr())
		if len(join) == 3 {
			break
		}
	}
	if err := c.startSeeder(addr, join); err != nil {
		return err
	}
	client, err := seeder.NewClient(c.Seeder.APIURL(), seeder.ClientOptions{Token: c.APIToken})
	if err != nil {
		return err
	}
	c.Client = client
	return nil
}

func (c *Cluster) seederDir() string { return filepath.Join(c.cfg.Dir, "seeder") }

// OriginBundlesDir is the seeder's bundle directory: the seeder's store keeps
// release id's bundle at swarm.BundlePath(OriginBundlesDir(), id). Agents in
// SharedStorage mode read it.
func (c *Cluster) OriginBundlesDir() string { return filepath.Join(c.seederDir(), "releases") }

// AgentOptions overrides cluster defaults for one agent.
type AgentOptions struct {
	Hook, HealthCheck *string        // nil = the cluster's
	Trust             *release.Trust // nil = the cluster's (Cluster.Trust)
	// Keep and MinFreeBytes are the agent's retention (agent.Config);
	// zero = its defaults.
	Keep         int
	MinFreeBytes int64
	// Join is the gossip address to join; empty = the seeder's.
	Join string
	// Env is the agent's environment; empty = release.DefaultEnv.
	Env string
	// OpenBundle is the agent's agent.Config.OpenBundle: tests make its
	// unpacks slow with it.
	OpenBundle func(path string) (io.ReadCloser, error)
	// HealthInterval is the agent's periodic health check; zero = the
	// cluster's.
	HealthInterval time.Duration
}

// AddAgent starts one more agent named name that joins the seeder. Its data
// dir is Dir/<name>, so an agent stopped with Node.Stop can be started again
// under the same name and finds its state.
func (c *Cluster) AddAgent(name string, o AgentOptions) (*Node, error) {
	hook, health := c.cfg.Hook, c.cfg.HealthCheck
	if o.Hook != nil {
		hook = *o.Hook
	}
	if o.HealthCheck != nil {
		health = *o.HealthCheck
	}
	healthEvery := c.cfg.HealthInterval
	if o.HealthInterval != 0 {
		healthEvery = o.HealthInterval
	}
	trust := c.Trust()
	if o.Trust != nil {
		trust = *o.Trust
	}
	join := o.Join
	if join == "" {
		join = c.Seeder.GossipAddr()
	}
	var shared string
	if c.cfg.SharedStorage {
		shared = c.OriginBundlesDir()
	}
	a, err := agent.New(agent.Config{
		DataDir: filepath.Join(c.cfg.Dir, name), Name: name, Env: o.Env, Join: []string{join},
		JoinTimeout: 20 * time.Second, Trust: trust,
		GossipAddr: "127.0.0.1:0", TorrentAddr: "127.0.0.1:0",
		Hook: hook, HealthCheck: health, HookTimeout: 30 * time.Second, Shim: c.cfg.Shim,
		UploadRate: c.cfg.AgentUploadRate, DownloadRate: c.cfg.AgentDownloadRate,
		MaxConns: c.cfg.MaxConns, MaxPeers: c.cfg.MaxPeers, SharedBundleDir: shared,
		Gossip: c.cfg.Gossip, Tick: c.cfg.Tick,
		RetryBackoff: 200 * time.Millisecond,
		Keep:         o.Keep, MinFreeBytes: o.MinFreeBytes,
		OriginFeeders: c.cfg.OriginFeeders, OriginFallback: c.cfg.OriginFallback,
		HealthInterval: healthEvery, HealthFailures: c.cfg.HealthFailures,
		OpenBundle: o.OpenBundle,
	}, c.log)
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(c.ctx)
	n := &Node{Agent: a, cancel: cancel, done: make(chan error, 1)}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		n.done <- a.Run(ctx)
	}()
	c.mu.Lock()
	c.agents = append(c.agents, n)
	c.mu.Unlock()
	return n, nil
}

// Agents returns the agents started so far.
func (c *Cluster) Agents() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.agents...)
}

// Publish packs src, signs it and publishes it through the seeder's HTTP
// API, exactly as `swarm publish` does.
func (c *Cluster) Publish(ctx context.Context, src, app, version string) (seeder.PublishResult, error) {
	return c.PublishWith(ctx, src, app, version, seeder.PublishOptions{})
}

// PublishWith is Publish with a rollout plan and environment.
func (c *Cluster) PublishWith(ctx context.Context, src, app, version string, opts seeder.PublishOptions) (seeder.PublishResult, error) {
	tmp := filepath.Join(c.cfg.Dir, "publish-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return seeder.PublishResult{}, err
	}
	b, err := seeder.Pack(seeder.PackOptions{Source: src, App: app, Version: version, Key: c.ReleaseKeys[0], TempDir: tmp})
	if err != nil {
		return seeder.PublishResult{}, err
	}
	defer b.Close()
	return c.Client.PublishBundle(ctx, b, nil, opts)
}

// WaitActive polls until every given agent runs release id of app, or ctx
// ends; the error then names the agents that are not there yet.
func (c *Cluster) WaitActive(ctx context.Context, app string, id release.ID, nodes []*Node) error {
	for {
		var behind []string
		for _, n := range nodes {
			ph, rid, _ := n.AppPhase(app)
			if ph != gossip.PhaseActive || rid != id {
				behind = append(behind, fmt.Sprintf("%s=%s/%s", n.Name(), ph, rid.Short()))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s %s: %d of %d agents not active: %v", app, id.Short(), len(behind), len(nodes), behind)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops every agent and the seeder and waits for them.
func (c *Cluster) Close() {
	c.cancel()
	c.wg.Wait()
	for _, n := range c.Agents() {
		n.Close()
	}
	c.Seeder.Close()
}
