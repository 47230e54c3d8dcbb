package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// Node is one member of the gossip cluster. Create it with New, then Start,
// Join and, when done, Close. Its methods are safe for concurrent use.
type Node struct {
	cfg Config
	log *zap.Logger

	// queue holds this node's desired-state broadcasts and appQueue its
	// app-state ones; memberlist pulls from both (desired states first)
	// through the delegate to fill its packets.
	queue    *queue
	appQueue *queue
	changes  chan struct{}
	ml       atomic.Pointer[memberlist.Memberlist]
	addr     atomic.Pointer[string] // advertised address, set by Start

	// members mirrors memberlist's alive members, kept by the event
	// delegate. memberlist's own Members returns pointers into structs it
	// keeps writing, so reading them is a data race. peers holds the other
	// nodes' app-state records (apps.go), members' and briefly others'.
	memMu     sync.Mutex
	members   map[string]NodeState
	peers     map[string]*peerRecord
	orphans   int       // peers that are not members
	lastSweep time.Time // when peers were last swept of expired orphans
	// aloneSince is since when the node has had no other member; zero
	// while it has one.
	aloneSince time.Time

	// known holds the addresses the node rejoins from (rejoin.go);
	// aloneEvery is aloneWarnEvery, changed by tests.
	known      *knownAddrs
	aloneEvery time.Duration
	// stopRejoin ends rejoinLoop; set by Start.
	stopRejoin context.CancelFunc

	// self is this node's own app-state record; selfApps its states as
	// Members shows them, readable under memMu without self.mu.
	self selfRecord
	// direct holds own app-state changes waiting to go straight to the
	// seeders (tellSeeders).
	direct struct {
		mu      sync.Mutex
		pending map[string][]byte
		armed   bool
	}
	selfApps atomic.Pointer[[]AppState]

	appTaken   atomic.Uint64 // Stats.AppRecords
	appRefused atomic.Uint64 // Stats.AppRefused

	// now and orphanTTL are time.Now and defaultOrphanTTL; tests change them.
	now       func() time.Time
	orphanTTL time.Duration
	// dropMsg, when set before Start, drops the user messages for which it
	// returns true, as a lossy network would: a test seam.
	dropMsg func(msg []byte) bool

	// life serialises Start and Close and guards joins being added to wg.
	life      sync.Mutex
	started   bool
	closing   bool
	stopping  atomic.Bool // Close has begun: memberlist's errors are expected
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // rejoinLoop, and Join attempts still inside memberlist

	// gate lets memberlist's goroutines into our delegates and logger only
	// until Close has shut memberlist down; Close waits for those inside.
	gate struct {
		sync.Mutex
		cond   *sync.Cond
		inside int
		closed bool
	}

	// meta is what the node advertises about itself, fixed by Start.
	metaMu sync.Mutex
	meta   []byte

	// keyring holds the gossip keys (nil: gossip in the clear); keyMu
	// serialises SetKeys.
	keyring *memberlist.Keyring
	keyMu   sync.Mutex
	// fakeSeeders holds the members (name and generation) already counted
	// in Stats.RefusedSeeders: they claim the seeder role without a valid
	// signature.
	fakeSeeders struct {
		sync.Mutex
		seen  map[string]struct{}
		count uint64
	}

	mu      sync.Mutex // guards what follows
	desired map[string]entry
	highest map[string]uint64
	stats   Stats
	logged  map[string]struct{}
	bySig   map[string]string  // the key of each held state by its signature, for heldAlready
	refused map[string]Refusal // by state key; refusals.go

	// refusals rate-limits the logging of refused input (logonce.go).
	refusals *rateLog
}

// entry is an accepted desired state with its verified contents.
type entry struct {
	signed   release.SignedDesiredState
	state    release.DesiredState
	accepted time.Time // when this node accepted it (zero if loaded from disk)
}

// maxLogged bounds the set of refusals already logged; past it the set is
// cleared, so a flood of distinct bad states costs memory only up to here.
const maxLogged = 1024

// New checks cfg and prepares a node. It does no I/O.
func New(cfg Config, logger *zap.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	cfg.applyDefaults()
	cfg.SecretKeys = cloneKeys(cfg.SecretKeys)
	// The largest generation, so that the real one cannot overflow the meta.
	meta, err := encodeMeta(cfg.Name, cfg.Role, cfg.TorrentAddr, cfg.Env, ^uint64(0), cfg.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	keyring, err := newKeyring(cfg.SecretKeys)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		log:        logger.Named("gossip").With(zap.String("node", cfg.Name)),
		changes:    make(chan struct{}, 1),
		meta:       meta,
		keyring:    keyring,
		desired:    make(map[string]entry),
		highest:    make(map[string]uint64),
		logged:     make(map[string]struct{}),
		bySig:      make(map[string]string),
		refusals:   newRateLog(refusalLogEvery),
		members:    make(map[string]NodeState),
		peers:      make(map[string]*peerRecord),
		now:        time.Now,
		orphanTTL:  defaultOrphanTTL,
		known:      newKnownAddrs(),
		aloneEvery: aloneWarnEvery,
	}
	n.gate.cond = sync.NewCond(&n.gate.Mutex)
	n.fakeSeeders.seen = make(map[string]struct{})
	n.queue = newQueue(n.numMembers, cfg.RetransmitMult)
	n.appQueue = newQueue(n.numMembers, cfg.RetransmitMult)
	return n, nil
}

// Start loads the persisted desired states, binds the gossip port and starts
// memberlist. The node is then a cluster of one until Join.
func (n *Node) Start() error {
	n.life.Lock()
	defer n.life.Unlock()
	if n.closing {
		return ErrClosed
	}
	if n.started {
		return errors.New("gossip: node already started")
	}
	if err := n.load(); err != nil {
		return err
	}
	if err := n.startRecord(); err != nil {
		return err
	}
	n.loadPeers()
	mc, err := n.transportConfig()
	if err != nil {
		return err
	}
	mc.Keyring = n.keyring
	mc.Delegate = &delegate{n: n}
	mc.Events = &eventDelegate{n: n}
	mc.Conflict = &conflictDelegate{n: n}
	mc.Logger = log.New(newLogWriter(n, n.log.Named("memberlist")), "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		if mc.Transport != nil {
			_ = mc.Transport.Shutdown() // memberlist may not have
			return fmt.Errorf("gossip start on the in-memory network: %w", err)
		}
		// memberlist flattens the bind error into text.
		if strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("gossip listen %s: %w; choose another --gossip port", n.cfg.BindAddr, syscall.EADDRINUSE)
		}
		return fmt.Errorf("gossip listen %s: %w", n.cfg.BindAddr, err)
	}
	// The advertised address is fixed once memberlist is up; reading it
	// later through LocalNode would race with memberlist's own updates.
	addr := net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(mc.AdvertisePort))
	if self, ok := n.member(n.cfg.Name); ok {
		addr = self.Addr
	}
	n.addr.Store(&addr)
	n.ml.Store(ml)
	n.started = true
	ctx, cancel := context.WithCancel(context.Background())
	n.stopRejoin = cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.rejoinLoop(ctx)
	}()
	n.log.Info("gossip started", zap.String("addr", n.Addr()), zap.Bool("encrypted", n.keyring != nil),
		zap.Strings("keys", keyIDs(n.Keys())))
	if n.cfg.Role == RoleSeeder && n.cfg.SigningKey == nil {
		n.log.Warn("seeder role without a signing key: every other node treats this node as an agent")
	}
	return nil
}

// transportConfig is memberlist's configuration with the node's address:
// bound to sockets by memberlist, or assigned by the in-memory network.
func (n *Node) transportConfig() (*memberlist.Config, error) {
	if n.cfg.Network != nil {
		t, err := n.cfg.Network.attach()
		if err != nil {
			return nil, fmt.Errorf("gossip start: %w", err)
		}
		mc := n.cfg.memberlistConfig(t.ip.String(), t.port)
		mc.AdvertiseAddr = t.ip.String()
		mc.Transport = t
		return mc, nil
	}
	host, port, _ := splitAddr(n.cfg.BindAddr, true)
	ip, err := resolveBindHost(host)
	if err != nil {
		return nil, fmt.Errorf("gossip listen %s: %w", n.cfg.BindAddr, err)
	}
	return n.cfg.memberlistConfig(ip, port), nil
}

func resolveBindHost(host string) (string, error) {
	if host == "" {
		return "0.0.0.0", nil
	}
	if net.ParseIP(host) != nil {
		return host, nil
	}
	a, err := net.ResolveIPAddr("ip", host)
	if err != nil {
		return "", err
	}
	return a.IP.String(), nil
}

// Join contacts the given "host:port" addresses until at least one answers
// or ctx ends (or Config.JoinAttempts, when set, runs out), retrying the
// whole list with a doubling backoff. A malformed address fails at once.
// Whatever Join returns, the node keeps the addresses and rejoins them in
// the background whenever no member is seen at them (rejoin.go).
func (n *Node) Join(ctx context.Context, addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("gossip join: no address given")
	}
	for _, a := range addrs {
		if err := checkJoinAddr(a); err != nil {
			return fmt.Errorf("gossip join: %w", err)
		}
	}
	n.known.addJoin(addrs, n.now())
	list := strings.Join(addrs, ",")
	backoff := n.cfg.JoinBackoff
	for attempt := 1; ; attempt++ {
		k, err := n.joinOnce(ctx, addrs)
		if err == nil {
			n.log.Info("joined cluster", zap.String("peers", list), zap.Int("contacted", k))
			return nil
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotStarted) {
			return fmt.Errorf("gossip join: %w", err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("gossip join %s: %w (last error: %v)", list, ctx.Err(), err)
		}
		if n.cfg.JoinAttempts > 0 && attempt >= n.cfg.JoinAttempts {
			return fmt.Errorf("gossip join %s: none answered after %d attempts: %w", list, attempt, err)
		}
		n.log.Debug("join failed; retrying", zap.Int("attempt", attempt), zap.Duration("backoff", backoff), zap.Error(err))
		// ±20% jitter, so nodes restarted together do not retry in step.
		wait := backoff - backoff/5 + rand.N(backoff*2/5+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gossip join %s: %w (last error: %v)", list, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, n.cfg.JoinBackoff*maxJoinBackoffMult)
	}
}

// joinOnce runs one memberlist Join, which does not take a context, in a
// goroutine that Close waits for, and returns early if ctx ends.
func (n *Node) joinOnce(ctx context.Context, addrs []string) (int, error) {
	n.life.Lock()
	ml := n.ml.Load()
	switch {
	case n.closing:
		n.life.Unlock()
		return 0, ErrClosed
	case ml == nil:
		n.life.Unlock()
		return 0, ErrNotStarted
	}
	type result struct {
		k   int
		err error
	}
	done := make(chan result, 1)
	n.wg.Add(1)
	n.life.Unlock()
	go func() {
		defer n.wg.Done()
		k, err := ml.Join(addrs)
		done <- result{k, err}
	}()
	select {
	case r := <-done:
		return r.k, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Addr is the address other nodes reach this one at, with the real port when
// BindAddr asked for port 0. It is "" before Start.
func (n *Node) Addr() string {
	if a := n.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Close leaves the cluster (waiting up to LeaveTimeout for the leave message
// to go out), shuts memberlist down and waits for the node's goroutines. It
// is safe to call more than once; Changes is not closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.life.Lock()
		n.closing = true
		n.stopping.Store(true)
		ml := n.ml.Load()
		if n.stopRejoin != nil {
			n.stopRejoin()
		}
		n.life.Unlock()
		if ml != nil {
			if err := ml.Leave(n.cfg.LeaveTimeout); err != nil {
				n.log.Debug("leave not acknowledged", zap.Error(err))
			}
			if err := ml.Shutdown(); err != nil {
				n.closeErr = fmt.Errorf("gossip close: %w", err)
			}
		}
		n.wg.Wait()
		n.closeGate()
		n.savePeers(true)
	})
	return n.closeErr
}

// enter admits a memberlist callback unless the node is closed; every true
// return must be paired with exit.
func (n *Node) enter() bool {
	n.gate.Lock()
	defer n.gate.Unlock()
	if n.gate.closed {
		return false
	}
	n.gate.inside++
	return true
}

func (n *Node) exit() {
	n.gate.Lock()
	n.gate.inside--
	if n.gate.inside == 0 {
		n.gate.cond.Broadcast()
	}
	n.gate.Unlock()
}

// closeGate turns memberlist callbacks away from now on and waits for those
// already inside, so nothing logs after Close returns.
func (n *Node) closeGate() {
	n.gate.Lock()
	n.gate.closed = true
	for n.gate.inside > 0 {
		n.gate.cond.Wait()
	}
	n.gate.Unlock()
}

func (n *Node) currentMeta() []byte {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.meta
}

// Members lists the alive (and suspected) members, this node included,
// sorted by name. A member whose state cannot be decoded is listed with its
// name and address only.
func (n *Node) Members() []NodeState {
	n.memMu.Lock()
	out := make([]NodeState, 0, len(n.members))
	for _, m := range n.members {
		m.Apps = slices.Clone(m.Apps)
		out = append(out, m)
	}
	n.memMu.Unlock()
	slices.SortFunc(out, func(a, b NodeState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ReleaseProgress is how far the other agents have got with release id: the
// sum of their gossiped progress for it, a node past downloading counting 1
// and a failed one 0. It rises while the swarm fetches the release; it reads
// the member table in place, for calling every second on thousands of nodes.
func (n *Node) ReleaseProgress(id release.ID) float64 {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	var sum float64
	for name, m := range n.members {
		if name == n.cfg.Name || m.Role == RoleSeeder {
			continue
		}
		for _, as := range m.Apps {
			if as.ReleaseID == id {
				if as.Phase != PhaseFailed {
					sum += as.Progress
				}
				break
			}
		}
	}
	return sum
}

func (n *Node) member(name string) (NodeState, bool) {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	m, ok := n.members[name]
	return m, ok
}

// NumMembers is how many alive (and suspected) members this node knows,
// itself included: what len(Members()) returns, without copying the list,
// for polling thousands of nodes.
func (n *Node) NumMembers() int {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	return len(n.members)
}

func (n *Node) numMembers() int {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	return max(len(n.members), 1)
}

// setMember records a member from a memberlist event, with the apps of its
// record of the generation its meta names. Another member claiming the
// seeder role without an announcement signed by a pinned key is recorded as
// an agent; the first time it is seen so (per generation), setMember
// returns why, for the caller to log.
func (n *Node) setMember(m *memberlist.Node) (fake error) {
	ns := NodeState{Name: m.Name, Addr: m.Address()}
	w, err := decodeMeta(m.Meta)
	if err == nil {
		ns.Role, ns.TorrentAddr, ns.Env = w.Role, w.Torrent, w.Env
	}
	if ns.Role == RoleSeeder && m.Name != n.cfg.Name {
		if err := verifyAnnouncement(m.Name, w, n.cfg.Trust.Rollout); err != nil {
			ns.Role = RoleAgent
			if n.countFakeSeeder(m.Name, w.Gen) {
				fake = err
			}
		}
	}
	if ns.Env == "" {
		ns.Env = release.DefaultEnv
	}
	if m.Name != n.cfg.Name {
		n.known.learn(ns.Addr, ns.Role == RoleSeeder)
	}
	n.memMu.Lock()
	defer n.memMu.Unlock()
	if m.Name == n.cfg.Name {
		if apps := n.selfApps.Load(); apps != nil {
			ns.Apps = *apps
		}
	} else {
		ns.Apps = n.joinedLocked(m.Name, w.Gen)
	}
	n.members[m.Name] = ns
	n.noteAloneLocked()
	return fake
}

// countFakeSeeder counts a member (of a generation) that claims the seeder
// role without a valid signature, once; it reports whether it was new.
func (n *Node) countFakeSeeder(name string, gen uint64) bool {
	key := name + "/" + strconv.FormatUint(gen, 10)
	n.fakeSeeders.Lock()
	defer n.fakeSeeders.Unlock()
	if _, ok := n.fakeSeeders.seen[key]; ok {
		return false
	}
	if len(n.fakeSeeders.seen) >= maxLogged {
		clear(n.fakeSeeders.seen)
	}
	n.fakeSeeders.seen[key] = struct{}{}
	n.fakeSeeders.count++
	return true
}

// removeMember forgets a member that left or died.
func (n *Node) removeMember(name string) {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	delete(n.members, name)
	n.goneLocked(name)
	n.noteAloneLocked()
	n.known.gone(n.now())
}

// noteAloneLocked keeps aloneSince; the caller holds memMu.
func (n *Node) noteAloneLocked() {
	switch {
	case len(n.members) > 1:
		n.aloneSince = time.Time{}
	case n.aloneSince.IsZero():
		n.aloneSince = n.now()
	}
}

// Changes delivers a notification whenever a desired state is accepted or
// membership or a member's state changes. Notifications coalesce: the
// channel holds one, so a slow reader sees one for many changes and should
// then read the current state.
func (n *Node) Changes() <-chan struct{} { return n.changes }

func (n *Node) notify() {
	select {
	case n.changes <- struct{}{}:
	default:
	}
}

// Stats returns the desired-state and app-state counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	st := n.stats
	n.mu.Unlock()
	st.AppRecords = n.appTaken.Load()
	st.AppRefused = n.appRefused.Load()
	n.fakeSeeders.Lock()
	st.RefusedSeeders = n.fakeSeeders.count
	n.fakeSeeders.Unlock()
	return st
}

// startRecord fixes this node's generation, from the wall clock, and the
// meta that advertises it; app states set before Start are queued now.
func (n *Node) startRecord() error {
	n.self.mu.Lock()
	defer n.self.mu.Unlock()
	n.self.gen = uint64(max(n.now().UnixNano(), 1))
	meta, err := encodeMeta(n.cfg.Name, n.cfg.Role, n.cfg.TorrentAddr, n.cfg.Env, n.self.gen, n.cfg.SigningKey)
	if err != nil {
		return fmt.Errorf("gossip start: %w", err)
	}
	n.metaMu.Lock()
	n.meta = meta
	n.metaMu.Unlock()
	if n.self.seq > 0 {
		n.publishSelfLocked(n.self.parts)
	}
	return nil
}
