package gossip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/swarmdeploy/swarm/release"
)

// DefaultPort is the gossip port used when BindAddr is empty.
const DefaultPort = 7946

// Config configures a Node. Zero timing fields take memberlist's LAN defaults
// (DefaultLANConfig); tests cut them to milliseconds.
type Config struct {
	// Name identifies the node in the cluster; it must be unique. Required.
	Name string
	// BindAddr is the "host:port" the node listens on, TCP and UDP. Port 0
	// lets the OS pick (see Node.Addr). Empty means all interfaces on
	// DefaultPort.
	BindAddr string
	// AdvertiseAddr is the "ip" or "ip:port" other nodes should use to reach
	// this one, when it differs from the bound address (NAT, containers).
	// With port 0 in BindAddr the OS-picked port is advertised.
	AdvertiseAddr string
	// Trust holds the pinned keys: desired states must be signed by a
	// rollout key, and the manifests inside them by enough release keys.
	// Required.
	Trust release.Trust
	// StatePath is the file where accepted desired states persist, so the
	// highest accepted sequence per app survives restarts. "" keeps them in
	// memory only.
	StatePath string
	// Role is gossiped to the cluster; default RoleAgent.
	Role Role
	// TorrentAddr is gossiped so peers can reach this node's torrent client.
	TorrentAddr string
	// Env is the environment the node belongs to (release.DefaultEnv when
	// empty); it is gossiped so the seeder's controller counts the node in
	// that environment's rollouts.
	Env string
	// SecretKeys, when set, encrypt and authenticate all gossip (AES-GCM;
	// each key 16, 24 or 32 bytes): the first key encrypts what the node
	// sends, every key is tried on what it receives, and nothing unencrypted
	// is taken. A node holding none of the keys its peers use neither joins
	// nor learns anything. Node.SetKeys changes them while the node runs
	// (see KeyFile for rotation). Empty: gossip in the clear.
	SecretKeys [][]byte
	// SigningKey, for a seeder, signs what the node announces about itself
	// (name, role, torrent address, environment, generation): other nodes
	// take a member for a seeder, and an origin, only if its announcement
	// verifies against their Keyring. A seeder without it is treated by
	// every other node as an agent. Its public half must be in Keyring.
	SigningKey *release.PrivateKey
	// Network, when set, connects the node to the other nodes of an
	// in-memory network instead of UDP and TCP sockets: for benchmarks and
	// simulations of thousands of nodes in one process. The network assigns
	// the node's address, so BindAddr and AdvertiseAddr must be empty.
	Network *MemNetwork

	// GossipInterval is how often a node sends queued broadcasts to
	// GossipNodes random members.
	GossipInterval time.Duration
	GossipNodes    int
	// ProbeInterval and ProbeTimeout drive failure detection.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// PushPullInterval is how often a node syncs full state (membership and
	// desired states) with one random member. memberlist scales it up with
	// the cluster size.
	PushPullInterval time.Duration
	// SuspicionMult scales how long a suspected node has to refute before it
	// is declared dead.
	SuspicionMult int
	// RetransmitMult scales how many times a broadcast is retransmitted:
	// RetransmitMult × ceil(log10(N+1)).
	RetransmitMult int
	// TCPTimeout bounds each push/pull and join connection.
	TCPTimeout time.Duration
	// RumourFanout is how many random members a node sends a desired state
	// to, once, each over its own stream (TCP), when it accepts it as new,
	// besides queueing it for gossip: queued broadcasts wait behind
	// membership news, which fills memberlist's packets while a cluster
	// joins. 0 picks ceil(ln N)+3 for N known members, from 3 to 12, which
	// leaves about 0.05 nodes in expectation to the broadcast and push/pull;
	// negative turns direct sends off. At most 64.
	RumourFanout int

	// MaxApps is how many apps SetApps takes; default and upper bound
	// MaxApps (32), which is also the most any node accepts in a record.
	MaxApps int

	// LeaveTimeout bounds how long Close waits for the leave message to go
	// out; default 5s.
	LeaveTimeout time.Duration
	// JoinAttempts, when set, bounds how many times Join tries the whole
	// address list; 0 (the default) leaves the bound to Join's context, so
	// that a join timeout means what it says.
	JoinAttempts int
	// JoinBackoff is the wait after the first failed attempt; it doubles up
	// to 16×. Default 1s.
	JoinBackoff time.Duration

	// RejoinInterval is the wait before the node first tries again an
	// address it knows and no member is at (a restarted seeder, the other
	// side of a partition); it doubles up to RejoinMaxInterval while one is
	// missing. Defaults 1s and 8s; a negative RejoinInterval turns
	// rejoining off (simulations that study memberlist alone).
	RejoinInterval    time.Duration
	RejoinMaxInterval time.Duration
	// PeersPath is the file where the node keeps the gossip addresses it
	// knows, so that, restarted without a join address, it still finds the
	// cluster. "" keeps them in memory only.
	PeersPath string
}

// Defaults for the fields memberlist does not own.
const (
	defaultLeaveTimeout = 5 * time.Second
	defaultJoinBackoff  = time.Second
	// defaultRetransmitMult is memberlist.DefaultLANConfig's.
	defaultRetransmitMult = 4
	maxJoinBackoffMult    = 16
	// deadNodeReclaimTime lets a node that crashed come back under the same
	// name from another address (a rescheduled container, a new DHCP lease,
	// a port the OS picked) instead of being refused as a conflict for
	// ever. It runs from when the old address is declared dead, which
	// already takes the suspicion timeout: a few seconds more guard only
	// against two live processes sharing a name, which is a mistake anyway.
	deadNodeReclaimTime = 3 * time.Second
)

// Validate reports the first field that is missing or malformed.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("gossip config: name is required")
	}
	if len(c.Name) > 128 {
		return fmt.Errorf("gossip config: name %q is longer than 128 bytes", c.Name)
	}
	if c.Network != nil && (c.BindAddr != "" || c.AdvertiseAddr != "") {
		return errors.New("gossip config: the in-memory network assigns the address; leave bind and advertise addresses empty")
	}
	if c.BindAddr != "" {
		if _, _, err := splitAddr(c.BindAddr, true); err != nil {
			return fmt.Errorf("gossip config: bind address: %w", err)
		}
	}
	if c.AdvertiseAddr != "" {
		host, _, err := splitAddr(c.AdvertiseAddr, false)
		if err != nil {
			return fmt.Errorf("gossip config: advertise address: %w", err)
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("gossip config: advertise address %q: host must be an IP address", c.AdvertiseAddr)
		}
	}
	if err := c.Trust.Validate(); err != nil {
		return fmt.Errorf("gossip config: %w", err)
	}
	switch c.Role {
	case "", RoleAgent, RoleSeeder:
	default:
		return fmt.Errorf("gossip config: unknown role %q; use %q or %q", c.Role, RoleAgent, RoleSeeder)
	}
	if c.Env != "" {
		if err := release.ValidateEnv(c.Env); err != nil {
			return fmt.Errorf("gossip config: %w", err)
		}
	}
	if err := checkKeys(c.SecretKeys, true); err != nil {
		return fmt.Errorf("gossip config: %w", err)
	}
	if c.SigningKey != nil {
		if _, ok := c.Trust.Rollout[c.SigningKey.ID()]; !ok {
			return fmt.Errorf("gossip config: signing key %s is not a pinned rollout key; pin its public half", c.SigningKey.ID())
		}
	}
	for name, d := range map[string]time.Duration{
		"gossip interval": c.GossipInterval, "probe interval": c.ProbeInterval,
		"probe timeout": c.ProbeTimeout, "push/pull interval": c.PushPullInterval,
		"tcp timeout": c.TCPTimeout, "leave timeout": c.LeaveTimeout,
		"join backoff": c.JoinBackoff, "rejoin max interval": c.RejoinMaxInterval,
	} {
		if d < 0 {
			return fmt.Errorf("gossip config: %s is negative (%v)", name, d)
		}
	}
	if c.GossipNodes < 0 || c.SuspicionMult < 0 || c.RetransmitMult < 0 || c.JoinAttempts < 0 {
		return errors.New("gossip config: gossip nodes, suspicion mult, retransmit mult and join attempts must not be negative")
	}
	if c.MaxApps < 0 || c.MaxApps > MaxApps {
		return fmt.Errorf("gossip config: max apps %d is outside 0–%d", c.MaxApps, MaxApps)
	}
	if len(c.TorrentAddr) > maxTorrentAddr {
		return fmt.Errorf("gossip config: torrent address is %d bytes, over %d", len(c.TorrentAddr), maxTorrentAddr)
	}
	if c.RumourFanout > MaxRumourFanout {
		return fmt.Errorf("gossip config: rumour fan-out %d is over %d", c.RumourFanout, MaxRumourFanout)
	}
	return nil
}

func (c *Config) applyDefaults() {
	if c.Role == "" {
		c.Role = RoleAgent
	}
	if c.BindAddr == "" && c.Network == nil {
		c.BindAddr = net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort))
	}
	if c.RetransmitMult == 0 {
		// memberlist's LAN default, needed before memberlist exists: the
		// desired-state queue is built by New.
		c.RetransmitMult = defaultRetransmitMult
	}
	if c.MaxApps == 0 {
		c.MaxApps = MaxApps
	}
	if c.LeaveTimeout == 0 {
		c.LeaveTimeout = defaultLeaveTimeout
	}
	if c.JoinBackoff == 0 {
		c.JoinBackoff = defaultJoinBackoff
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = defaultRejoinInterval
	}
	if c.RejoinMaxInterval == 0 {
		c.RejoinMaxInterval = defaultRejoinMaxInterval
	}
	c.RejoinMaxInterval = max(c.RejoinMaxInterval, c.RejoinInterval)
}

// memberlistConfig translates c into memberlist's configuration. bindIP is
// the resolved bind host.
func (c *Config) memberlistConfig(bindIP string, bindPort int) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	mc.BindAddr = bindIP
	mc.BindPort = bindPort
	mc.AdvertisePort = bindPort
	if c.AdvertiseAddr != "" {
		host, port, _ := splitAddr(c.AdvertiseAddr, false)
		mc.AdvertiseAddr = host
		if port != 0 {
			mc.AdvertisePort = port
		}
	}
	// With keys (Node sets mc.Keyring), nothing is sent or taken in the
	// clear: memberlist's defaults, stated because they are the point.
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	// memberlist's compression allocates a 64 KiB compressor per packet.
	mc.EnableCompression = false
	mc.UDPBufferSize = udpBufferSize
	mc.DeadNodeReclaimTime = deadNodeReclaimTime
	setDur(&mc.GossipInterval, c.GossipInterval)
	setDur(&mc.ProbeInterval, c.ProbeInterval)
	setDur(&mc.ProbeTimeout, c.ProbeTimeout)
	setDur(&mc.PushPullInterval, c.PushPullInterval)
	setDur(&mc.TCPTimeout, c.TCPTimeout)
	setInt(&mc.GossipNodes, c.GossipNodes)
	setInt(&mc.SuspicionMult, c.SuspicionMult)
	setInt(&mc.RetransmitMult, c.RetransmitMult)
	// Dead nodes stay gossiped for as long as a push/pull takes to spread.
	if c.PushPullInterval > 0 {
		mc.GossipToTheDeadTime = c.PushPullInterval
	}
	return mc
}

func setDur(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

// splitAddr parses "host:port". With portRequired false a bare host is
// accepted and port 0 returned. Port 0 is allowed only when portRequired is
// true (a bind address), where it means "let the OS pick".
func splitAddr(addr string, portRequired bool) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		if !portRequired && net.ParseIP(addr) != nil {
			return addr, 0, nil
		}
		return "", 0, fmt.Errorf("%w %q: want host:port (%v)", ErrBadAddress, addr, err)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%w %q: port %q is not a number from 0 to 65535", ErrBadAddress, addr, ps)
	}
	if port == 0 && !portRequired {
		return "", 0, fmt.Errorf("%w %q: port must not be 0", ErrBadAddress, addr)
	}
	return host, int(port), nil
}

// checkJoinAddr accepts "host:port" with a non-empty host and a port in
// 1–65535.
func checkJoinAddr(addr string) error {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w %q: want host:port (%v)", ErrBadAddress, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w %q: host is empty; want host:port", ErrBadAddress, addr)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("%w %q: port %q is not a number from 1 to 65535; want host:port", ErrBadAddress, addr, ps)
	}
	return nil
}
