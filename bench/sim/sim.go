// Package sim is swarm's piece-level, discrete-event simulator of one
// publish. It carries the transfer policy of the real agents and seeder to
// fleets of 5000–50 000 nodes, which real in-process runs cannot reach, and
// reports the same bench.Result, so that its runs can be checked against
// real ones at small N with identical parameters.
//
// # Model
//
// Gossip. The seeder publishes the desired state at time 0. A node accepts
// it Gossip.Accept (verify and persist) after the first copy arrives,
// starts fetching, and passes it on as the gossip package does: at once,
// straight to Gossip.RumourFanout random members, each over a new stream
// (three Gossip.Latency: a TCP handshake, then the message); and through
// push gossip as memberlist does it: every member gossips on its own
// Gossip.Interval ticker (random phase) to Gossip.Fanout random members; a
// member that accepted the state sends it RetransmitMult(4) ×
// ceil(log10(members+1)) times in all; every hop takes Gossip.Latency; and
// push/pull anti-entropy (Gossip.PushPull scaled as memberlist scales it,
// with one random member) catches the rare node both miss.
//
// Peers. A node's own state change ("downloading") reaches the others after
// a delay drawn from the spread of a broadcast alone (node states travel in
// memberlist's node metadata, with no rumour and nothing to persist); from
// then on it is an advertiser. When
// it starts and every PeerRefresh after, a downloading node is handed, as
// the agent does, the origin and up to MaxPeers random advertisers and,
// while fewer than MaxPeers others advertise the release, as many random
// members that do not yet (every node is admitted to the release, and the
// agent hands members its rollout admits): one that has started but whose
// state has not spread yet accepts, so the gossip round is saved; a dial to
// one that has not started fails, and it may be handed again at the next
// refresh. A node dials each member it is handed and is not connected to
// while it has fewer than MaxConns connections; the other side accepts
// while under its own cap (MaxConns, or OriginMaxConns at the origin). (The
// agent's preference for holders, peers that gossip progress, is not
// modelled.) A full member makes room only as anacrolix
// does: it drops a connection in its worse half (least recently useful)
// that is older than a minute and has nothing in flight. Connections are
// bidirectional and close when both ends are complete (anacrolix drops
// mutually complete peers), which frees the origin's slots as its
// neighbours finish.
//
// Origin policy. With Params.OriginFeeders = k > 0, nodes 0..k-1 are
// feeders: feeder f is handed the origin and wants only its share, the
// pieces p with p mod k = f, until it holds them; then it closes its origin
// connection and wants every other piece from its peers. No other node is
// ever handed the origin, so the origin sends each piece exactly once.
// (The agents' fallback to the origin after a stall is not modelled.) With
// k = 0 every node is handed the origin at every refresh.
//
// Pieces. Nodes hold bitfields; the origin has everything. A node has
// MaxRequests chunk requests in flight. A free request slot takes the next
// chunk of a piece the node is already fetching (anacrolix prefers partial
// pieces), else starts a new piece chosen rarest first by local
// availability (how many of its connections have it), ties broken by the
// node's own seeded random piece order, as anacrolix orders requests
// (availability, then a per-torrent random permutation). If every
// connection that has that piece is uploading at its cap, the node takes
// instead the rarest piece (ranked the same way) of a random connection
// that has upload to spare: anacrolix keeps a request queue per peer and
// asks every unchoked peer for pieces that peer has, so a crowd at the
// holders of one piece does not leave a downloader idle while its other
// peers could send (without it, some 50 neighbours piled onto one uploader
// and completion at 5000 nodes came 10% later). A piece is fetched in
// MaxRequests chunks, each from whichever connection that has the whole
// piece would send it fastest now (found from a random slot), so a node
// fetches about one piece at a time from up to MaxRequests peers, as
// anacrolix spreads the chunks of its top piece over the peers that have
// it. A piece received is announced to every connection at once.
//
// Bandwidth. Each chunk moves at min(NodeDown/MaxRequests, up/k): a node's
// download is split into MaxRequests equal slots, and an uploader (node:
// NodeUp, origin: OriginUp) shares its rate equally among its k uploads in
// flight (processor sharing, as a token-bucket limiter serves every
// connection that asks). Rates change only when an uploader's count
// changes, and then exactly: each uploader keeps a virtual clock, so
// nothing is approximated in time. No node ever exceeds NodeDown nor an
// uploader its rate, so no run beats T*.
//
// Piece count. The simulated piece is the real one (PieceLength, or
// release.PieceLengthFor) unless the bundle has more than MaxSimPieces
// (default 512; bench sim --sim-pieces) of them; then consecutive real
// pieces are grouped. The cost of a run grows with nodes × simulated
// pieces × MaxRequests, and faster with the pieces, as a pick may count
// bitfields as wide as the piece count; results converge as pieces get
// finer. Coarser pieces slow the first hops from the origin most, so
// their error grows with N. BENCHMARKS.md (Simulator speed) has the
// measured cost and accuracy of each piece count.
//
// Cost. An event is a chunk completing; at tens of thousands of nodes its
// cost is the random nodes' state it reads from memory, so the engine
// reads as little as gives the same result. A node remembers which pieces
// it last counted at maxLevel or more connections; availability only grows
// while none of its connections closes, so when every candidate is among
// them, they rank alike and pick takes the first in the node's order
// without reading any bitfield. A sender is looked for from the random
// slot on and found at the first holder with upload to spare. An uploader
// is one cache line, and the uploaders wait in a calendar queue (buckets
// of time) rather than a heap. None of this changes a result: tests
// compare the shortcuts with counting every time.
//
// # What it leaves out
//
// Install time: a completion is the moment a node has every piece, not the
// moment its release is active. Chunk-level detail below MaxRequests chunks
// per piece, endgame and request stealing: a chunk comes whole from one
// sender and is never requested twice, so no byte is received twice and
// DuplicateBytes is 0. Latency and TCP dynamics of the data plane, hashing
// and disk. Peer exchange (PEX) and anacrolix's balancing of incoming
// against outgoing connections. Gossip load: the desired state and node
// states never wait behind other broadcasts, each node's advertisement
// reaches everyone at once, and piggybacking on probes is not modelled.
// Failures, restarts and rollout waves.
package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// Limits and defaults of the simulator.
const (
	// MaxNodes bounds --nodes.
	MaxNodes = 1_000_000
	// MaxSize bounds --size (1 PiB).
	MaxSize = 1 << 50
	// DefaultMaxSimPieces bounds the simulated pieces; see Config.
	DefaultMaxSimPieces = 512
	// DefaultMaxRequests is chunks a node has in flight with equal up and
	// down links; see Config.
	DefaultMaxRequests = 2
	// DefaultPeerRefresh is agent.Config.Tick's default: the agent re-adds
	// peers to a fetch at most once a tick.
	DefaultPeerRefresh = time.Second

	maxConnsLimit     = 250 // keeps per-node connection bitmasks small
	maxRequestsLimit  = 64
	maxSimPiecesLimit = 1 << 15 // per-level piece counts are 16-bit
	defaultMaxPeers   = 20
	defaultMaxConns   = 50
)

// Seeds of the random streams derived from Config.Seed.
const (
	seedGossip    = 0x676f73736970 // "gossip"
	seedData      = 0x7069656365   // "piece"
	seedNodeState = 0x6e6f64657374 // "nodest"
)

// Config is one simulated publish. Zero fields take the documented defaults,
// which Validate fills in.
type Config struct {
	// Params: Nodes, SizeBytes, PieceLength (0 = release.PieceLengthFor),
	// NodeUp, NodeDown, OriginUp (bytes/s, all > 0 here: the simulator has
	// no uncapped links), MaxPeers (0 = 20), MaxConns (0 = 50), Seed.
	bench.Params
	// MaxRequests is how many chunk requests a node has in flight, each at
	// up to NodeDown/MaxRequests; a piece is fetched in that many chunks.
	// More slots let a node route around more slow senders but cost
	// simulation time in proportion. Default: NodeDown ÷ NodeUp rounded up,
	// from 2 to 8, so that a node can fill its downlink from senders whose
	// uplinks are slower (anacrolix requests from many peers at once): at
	// 256 KiB/s up and 2 MiB/s down, 25 nodes complete in 80 s with 2 slots
	// and 63 s with 8, against 58 s measured on real agents. With equal
	// links it is 2; at fine piece sizes completion then moves by under 3%
	// from 2 to 8 (N=1000, 1 GiB, 1 Gbit/s).
	MaxRequests int
	// MaxSimPieces bounds the simulated pieces: a bundle with more real
	// pieces has them grouped. Default 512 (DefaultMaxSimPieces).
	MaxSimPieces int
	// Gossip shapes the spread of the desired state (and of node states,
	// which tell nodes whom to fetch from, by broadcast alone): memberlist's
	// LAN config, a datacenter hop, and the gossip package's rumour.
	Gossip GossipModel
	// OriginMaxConns caps the origin's connections. Default MaxConns: the
	// seeder's swarm client has the same per-torrent cap as the agents'.
	OriginMaxConns int
	// PeerRefresh is how often a downloading node hands its fetch the
	// origin and fresh random advertisers (and, while there are fewer than
	// MaxPeers, members that do not advertise the release yet). Default 1s
	// (DefaultPeerRefresh).
	PeerRefresh time.Duration
}

// Validate checks the config and fills in defaults. Its messages name the
// flag to change.
func (c *Config) Validate() error {
	switch {
	case c.Nodes <= 0:
		return fmt.Errorf("--nodes must be positive, got %d", c.Nodes)
	case c.Nodes > MaxNodes:
		return fmt.Errorf("--nodes %d: the simulator handles at most %d nodes", c.Nodes, MaxNodes)
	case c.SizeBytes <= 0:
		return fmt.Errorf("--size must be positive, got %d bytes", c.SizeBytes)
	case c.SizeBytes > MaxSize:
		return fmt.Errorf("--size %d bytes is too large: the simulator takes at most %d (1 PiB)", c.SizeBytes, int64(MaxSize))
	case c.SizeBytes > math.MaxInt64/int64(c.Nodes):
		return fmt.Errorf("--size %d × --nodes %d bytes overflow the byte counters; lower one of them", c.SizeBytes, c.Nodes)
	case c.PieceLength < 0:
		return fmt.Errorf("--piece-length must not be negative, got %d", c.PieceLength)
	case c.NodeUp <= 0:
		return fmt.Errorf("--node-up must be positive (bytes/s), got %d: the simulator has no uncapped links", c.NodeUp)
	case c.NodeDown <= 0:
		return fmt.Errorf("--node-down must be positive (bytes/s), got %d: the simulator has no uncapped links", c.NodeDown)
	case c.OriginUp <= 0:
		return fmt.Errorf("--origin-up must be positive (bytes/s), got %d: the simulator has no uncapped links", c.OriginUp)
	case c.MaxPeers < 0:
		return fmt.Errorf("--max-peers must not be negative, got %d", c.MaxPeers)
	case c.MaxConns < 0 || c.MaxConns > maxConnsLimit:
		return fmt.Errorf("--max-conns must be from 1 to %d (0 for the default %d), got %d", maxConnsLimit, defaultMaxConns, c.MaxConns)
	case c.OriginMaxConns < 0:
		return fmt.Errorf("--origin-max-conns must not be negative, got %d", c.OriginMaxConns)
	case c.MaxRequests < 0 || c.MaxRequests > maxRequestsLimit:
		return fmt.Errorf("--max-requests must be from 1 to %d (0 for the default %d), got %d", maxRequestsLimit, DefaultMaxRequests, c.MaxRequests)
	case c.MaxSimPieces < 0 || c.MaxSimPieces > maxSimPiecesLimit:
		return fmt.Errorf("--sim-pieces must be from 1 to %d (0 for the default %d), got %d", maxSimPiecesLimit, DefaultMaxSimPieces, c.MaxSimPieces)
	case c.Gossip.Interval < 0:
		return fmt.Errorf("--gossip-interval must not be negative, got %v", c.Gossip.Interval)
	case c.Gossip.Fanout < 0:
		return fmt.Errorf("--gossip-fanout must not be negative, got %d", c.Gossip.Fanout)
	case c.Gossip.Latency < 0:
		return fmt.Errorf("--gossip-latency must not be negative, got %v", c.Gossip.Latency)
	case c.Gossip.PushPull < 0:
		return fmt.Errorf("--push-pull-interval must not be negative, got %v", c.Gossip.PushPull)
	case c.Gossip.Accept < 0:
		return fmt.Errorf("--gossip-accept must not be negative, got %v", c.Gossip.Accept)
	case c.Gossip.RumourFanout > gossip.MaxRumourFanout:
		return fmt.Errorf("--rumour-fanout must be at most %d, got %d", gossip.MaxRumourFanout, c.Gossip.RumourFanout)
	case c.PeerRefresh < 0:
		return fmt.Errorf("--peer-refresh must not be negative, got %v", c.PeerRefresh)
	}
	if c.PieceLength == 0 {
		c.PieceLength = release.PieceLengthFor(c.SizeBytes)
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = defaultMaxPeers
	}
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.OriginMaxConns == 0 {
		c.OriginMaxConns = c.MaxConns
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = DefaultMaxRequests
		if c.NodeUp > 0 && c.NodeDown > c.NodeUp {
			c.MaxRequests = int(min(max((c.NodeDown+c.NodeUp-1)/c.NodeUp, DefaultMaxRequests), 8))
		}
	}
	if c.MaxSimPieces == 0 {
		c.MaxSimPieces = DefaultMaxSimPieces
	}
	c.Gossip = c.Gossip.withDefaults()
	if c.PeerRefresh == 0 {
		c.PeerRefresh = DefaultPeerRefresh
	}
	return nil
}

// simPieces returns the simulated piece count and lengths of a validated
// config: the real pieces, grouped when there are more than MaxSimPieces.
func (c *Config) simPieces() (pieces int, length, last int64) {
	realPieces := (c.SizeBytes + c.PieceLength - 1) / c.PieceLength
	limit := int64(c.MaxSimPieces)
	group := (realPieces + limit - 1) / limit
	length = min(group*c.PieceLength, c.SizeBytes)
	pieces = int((c.SizeBytes + length - 1) / length)
	last = c.SizeBytes - int64(pieces-1)*length
	return pieces, length, last
}

// Run simulates one publish under cfg and returns its result: Kind sim,
// completions in seconds from publish to each node holding every piece,
// origin and peer bytes, the gossip spread, and the wall time the
// simulation took. Under one Seed the result is the same every time but for
// Start and WallS. progress, if not nil, is called now and then with the
// nodes complete so far, and once at the end. Run returns ctx.Err() if ctx
// ends first.
func Run(ctx context.Context, cfg Config, progress func(done, total int)) (bench.Result, error) {
	res, _, err := simulate(ctx, cfg, progress, runOptions{})
	return res, err
}

// runOptions are simulate's knobs for tests.
type runOptions struct {
	// check has the engine count every piece each node completes.
	check bool
	// alwaysCount has pick count availability every time, without the
	// shortcut for saturated candidates; the result is the same.
	alwaysCount bool
}

// simulate is Run; the engine is returned for inspection.
func simulate(ctx context.Context, cfg Config, progress func(done, total int), opt runOptions) (bench.Result, *engine, error) {
	began := time.Now()
	if err := cfg.Validate(); err != nil {
		return bench.Result{}, nil, err
	}
	// The desired state spreads by rumour, broadcast and push/pull; a
	// node's own state (that it serves the release) by the last two.
	// Node states are not verified nor persisted on the way.
	gp := cfg.Gossip.params(cfg.Nodes + 1)
	accept := acceptTimes(cfg.Nodes, gp, rand.New(rand.NewPCG(cfg.Seed, seedGossip)))
	gp.rumour, gp.accept = 0, 0
	spread := acceptTimes(cfg.Nodes, gp, rand.New(rand.NewPCG(cfg.Seed, seedNodeState)))
	pieces, length, last := cfg.simPieces()
	e := newEngine(engineParams{
		nodes: cfg.Nodes, pieces: pieces, maxRequests: cfg.MaxRequests,
		maxConns: cfg.MaxConns, originConns: cfg.OriginMaxConns, maxPeers: cfg.MaxPeers,
		pieceSize: length, lastSize: last,
		nodeUp: float64(cfg.NodeUp), nodeDown: float64(cfg.NodeDown), originUp: float64(cfg.OriginUp),
		refresh:     cfg.PeerRefresh.Seconds(),
		accept:      accept,
		spread:      spread,
		check:       opt.check,
		alwaysCount: opt.alwaysCount,
		feeders:     cfg.OriginFeeders,
	}, rand.New(rand.NewPCG(cfg.Seed, seedData)))
	if err := e.run(ctx, progress); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return bench.Result{}, e, err
		}
		return bench.Result{}, e, fmt.Errorf("simulate %d nodes: %w", cfg.Nodes, err)
	}
	if progress != nil {
		progress(e.done, e.n)
	}
	res := bench.Result{
		Kind:        bench.KindSim,
		Params:      cfg.Params,
		Start:       began,
		Completions: slices.Clone(e.doneAt),
		OriginBytes: e.originBytes,
		PeerBytes:   e.peerBytes,
	}
	res.Gossip99S, res.Gossip100S = spreadPercentiles(accept)
	policy := "every node uses the origin"
	if cfg.OriginFeeders > 0 {
		policy = fmt.Sprintf("%d origin feeders", min(cfg.OriginFeeders, cfg.Nodes))
	}
	res.Notes = fmt.Sprintf("sim: %s; %d pieces of %d B in %d chunks, %d requests per node, origin max conns %d, peer refresh %v; "+
		"completion = every piece held (install time not modelled); duplicates not modelled",
		policy, pieces, length, min(int64(cfg.MaxRequests), length), cfg.MaxRequests, cfg.OriginMaxConns, cfg.PeerRefresh)
	res.Finish()
	res.WallS = time.Since(began).Seconds()
	return res, e, nil
}
