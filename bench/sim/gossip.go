package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/gossip"
)

// Gossip defaults, memberlist.DefaultLANConfig's.
const (
	defaultGossipInterval = 200 * time.Millisecond
	defaultGossipFanout   = 3
	defaultGossipLatency  = time.Millisecond
	defaultPushPull       = 30 * time.Second
	retransmitMult        = 4
	// defaultAccept is BenchmarkAcceptNewState (package gossip) on the
	// 2-core machine of BENCHMARKS.md: verify, persist with two syncs,
	// queue.
	defaultAccept = 1250 * time.Microsecond

	// rumourHops is how many one-way latencies a rumour takes: it is sent
	// over a new stream, so a TCP handshake (one round trip) comes before
	// the message (half of one).
	rumourHops = 3
)

// GossipModel shapes the simulated spread of a desired state. Zero fields
// take memberlist's LAN defaults and the gossip package's rumour fan-out.
type GossipModel struct {
	// Interval is memberlist's GossipInterval (default 200ms) and Fanout
	// its GossipNodes (default 3).
	Interval time.Duration
	Fanout   int
	// Latency is one network hop (default 1ms, a datacenter's).
	Latency time.Duration
	// Accept is how long a node takes from receiving a new state to
	// acting on it and passing it on: verifying its signatures and
	// persisting it. Default 1.25ms, measured by the gossip package's
	// BenchmarkAcceptNewState.
	Accept time.Duration
	// PushPull is memberlist's anti-entropy interval before its scaling
	// with cluster size (default 30s).
	PushPull time.Duration
	// RumourFanout is gossip.Config.RumourFanout: how many random members
	// a node sends a desired state to, once, when it accepts it as new. 0
	// takes the gossip package's default, ceil(ln N)+3 from 3 to 12;
	// negative leaves the broadcast queue and push/pull alone, which is
	// also how a node's own state spreads.
	RumourFanout int
}

// gossipParams are the gossip model's inputs in seconds, defaults applied.
type gossipParams struct {
	interval, latency, pushPull float64
	accept                      float64 // receipt to acceptance
	fanout                      int
	rumour                      int // direct sends per accepting member; 0 = none
	transmits                   int // per member; 0 = memberlist's retransmitLimit
}

// withDefaults returns m with its zero (or negative) durations and fan-out
// set to the defaults. RumourFanout is resolved by params, as its default
// depends on the cluster size.
func (m GossipModel) withDefaults() GossipModel {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&m.Interval, defaultGossipInterval}, {&m.Latency, defaultGossipLatency}, {&m.PushPull, defaultPushPull}, {&m.Accept, defaultAccept}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if m.Fanout <= 0 {
		m.Fanout = defaultGossipFanout
	}
	return m
}

// params resolves m's defaults for a cluster of members members.
func (m GossipModel) params(members int) gossipParams {
	m = m.withDefaults()
	return gossipParams{
		interval: m.Interval.Seconds(),
		latency:  m.Latency.Seconds(),
		pushPull: m.PushPull.Seconds(),
		accept:   m.Accept.Seconds(),
		fanout:   m.Fanout,
		rumour:   gossip.RumourFanout(m.RumourFanout, members),
	}
}

// retransmitLimit is memberlist's: how many sends one broadcast gets from
// one member in a cluster of members.
func retransmitLimit(members int) int {
	return retransmitMult * int(math.Ceil(math.Log10(float64(members+1))))
}

// pushPullScale is memberlist's pushPullScale: the push/pull interval grows
// with the log of the cluster size beyond 32 members.
func pushPullScale(interval float64, members int) float64 {
	const threshold = 32
	if members <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(members))-math.Log2(threshold)) + 1
	return interval * mult
}

// GossipSpread simulates the dissemination of one desired state from the
// seeder to n nodes and returns the seconds until 99% and 100% of them have
// accepted it. It is the same model Run uses to decide when each node starts
// downloading. A node accepts a new state Accept after it arrives, and
// then it spreads three ways:
//   - the rumour: a member that accepts the state sends it at once to
//     RumourFanout random members, each over a new stream (3 latencies);
//   - push gossip as memberlist does it: each member gossips on its own
//     ticker, with a random phase, to Fanout random members; a broadcast is
//     sent RetransmitMult(4)×ceil(log10(members+1)) times by each member
//     that accepted it; every hop takes Latency;
//   - memberlist's push/pull anti-entropy (every PushPull scaled by cluster
//     size, with a random member) for the rare node both miss.
//
// n <= 0 yields zeros.
func GossipSpread(n int, m GossipModel, seed uint64) (p99, p100 float64) {
	if n <= 0 {
		return 0, 0
	}
	acc := acceptTimes(n, m.params(n+1), rand.New(rand.NewPCG(seed, seedGossip)))
	return spreadPercentiles(acc)
}

// spreadPercentiles returns the 99th percentile and the maximum of accept
// times; it sorts a copy.
func spreadPercentiles(acc []float64) (p99, p100 float64) {
	s := slices.Clone(acc)
	slices.Sort(s)
	return bench.Percentile(s, 0.99), s[len(s)-1]
}

// Gossip event kinds.
const (
	gDeliver uint8 = iota
	gTick
	gPushPull
)

// acceptTimes simulates one broadcast from the seeder (member n) at time 0
// through a cluster of n nodes and the seeder, and returns when each node
// accepted it, in seconds. With gp.rumour > 0 each member that accepts it
// also sends it straight to that many random members.
func acceptTimes(n int, gp gossipParams, rng *rand.Rand) []float64 {
	members := n + 1
	acc := make([]float64, members)
	for i := range acc {
		acc[i] = math.Inf(1)
	}
	left := make([]int32, members)
	phase := make([]float64, members)
	for i := range phase {
		phase[i] = rng.Float64() * gp.interval
	}
	limit := int32(retransmitLimit(members))
	if gp.transmits > 0 {
		limit = int32(gp.transmits)
	}
	pp := pushPullScale(gp.pushPull, members)

	var h eventHeap
	informed := 0
	rumourAt := gp.latency * rumourHops
	picked := make([]int, 0, 64)
	inform := func(m int, t float64) {
		acc[m] = t
		informed++
		left[m] = limit
		picked = pickMembers(rng, picked[:0], members, m, gp.rumour)
		for _, r := range picked {
			if math.IsInf(acc[r], 1) {
				h.push(event{t: t + rumourAt, kind: gDeliver, node: int32(r)})
			}
		}
		// The broadcast goes out on the member's next gossip tick.
		tick := phase[m] + math.Ceil((t-phase[m])/gp.interval)*gp.interval
		if tick < t {
			tick += gp.interval
		}
		h.push(event{t: tick, kind: gTick, node: int32(m)})
	}
	inform(n, 0)
	for m := range members {
		h.push(event{t: rng.Float64() * pp, kind: gPushPull, node: int32(m)})
	}
	for informed < members && h.len() > 0 {
		e := h.pop()
		m := int(e.node)
		switch e.kind {
		case gDeliver:
			if math.IsInf(acc[m], 1) {
				inform(m, e.t+gp.accept)
			}
		case gTick:
			k := min(gp.fanout, int(left[m]))
			picked = pickMembers(rng, picked[:0], members, m, k)
			for _, r := range picked {
				if math.IsInf(acc[r], 1) {
					h.push(event{t: e.t + gp.latency, kind: gDeliver, node: int32(r)})
				}
			}
			left[m] -= int32(len(picked))
			if left[m] > 0 {
				h.push(event{t: e.t + gp.interval, kind: gTick, node: int32(m)})
			}
		case gPushPull:
			r := rng.IntN(members - 1)
			if r >= m {
				r++
			}
			mi, ri := acc[m] <= e.t, acc[r] <= e.t
			switch {
			case mi && !ri:
				h.push(event{t: e.t + gp.latency, kind: gDeliver, node: int32(r)})
			case ri && !mi:
				h.push(event{t: e.t + gp.latency, kind: gDeliver, node: int32(m)})
			}
			h.push(event{t: e.t + pp, kind: gPushPull, node: int32(m)})
		}
	}
	return acc[:n]
}

// pickMembers appends to picked up to k distinct random members of
// 0..members-1 other than m (at most 64).
func pickMembers(rng *rand.Rand, picked []int, members, m, k int) []int {
	k = min(k, members-1, 64)
	for len(picked) < k {
		r := rng.IntN(members - 1)
		if r >= m {
			r++
		}
		if !slices.Contains(picked, r) {
			picked = append(picked, r)
		}
	}
	return picked
}
