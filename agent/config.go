package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
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
	// Trust pins the keys by role: desired states must be signed by a
	// rollout key, manifests by Trust.ReleaseThreshold release keys.
	// Required; a key in both roles is refused.
	Trust release.Trust
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
	// HookEnv names the variables of the agent's environment that hooks and
	// health checks also get (--hook-env); they get nothing else of it but
	// the documented PATH and SWARM_* (installer.HookEnvironment), so that
	// the agent's secrets stay out of them.
	HookEnv []string
	// Shim is the program hooks and health checks run under
	// (installer.Config.Shim); empty, as on a node, means this executable.
	// Tests of a race-built binary point it at a plain swarm binary, which
	// starts several times faster.
	Shim string
	// HealthInterval is how often the health check runs against an active
	// release after its activation. Default 10s; negative turns the
	// periodic check off (the check after activation still runs).
	HealthInterval time.Duration
	// HealthFailures is how many consecutive failed periodic checks make
	// the node report the app unhealthy; one success makes it healthy
	// again. Default 3.
	HealthFailures int
	// Keep is how many releases per app stay on disk, unpacked and as
	// bundles (which keep seeding). Default 3.
	Keep int
	// MinFreeBytes is the disk watermark: while the data dir's file system
	// has less free, bundles beyond the current, previous, desired and
	// in-flight releases are removed, oldest first. A download starts only
	// if it leaves this much free once complete (after retention made what
	// room it could); otherwise the app fails with "disk full" until there
	// is room. 0 = no watermark.
	MinFreeBytes int64
	// DiskRetry is how often a download stopped by a full disk checks the
	// free space again; it resumes by itself once the release fits.
	// Default 5s.
	DiskRetry time.Duration
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
	// GossipKeyFile is the gossip key file (gossip.LoadKeyFile): gossip is
	// encrypted and authenticated with its keys, and the file is read again
	// every GossipKeyInterval and on ReloadGossipKeys, so keys rotate
	// without a restart. Empty: Gossip.SecretKeys as given (none: gossip
	// in the clear).
	GossipKeyFile string
	// GossipKeyInterval is how often the key file is read again; default
	// gossip.KeyFileInterval.
	GossipKeyInterval time.Duration
	// OpenBundle opens a bundle for unpacking (installer.Config.OpenBundle);
	// nil on a node. Tests use it to make an unpack slow.
	OpenBundle func(path string) (io.ReadCloser, error)
	// Gossip adjusts gossip timing; identity and address fields are ignored.
	Gossip gossip.Config
	// Tick is how often the agent re-reads the cluster without being woken
	// (peers, progress, retries). Default 1s.
	Tick time.Duration
	// RetryBackoff is the wait after a failed download before the next try.
	// Default 2s.
	RetryBackoff time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("agent: data dir is required (--data)")
	}
	if err := c.Trust.Validate(); err != nil {
		return fmt.Errorf("agent: %w", err)
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
	if c.DiskRetry <= 0 {
		c.DiskRetry = 5 * time.Second
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 2 * time.Second
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = 10 * time.Second
	}
	if c.HealthFailures < 0 {
		return errors.New("agent: --health-failures must not be negative")
	}
	if c.HealthFailures == 0 {
		c.HealthFailures = 3
	}
	if c.Now == nil {
		c.Now = time.Now
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
	if err := installer.CheckHookEnv(c.HookEnv); err != nil {
		return fmt.Errorf("agent: --hook-env: %w", err)
	}
	return nil
}
