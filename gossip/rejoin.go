package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/atomicfile"
)

// memberlist does not go back to a node it has declared dead: a seeder
// restarted after its peers gave up on it, or the two sides of a healed
// partition, would stay apart for ever. So every node keeps the gossip
// addresses it has known (its members' and those it was told to Join) and,
// while one of them has no member at it, keeps joining it in the
// background, with a backoff from Config.RejoinInterval to
// Config.RejoinMaxInterval. Every node that misses an address tries it, so
// the cluster as a whole aims about rejoinTries attempts at each missing
// address per round, and at most maxClusterRejoins in all (each join is a
// full state exchange, and one is often enough to merge two sides), whatever
// its size: each node acts in a round with the probability that gives
// (serf's reconnect does much the same).

const (
	defaultRejoinInterval    = time.Second
	defaultRejoinMaxInterval = 8 * time.Second
	// rejoinForget is how long an address learnt from membership is tried
	// after its member was last seen; Join's addresses are kept.
	rejoinForget = time.Hour
	// maxKnownAddrs bounds the set: past it an address missing the longest
	// makes room (agents' before seeders'), or, when none is missing, the
	// new address is not kept.
	maxKnownAddrs = 8192
	// rejoinPerRound is how many addresses a node tries in one round.
	rejoinPerRound = 3
	// rejoinTries is how many attempts per round the cluster aims at each
	// missing address, and maxClusterRejoins at all of them.
	rejoinTries       = 3
	maxClusterRejoins = 32
	// aloneWarnEvery is how often a node alone in its cluster says so.
	aloneWarnEvery = time.Minute
	// peersSaveEvery bounds how often Config.PeersPath is rewritten; the
	// first addresses learnt are saved at once, so that a seeder killed
	// soon after its first agents joined can find them again.
	peersSaveEvery   = 10 * time.Second
	peersFileVersion = 1
)

// knownAddr is one gossip address a node has known.
type knownAddr struct {
	join   bool // given to Join: kept while the node runs
	seeder bool // the last member seen at it was a seeder: evicted last
	// missing is since when no member has been seen at the address; zero
	// while one is.
	missing time.Time
	// answered is when a join to the address last succeeded. A Join
	// address that answers without a member appearing at it (a host name,
	// an address behind NAT) is not tried again until a member goes.
	answered time.Time
}

// knownAddrs is the set a node rejoins from; its own lock, taken inside
// memMu and memberlist's.
type knownAddrs struct {
	mu       sync.Mutex
	addrs    map[string]*knownAddr
	lastGone time.Time // when a member last left or died
	dirty    bool      // changed since last saved
	saved    time.Time // when last saved
	wake     chan struct{}
	learnt   chan struct{} // an address was added
}

func newKnownAddrs() *knownAddrs {
	return &knownAddrs{addrs: make(map[string]*knownAddr), wake: make(chan struct{}, 1), learnt: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// learn records addr, where a member is alive now.
func (k *knownAddrs) learn(addr string, seeder bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if a, ok := k.addrs[addr]; ok {
		a.seeder, a.missing = seeder, time.Time{}
		return
	}
	if !k.makeRoomLocked() {
		return
	}
	k.addrs[addr] = &knownAddr{seeder: seeder}
	k.dirty = true
	signal(k.learnt)
}

// addJoin records addresses given to Join; missing is now until a member
// is seen at them.
func (k *knownAddrs) addJoin(addrs []string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, addr := range addrs {
		if a, ok := k.addrs[addr]; ok {
			a.join = true
			continue
		}
		if !k.makeRoomLocked() {
			return
		}
		k.addrs[addr] = &knownAddr{join: true, missing: now}
		k.dirty = true
	}
}

// makeRoomLocked evicts the address missing the longest, not a Join one,
// agents' first, when the set is full; false if none could go.
func (k *knownAddrs) makeRoomLocked() bool {
	if len(k.addrs) < maxKnownAddrs {
		return true
	}
	victim, vic := "", (*knownAddr)(nil)
	for addr, a := range k.addrs {
		if a.join || a.missing.IsZero() {
			continue
		}
		if vic == nil || (vic.seeder && !a.seeder) || (vic.seeder == a.seeder && a.missing.Before(vic.missing)) {
			victim, vic = addr, a
		}
	}
	if vic == nil {
		return false
	}
	delete(k.addrs, victim)
	return true
}

// conflict records addr, where a node claims the name of a member this
// node knows at another address: memberlist refuses it until that member is
// declared dead (and DeadNodeReclaimTime has passed), and then learns of it
// only when the node pushes its state again. Joining addr from the rejoin
// loop brings that push sooner.
func (k *knownAddrs) conflict(addr string, now time.Time) {
	k.mu.Lock()
	a, ok := k.addrs[addr]
	if !ok && k.makeRoomLocked() {
		a = &knownAddr{}
		k.addrs[addr] = a
		k.dirty = true
	}
	if a != nil && a.missing.IsZero() {
		a.missing = now
	}
	k.mu.Unlock()
	signal(k.wake)
}

// gone notes that a member left or died, and wakes the rejoin loop.
func (k *knownAddrs) gone(now time.Time) {
	k.mu.Lock()
	k.lastGone = now
	k.mu.Unlock()
	signal(k.wake)
}

// missingAddrs updates the set from the addresses members are alive at,
// forgets those unseen for too long and returns the rest that have no
// member, in random order.
func (k *knownAddrs) missingAddrs(alive map[string]bool, now time.Time) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for addr, a := range k.addrs {
		switch {
		case alive[addr]:
			a.missing = time.Time{}
			continue
		case a.missing.IsZero():
			a.missing = now
		case !a.join && now.Sub(a.missing) > rejoinForget:
			delete(k.addrs, addr)
			k.dirty = true
			continue
		}
		if a.join && !a.answered.IsZero() && a.answered.After(k.lastGone) {
			continue
		}
		out = append(out, addr)
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// answered notes that a join to addr succeeded; first says whether it is
// the first answer since the address went missing.
func (k *knownAddrs) answered(addr string, now time.Time) (first bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	a, ok := k.addrs[addr]
	if !ok {
		return true
	}
	first = !a.answered.After(a.missing)
	a.answered = now
	return first
}

func (k *knownAddrs) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.addrs)
}

// rejoinPick chooses what a node tries in one round out of the missing
// addresses (shuffled) when members nodes are alive, this one included: up
// to rejoinPerRound, or none, with the probability that makes the cluster's
// attempts about rejoinTries per missing address and maxClusterRejoins in
// all. draw is uniform in [0,1).
func rejoinPick(missing []string, members int, draw float64) []string {
	if len(missing) == 0 {
		return nil
	}
	k := min(len(missing), rejoinPerRound)
	tries := min(rejoinTries*len(missing), maxClusterRejoins)
	p := float64(tries) / float64(max(members, 1)*k)
	if draw >= p {
		return nil
	}
	return missing[:k]
}

// rejoinLoop runs from Start until Close: the rejoin rounds, the warning of
// a node alone, and the saving of the known addresses.
func (n *Node) rejoinLoop(ctx context.Context) {
	first, last := n.cfg.RejoinInterval, n.cfg.RejoinMaxInterval
	wait := first
	// A first round soon: addresses loaded from PeersPath may be waiting.
	round := time.NewTimer(jitter(wait))
	defer round.Stop()
	idle := false
	if first < 0 { // rejoining turned off
		round.Stop()
		idle = true
	}
	alone := time.NewTicker(n.aloneEvery)
	defer alone.Stop()
	save := time.NewTicker(peersSaveEvery)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-alone.C:
			n.warnAlone()
		case <-save.C:
			n.savePeers(false)
		case <-n.known.learnt:
			n.savePeers(false)
		case <-n.known.wake:
			if idle && first > 0 {
				idle, wait = false, first
				round.Reset(jitter(wait))
			}
		case <-round.C:
			missing := n.known.missingAddrs(n.aliveAddrs(), n.now())
			if len(missing) == 0 {
				idle = true
				continue
			}
			n.rejoinRound(ctx, rejoinPick(missing, n.NumMembers(), rand.Float64()))
			wait = min(wait*2, last)
			round.Reset(jitter(wait))
		}
	}
}

// rejoinRound joins each of addrs, one at a time, but those a member has
// come up at meanwhile (a first join often brings the rest).
func (n *Node) rejoinRound(ctx context.Context, addrs []string) {
	for i, addr := range addrs {
		if i > 0 && n.aliveAddrs()[addr] {
			continue
		}
		before := n.NumMembers()
		_, err := n.joinOnce(ctx, []string{addr})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			n.log.Debug("rejoin: no answer", zap.String("peer", addr), zap.Error(err))
			continue
		}
		// Answers again (a node memberlist still refuses as a conflict)
		// are not news.
		level := zap.DebugLevel
		if n.known.answered(addr, n.now()) {
			level = zap.InfoLevel
		}
		n.log.Log(level, "rejoined a known address", zap.String("peer", addr),
			zap.Int("members_before", before), zap.Int("members", n.NumMembers()))
	}
}

// aliveAddrs is the set of addresses members are alive (or suspected) at,
// this node's included.
func (n *Node) aliveAddrs() map[string]bool {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	out := make(map[string]bool, len(n.members)+1)
	for _, m := range n.members {
		out[m.Addr] = true
	}
	out[n.Addr()] = true
	return out
}

// jitter is d ± 20%, so that nodes restarted together do not act in step.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(d*2/5+1)
}

// KnownAddrs is how many gossip addresses the node keeps rejoining from:
// its members', those given to Join and those loaded from PeersPath.
func (n *Node) KnownAddrs() int { return n.known.len() }

// warnAlone logs, every aloneWarnEvery while the node has no other member,
// how long it has been alone: always for an agent, for a seeder only when
// it holds desired states nobody can receive.
func (n *Node) warnAlone() {
	n.memMu.Lock()
	since, alone := n.aloneSince, len(n.members) <= 1
	n.memMu.Unlock()
	if !alone || since.IsZero() {
		return
	}
	held := len(n.DesiredAll())
	if n.cfg.Role == RoleSeeder && held == 0 {
		return
	}
	d := n.now().Sub(since).Round(time.Second)
	if n.cfg.Role == RoleSeeder {
		n.log.Warn("alone: no agent is a member, so no desired state reaches anyone; agents must --join this seeder",
			zap.Duration("alone_for", d), zap.Int("desired_states", held), zap.Int("known_addrs", n.known.len()))
		return
	}
	n.log.Warn("alone: no other member; waiting for a node to join this one or for a known address to answer",
		zap.Duration("alone_for", d), zap.Int("known_addrs", n.known.len()))
}

// peersFile is what PeersPath holds.
type peersFile struct {
	Version int      `json:"version"`
	Addrs   []string `json:"addrs"`
}

// loadPeers adds the addresses saved by an earlier run, each missing from
// now. A file that cannot be read is logged and ignored: it is a hint.
func (n *Node) loadPeers() {
	if n.cfg.PeersPath == "" {
		return
	}
	b, err := os.ReadFile(n.cfg.PeersPath)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var f peersFile
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err == nil && f.Version != peersFileVersion {
		err = fmt.Errorf("version %d, want %d", f.Version, peersFileVersion)
	}
	if err != nil {
		n.log.Warn("known gossip addresses not loaded; they are only a hint, and are rewritten", zap.String("path", n.cfg.PeersPath), zap.Error(err))
		return
	}
	now := n.now()
	k := n.known
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, addr := range f.Addrs {
		if checkJoinAddr(addr) != nil || k.addrs[addr] != nil || !k.makeRoomLocked() {
			continue
		}
		k.addrs[addr] = &knownAddr{missing: now}
	}
}

// savePeers writes the known addresses to PeersPath when they changed, at
// most every peersSaveEvery unless final.
func (n *Node) savePeers(final bool) {
	if n.cfg.PeersPath == "" {
		return
	}
	k := n.known
	k.mu.Lock()
	now := n.now()
	if !k.dirty || (!final && !k.saved.IsZero() && now.Sub(k.saved) < peersSaveEvery) {
		k.mu.Unlock()
		return
	}
	self := n.Addr()
	f := peersFile{Version: peersFileVersion}
	for addr := range k.addrs {
		if addr != self {
			f.Addrs = append(f.Addrs, addr)
		}
	}
	k.dirty, k.saved = false, now
	k.mu.Unlock()
	slices.Sort(f.Addrs)
	b, err := json.Marshal(f)
	if err == nil {
		err = atomicfile.WriteFile(n.cfg.PeersPath, b, 0o644)
	}
	if err != nil {
		n.log.Warn("known gossip addresses not saved; a restart without --join may not find the cluster", zap.String("path", n.cfg.PeersPath), zap.Error(err))
	}
}
