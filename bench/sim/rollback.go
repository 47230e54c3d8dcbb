package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/gossip"
)

// Rollback model defaults and limits.
const (
	// defaultSwitch is BenchmarkSwitchBack on the machine of BENCHMARKS.md:
	// a moved node's disk work to switch back (three agent state saves and
	// the installer's Rollback without hook, each write fsynced).
	defaultSwitch = 2700 * time.Microsecond
	// defaultSeederCost and defaultSeederQueue: see RollbackConfig.
	defaultSeederCost  = 10 * time.Microsecond
	defaultSeederQueue = 1024
	// DefaultStateBytes is one app's state as the gossip package
	// broadcasts it (a record header with the one part that changed) for
	// a node named like the harness's agents ("agent-0042"): 90 bytes; a
	// 24-character name makes it 104.
	DefaultStateBytes = 90
	// defaultDesiredBytes is one desired state with target and previous
	// manifests as the gossip package sends it (its TestDesiredStateSize).
	defaultDesiredBytes = 1220

	// MaxRollbackNodes bounds RollbackConfig.Nodes: the model keeps every
	// member's view of every node (N² bytes) and a queue per member.
	MaxRollbackNodes = 20_000

	// memberlist's packet budget: UDPBufferSize (the gossip package's),
	// less the compound header; per message the compound entry's length
	// and, for the delegate's messages (desired and app states), memberlist's
	// user-message byte.
	packetBytes    = 1400 - 2
	perMsgOverhead = 2 + 1
	// maxStateVersions is how many state changes one node makes in a
	// rollback (staged, installing, active); versions fit 3 bits.
	maxStateVersions = 3
	// rollbackHorizon stops a simulation that has not ended: push/pull
	// reaches every member long before.
	rollbackHorizon = 24 * time.Hour
)

// RollbackConfig is one simulated fleet rollback. The seeder issues the
// rollback's desired state at time 0 (the decision); Moved nodes run the
// bad release and switch back; the rest only record the previous release
// active again. Zero fields take the documented defaults.
type RollbackConfig struct {
	// Nodes is the fleet; the seeder is one more member.
	Nodes int
	// Moved is how many nodes ran the bad release; 0 = all of them (an
	// all-at-once rollout, the most state changes at once).
	Moved int
	// Gossip is the gossip model: memberlist's interval, fan-out and
	// push/pull, a hop's latency, the accept time and the rumour fan-out.
	Gossip GossipModel
	// Switch is a moved node's own work to switch back, hook excluded:
	// default 2.7ms, BenchmarkSwitchBack on the machine of BENCHMARKS.md.
	Switch time.Duration
	// Hook is how long the rollback hook runs; default 0 (no hook).
	Hook time.Duration
	// StateBytes is one app-state broadcast; it sets how many fit a
	// packet. Default 90 (DefaultStateBytes).
	StateBytes int
	// DesiredBytes is the desired state's message; default 1220.
	DesiredBytes int
	// NoDirect turns off the packet each node sends the seeder straight
	// away on every change of its own state (gossip.Node's tellSeeders), to
	// see what gossip alone does.
	NoDirect bool
	// SeederCost is the seeder's time to take one such packet; its packets
	// are handled one at a time and, like memberlist's handoff queue, at
	// most SeederQueue wait: more are dropped (gossip still brings them).
	// Default 10µs: 3µs measured for the gossip package's part
	// (BenchmarkReceiveAppState), rounded up for memberlist's decode,
	// decryption and the read.
	SeederCost time.Duration
	// SeederQueue is the seeder's packet queue; default 1024, memberlist's
	// HandoffQueueDepth.
	SeederQueue int
	Seed        uint64
}

// Validate checks the config and fills in defaults. Its messages name the
// flag to change.
func (c *RollbackConfig) Validate() error {
	switch {
	case c.Nodes <= 0:
		return fmt.Errorf("--nodes must be positive, got %d", c.Nodes)
	case c.Nodes > MaxRollbackNodes:
		return fmt.Errorf("--nodes %d: the rollback model keeps every member's view of every node and handles at most %d", c.Nodes, MaxRollbackNodes)
	case c.Moved < 0 || c.Moved > c.Nodes:
		return fmt.Errorf("--moved must be from 1 to --nodes (0 for all), got %d", c.Moved)
	case c.Switch < 0:
		return fmt.Errorf("--switch must not be negative, got %v", c.Switch)
	case c.Hook < 0:
		return fmt.Errorf("--hook-time must not be negative, got %v", c.Hook)
	case c.StateBytes < 0 || c.StateBytes > packetBytes-perMsgOverhead:
		return fmt.Errorf("--state-bytes must be from 1 to %d (0 for the default %d), got %d", packetBytes-perMsgOverhead, DefaultStateBytes, c.StateBytes)
	case c.SeederCost < 0:
		return fmt.Errorf("--seeder-cost must not be negative, got %v", c.SeederCost)
	case c.SeederQueue < 0:
		return fmt.Errorf("--seeder-queue must not be negative, got %d", c.SeederQueue)
	case c.DesiredBytes < 0 || c.DesiredBytes > packetBytes-perMsgOverhead:
		return fmt.Errorf("--desired-bytes must be from 1 to %d (0 for the default %d), got %d", packetBytes-perMsgOverhead, defaultDesiredBytes, c.DesiredBytes)
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
	}
	if c.Moved == 0 {
		c.Moved = c.Nodes
	}
	if c.Switch == 0 {
		c.Switch = defaultSwitch
	}
	if c.StateBytes == 0 {
		c.StateBytes = DefaultStateBytes
	}
	if c.DesiredBytes == 0 {
		c.DesiredBytes = defaultDesiredBytes
	}
	if c.SeederCost == 0 {
		c.SeederCost = defaultSeederCost
	}
	if c.SeederQueue == 0 {
		c.SeederQueue = defaultSeederQueue
	}
	c.Gossip = c.Gossip.withDefaults()
	return nil
}

// SimulateRollback simulates one fleet rollback under cfg and returns when
// every node accepted the rollback state, when each moved node ran the
// previous release again (Back; Back.Max is the fleet time) and when the
// seeder saw it (Seen). Under one Seed the result is the same every time
// but for Start and WallS. It returns ctx.Err() if ctx ends first.
//
// # Model
//
// The rollback state spreads as in Run (see GossipSpread): the seeder and
// every node that accepts it (Gossip.Accept after the first copy arrives)
// send it at once to RumourFanout random members over streams (three
// latencies) and queue it for push gossip; push/pull anti-entropy carries
// it too. A node that accepted it records the app staged, then installing,
// and, Switch + Hook later, active on the previous release (Back); a node
// that never moved records it active at once. Each record is a new app
// state, gossiped as the gossip package does it, which decides Seen:
//
//   - a node queues each change of its app state as a broadcast at once; it
//     replaces the node's older one for the app if still queued;
//
//   - every member holds one queue of app states (a memberlist
//     TransmitLimitedQueue): a state newer than the one it knows is queued
//     with no transmits, replacing the older; every Gossip.Interval (own
//     random phase) the member sends a packet to each of Gossip.Fanout
//     random members: first the desired state while it has sends left
//     (the desired-state queue comes first), then the app states with the
//     fewest transmits, newest first, as many as fit 1398 bytes at
//     StateBytes + 3 each; each is sent RetransmitMult(4) ×
//     ceil(log10(members+1)) times in all, then leaves the queue (the
//     queue's bound, 2 × members, is never reached with one app);
//
//   - push/pull (Gossip.PushPull scaled by cluster size, one random member)
//     exchanges every record both ways, and what it brings is queued anew.
//
//   - besides (unless NoDirect), a node sends its own state straight to the
//     seeder, one packet, a random delay of up to gossip.DirectSpread after
//     a change (changes within the delay go as one); the seeder takes them
//     one at a time at SeederCost each and drops those that find
//     SeederQueue waiting.
//
// Without the direct packets a fleet that changes state all at once shares
// every member's gossip packets: at thousands of nodes the seeder learns
// the last state minutes after the nodes got there. Left out: broadcasts piggybacked on probes and their
// acks (memberlist adds them to every ping, about one packet in eight
// beside gossip at the LAN defaults, so Seen here is somewhat late),
// memberlist's own messages (a settled cluster has none to speak of),
// packet loss and CPU contention.
func SimulateRollback(ctx context.Context, cfg RollbackConfig) (bench.RollbackResult, error) {
	began := time.Now()
	if err := cfg.Validate(); err != nil {
		return bench.RollbackResult{}, err
	}
	e := newRollbackEngine(cfg)
	if err := e.run(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return bench.RollbackResult{}, err
		}
		return bench.RollbackResult{}, fmt.Errorf("simulate rollback of %d nodes: %w", cfg.Nodes, err)
	}
	back := make([]float64, cfg.Moved)
	seen := make([]float64, cfg.Moved)
	for j := range cfg.Moved {
		back[j] = e.backAt[j]
		seen[j] = e.seenAt[j]
	}
	res := bench.RollbackResult{
		Kind: bench.KindSim, Start: began, Nodes: cfg.Nodes, Moved: cfg.Moved, Trigger: "sim",
		HookS:         cfg.Hook.Seconds(),
		Accept:        bench.SpreadOf(e.accAt[:cfg.Nodes]),
		Back:          bench.SpreadOf(back),
		Seen:          bench.SpreadOf(seen),
		SeederDropped: e.dropped,
	}
	res.FleetS = res.Back.Max
	g := cfg.Gossip
	res.Notes = fmt.Sprintf("sim: gossip interval %v, fanout %d, push/pull %v (scaled %.0fs), latency %v, accept %v, rumour fan-out %d; "+
		"switch %v, hook %v; app state %d B (%d a packet), %d sends each",
		g.Interval, g.Fanout, g.PushPull, pushPullScale(g.PushPull.Seconds(), cfg.Nodes+1), g.Latency, g.Accept, e.rumour,
		cfg.Switch, cfg.Hook, cfg.StateBytes, e.perPacket, e.limit)
	res.WallS = time.Since(began).Seconds()
	return res, nil
}

// Rollback event kinds (event.kind); event.node is the member.
const (
	rTick       uint8 = iota // the member's gossip tick
	rDirect                  // the seeder has handled a node's direct packet (node holds the message)
	rDirectSend              // a node's delayed direct send to the seeder is due
	rArrive                  // a copy of the rollback state arrives
	rAccept                  // the member accepts it
	rChange                  // the node's next state change (SetApps)
	rPushPull                // the member's push/pull
)

// desiredMsg marks the rollback state among queued node states.
const desiredMsg = math.MaxUint32

// Queue entries are one uint64, ordered as memberlist orders its queue:
// fewest transmits, then newest first; the low bits hold the message, a
// node index and a state version.
const (
	trShift = 59
	idShift = 27
	msgMask = 1<<idShift - 1
	verBits = 3
	verMask = 1<<verBits - 1
)

// delivery is a packet's message arriving at a member.
type delivery struct {
	t   float64
	to  int32
	msg uint32
}

// rollbackEngine is one simulated rollback: members 0..n-1 are the nodes,
// member n the seeder.
type rollbackEngine struct {
	cfg               RollbackConfig
	n, members        int
	moved             int
	interval, latency float64
	accept, pp        float64
	switchS, back     float64 // switch; switch + hook
	fanout, rumour    int
	limit             int32
	perPacket         int
	desiredBytes      int
	rng               *rand.Rand

	events  eventHeap
	pending []delivery // in time order: every packet takes one latency
	head    int

	phase   []float64
	ticking []bool
	queue   [][]uint64 // per member, a min-heap of entries
	qid     []uint32   // per member, entries queued so far
	dLeft   []int32    // per member, transmits left of the rollback state
	got     []bool     // a copy of the rollback state arrived
	accAt   []float64  // accepted at; +Inf before
	known   []uint8    // known[m*n+j]: the state version of node j member m holds

	// Per node: its state changes.
	applied []uint8 // changes made so far
	final   []uint8 // the version that says "active on the previous release"
	backAt  []float64
	seenAt  []float64
	left    int // moved nodes not yet back or not yet seen back by the seeder
	// The seeder's packet queue: busy until, and how many were dropped.
	seederBusy float64
	dArmed     []bool  // per node: a direct send is pending
	spread     float64 // a direct send's delay is uniform in [0, spread)
	seederCost float64
	dropped    int
	waiting    int // nodes that have not accepted the rollback state
	picked     []int
	popped     []uint64
}

func newRollbackEngine(cfg RollbackConfig) *rollbackEngine {
	n := cfg.Nodes
	members := n + 1
	gp := cfg.Gossip.params(members)
	e := &rollbackEngine{
		cfg: cfg, n: n, members: members, moved: cfg.Moved,
		interval: gp.interval, latency: gp.latency, accept: gp.accept,
		pp:      pushPullScale(gp.pushPull, members),
		switchS: cfg.Switch.Seconds(), back: (cfg.Switch + cfg.Hook).Seconds(),
		fanout: gp.fanout, rumour: gp.rumour, limit: int32(retransmitLimit(members)),
		perPacket: packetBytes / (cfg.StateBytes + perMsgOverhead), desiredBytes: cfg.DesiredBytes,
		rng:     rand.New(rand.NewPCG(cfg.Seed, seedRollback)),
		phase:   make([]float64, members),
		ticking: make([]bool, members),
		queue:   make([][]uint64, members),
		qid:     make([]uint32, members),
		dLeft:   make([]int32, members),
		got:     make([]bool, members),
		accAt:   make([]float64, members),
		known:   make([]uint8, members*n),
		applied: make([]uint8, n), final: make([]uint8, n),
		backAt: make([]float64, n), seenAt: make([]float64, n),
		left: cfg.Moved, waiting: n,
		seederCost: cfg.SeederCost.Seconds(),
		dArmed:     make([]bool, n),
		spread:     gossip.DirectSpread(members).Seconds(),
	}
	for m := range members {
		e.phase[m] = e.rng.Float64() * e.interval
		e.accAt[m] = math.Inf(1)
		e.events.push(event{t: e.rng.Float64() * e.pp, kind: rPushPull, node: int32(m)})
	}
	for j := range n {
		e.backAt[j], e.seenAt[j] = math.Inf(1), math.Inf(1)
		e.final[j] = 1 // a node that never moved: "active" at once
		if j < e.moved {
			e.final[j] = maxStateVersions // staged, installing, active
		}
	}
	// The decision: the seeder issues the state at time 0.
	e.got[n] = true
	e.events.push(event{t: 0, kind: rAccept, node: int32(n)})
	return e
}

// seedRollback derives the rollback model's random stream from Seed.
const seedRollback = 0x726f6c6c6261636b // "rollback"

func (e *rollbackEngine) run(ctx context.Context) error {
	horizon := rollbackHorizon.Seconds()
	for steps := 0; e.left > 0 || e.waiting > 0; steps++ {
		if steps&(1<<16-1) == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		// The earlier of the next event and the next delivery; deliveries
		// first at equal times (a packet sent before a tick at the same
		// instant).
		if e.head < len(e.pending) && (e.events.len() == 0 || e.pending[e.head].t <= e.events.top().t) {
			d := e.pending[e.head]
			e.head++
			if e.head > 1<<16 && e.head*2 > len(e.pending) {
				e.pending = append(e.pending[:0], e.pending[e.head:]...)
				e.head = 0
			}
			e.receive(int(d.to), d.msg, d.t)
			continue
		}
		if e.events.len() == 0 {
			return errors.New("no events left before every node was back and seen")
		}
		ev := e.events.pop()
		if ev.t > horizon {
			return fmt.Errorf("%d moved nodes not seen back after %v", e.left, rollbackHorizon)
		}
		m := int(ev.node)
		switch ev.kind {
		case rTick:
			e.tick(m, ev.t)
		case rArrive:
			e.arrive(m, ev.t)
		case rAccept:
			e.acceptState(m, ev.t)
		case rChange:
			e.change(m, ev.t)
		case rPushPull:
			e.pushPull(m, ev.t)
		case rDirectSend:
			e.sendDirect(m, ev.t)
		case rDirect:
			msg := uint32(ev.node)
			e.learn(e.n, int(msg>>verBits), uint8(msg&verMask), ev.t)
		}
	}
	return nil
}

// noteDone counts moved node j as finished once it is back and seen back.
func (e *rollbackEngine) noteDone(j int) {
	if !math.IsInf(e.backAt[j], 1) && !math.IsInf(e.seenAt[j], 1) {
		e.left--
	}
}

// arrive is a copy of the rollback state reaching m: the first is accepted
// Accept later.
func (e *rollbackEngine) arrive(m int, t float64) {
	if e.got[m] {
		return
	}
	e.got[m] = true
	e.events.push(event{t: t + e.accept, kind: rAccept, node: int32(m)})
}

// acceptState is m taking the rollback state: it rumours it, queues it for
// gossip and, if m is a node, starts its state changes.
func (e *rollbackEngine) acceptState(m int, t float64) {
	e.accAt[m] = t
	if m < e.n {
		e.waiting--
	}
	e.picked = pickMembers(e.rng, e.picked[:0], e.members, m, e.rumour)
	for _, r := range e.picked {
		if !e.got[r] {
			e.events.push(event{t: t + rumourHops*e.latency, kind: rArrive, node: int32(r)})
		}
	}
	e.dLeft[m] = e.limit
	e.wake(m, t)
	if m == e.n {
		return
	}
	if m >= e.moved {
		e.events.push(event{t: t, kind: rChange, node: int32(m)}) // active
		return
	}
	e.events.push(event{t: t, kind: rChange, node: int32(m)})               // staged
	e.events.push(event{t: t + e.switchS/2, kind: rChange, node: int32(m)}) // installing
	e.events.push(event{t: t + e.back, kind: rChange, node: int32(m)})      // active again
}

// change is node j's next state change (SetApps): it is queued at j at
// once, replacing j's older one.
func (e *rollbackEngine) change(j int, t float64) {
	e.applied[j]++
	v := e.applied[j]
	if v == e.final[j] && j < e.moved {
		e.backAt[j] = t
		e.noteDone(j)
	}
	e.known[j*e.n+j] = v
	msg := uint32(j)<<verBits | uint32(v)
	e.enqueue(j, msg, t)
	if !e.cfg.NoDirect && !e.dArmed[j] {
		e.dArmed[j] = true
		e.events.push(event{t: t + e.rng.Float64()*e.spread, kind: rDirectSend, node: int32(j)})
	}
}

// sendDirect is node j sending the seeder its current state, the changes
// since it armed the send coalesced into one packet.
func (e *rollbackEngine) sendDirect(j int, t float64) {
	e.dArmed[j] = false
	e.direct(uint32(j)<<verBits|uint32(e.applied[j]), t+e.latency)
}

// direct is a node's own state arriving at the seeder at t: queued behind
// the packets it has yet to handle, or dropped when SeederQueue wait.
func (e *rollbackEngine) direct(msg uint32, t float64) {
	start := max(e.seederBusy, t)
	if waiting := (start - t) / e.seederCost; waiting >= float64(e.cfg.SeederQueue) {
		e.dropped++
		return
	}
	e.seederBusy = start + e.seederCost
	e.events.push(event{t: e.seederBusy, kind: rDirect, node: int32(msg)})
}

// enqueue queues msg at m with no transmits, newest first among those.
func (e *rollbackEngine) enqueue(m int, msg uint32, t float64) {
	id := e.qid[m]
	e.qid[m]++
	e.queue[m] = heapPush(e.queue[m], uint64(^id)<<idShift|uint64(msg))
	e.wake(m, t)
}

// wake makes sure m's gossip ticker is running: memberlist ticks for ever,
// but a member with nothing queued sends nothing, so the simulation only
// schedules ticks while there is something to send.
func (e *rollbackEngine) wake(m int, t float64) {
	if e.ticking[m] {
		return
	}
	e.ticking[m] = true
	p := e.phase[m]
	tick := p + math.Ceil((t-p)/e.interval)*e.interval
	if tick < t {
		tick += e.interval
	}
	e.events.push(event{t: tick, kind: rTick, node: int32(m)})
}

// tick is m's gossip round: a packet to each of fanout random members.
func (e *rollbackEngine) tick(m int, t float64) {
	e.ticking[m] = false
	e.picked = pickMembers(e.rng, e.picked[:0], e.members, m, e.fanout)
	for _, r := range e.picked {
		if !e.packet(m, r, t) {
			break // memberlist stops its round at the first empty packet
		}
	}
	if len(e.queue[m]) > 0 || e.dLeft[m] > 0 {
		e.ticking[m] = true
		e.events.push(event{t: t + e.interval, kind: rTick, node: int32(m)})
	}
}

// packet sends r the rollback state while m has sends of it left, then
// what fits of m's app-state queue; false if it had nothing to send.
func (e *rollbackEngine) packet(m, r int, t float64) bool {
	e.popped = e.popped[:0]
	room := e.perPacket
	sentDesired := false
	if e.dLeft[m] > 0 {
		e.dLeft[m]--
		sentDesired = true
		e.pending = append(e.pending, delivery{t: t + e.latency, to: int32(r), msg: desiredMsg})
		room = (packetBytes - perMsgOverhead - e.desiredBytes) / (e.cfg.StateBytes + perMsgOverhead)
	}
	base := m * e.n
	for len(e.popped) < room && len(e.queue[m]) > 0 {
		var x uint64
		e.queue[m], x = heapPop(e.queue[m])
		msg := uint32(x & msgMask)
		if uint8(msg&verMask) < e.known[base+int(msg>>verBits)] {
			continue // replaced by a newer state of the same node
		}
		e.popped = append(e.popped, x)
		e.pending = append(e.pending, delivery{t: t + e.latency, to: int32(r), msg: msg})
	}
	for _, x := range e.popped {
		if int32(x>>trShift)+1 < e.limit {
			e.queue[m] = heapPush(e.queue[m], x+1<<trShift)
		} // else sent enough: it leaves the queue
	}
	return len(e.popped) > 0 || sentDesired
}

// receive is msg arriving at r.
func (e *rollbackEngine) receive(r int, msg uint32, t float64) {
	if msg == desiredMsg {
		e.arrive(r, t)
		return
	}
	j, v := int(msg>>verBits), uint8(msg&verMask)
	e.learn(r, j, v, t)
}

// learn is member r hearing version v of node j's state, by gossip or
// push/pull: a newer one is kept and queued to be passed on.
func (e *rollbackEngine) learn(r, j int, v uint8, t float64) {
	i := r*e.n + j
	if v <= e.known[i] {
		return
	}
	e.known[i] = v
	e.enqueue(r, uint32(j)<<verBits|uint32(v), t)
	if r == e.n && v == e.final[j] && j < e.moved {
		e.seenAt[j] = t
		e.noteDone(j)
	}
}

// pushPull exchanges m's and a random member's full state both ways.
func (e *rollbackEngine) pushPull(m int, t float64) {
	r := e.rng.IntN(e.members - 1)
	if r >= m {
		r++
	}
	switch {
	case e.accAt[m] <= t && !e.got[r]:
		e.events.push(event{t: t + e.latency, kind: rArrive, node: int32(r)})
	case e.accAt[r] <= t && !e.got[m]:
		e.events.push(event{t: t + e.latency, kind: rArrive, node: int32(m)})
	}
	for j := range e.n {
		a, b := e.known[m*e.n+j], e.known[r*e.n+j]
		switch {
		case a < b:
			e.learn(m, j, b, t)
		case b < a:
			e.learn(r, j, a, t)
		}
	}
	e.events.push(event{t: t + e.pp, kind: rPushPull, node: int32(m)})
}

// heapPush and heapPop keep a binary min-heap of queue entries.
func heapPush(h []uint64, x uint64) []uint64 {
	h = append(h, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p] <= x {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
	return h
}

func heapPop(h []uint64) ([]uint64, uint64) {
	top := h[0]
	last := len(h) - 1
	x := h[last]
	h = h[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		c := l
		if l+1 < last && h[l+1] < h[l] {
			c = l + 1
		}
		if x <= h[c] {
			break
		}
		h[i] = h[c]
		i = c
	}
	if last > 0 {
		h[i] = x
	}
	return h, top
}
