package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/swarmdeploy/swarm/bench"
)

// Gossip defaults, memberlist.DefaultLANConfig's.
const (
	defaultGossipInterval = 200 * time.Millisecond
	defaultGossipFanout   = 3
	defaultGossipLatency  = time.Millisecond
	defaultPushPull       = 30 * time.Second
	retransmitMult        = 4
)

// gossipParams are the gossip model's inputs in seconds, defaults applied.
type gossipParams struct {
	interval, latency, pushPull float64
	fanout                      int
	transmits                   int // per member; 0 = memberlist's retransmitLimit
}

func newGossipParams(interval time.Duration, fanout int, latency, pushPull time.Duration) gossipParams {
	if interval <= 0 {
		interval = defaultGossipInterval
	}
	if fanout <= 0 {
		fanout = defaultGossipFanout
	}
	if latency <= 0 {
		latency = defaultGossipLatency
	}
	if pushPull <= 0 {
		pushPull = defaultPushPull
	}
	return gossipParams{interval: interval.Seconds(), latency: latency.Seconds(), pushPull: pushPull.Seconds(), fanout: fanout}
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
// downloading: push gossip as memberlist does it (each member gossips on its
// own ticker, with a random phase, to fanout random members; a broadcast is
// sent RetransmitMult(4)×ceil(log10(members+1)) times by each member that
// accepted it; every hop takes latency), backed by memberlist's push/pull
// anti-entropy (every 30 s scaled by cluster size, with a random member) for
// the rare node push gossip misses. Zero durations and fanout take the
// memberlist LAN defaults (200ms, 3, 1ms). n <= 0 yields zeros.
func GossipSpread(n int, interval time.Duration, fanout int, latency time.Duration, seed uint64) (p99, p100 float64) {
	if n <= 0 {
		return 0, 0
	}
	gp := newGossipParams(interval, fanout, latency, 0)
	acc := acceptTimes(n, gp, rand.New(rand.NewPCG(seed, seedGossip)))
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
// accepted it, in seconds.
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
	inform := func(m int, t float64) {
		acc[m] = t
		informed++
		left[m] = limit
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
	var targets [16]int
	for informed < members && h.len() > 0 {
		e := h.pop()
		m := int(e.node)
		switch e.kind {
		case gDeliver:
			if math.IsInf(acc[m], 1) {
				inform(m, e.t)
			}
		case gTick:
			k := min(gp.fanout, int(left[m]), members-1, len(targets))
			picked := targets[:0]
			for len(picked) < k {
				r := rng.IntN(members - 1)
				if r >= m {
					r++
				}
				if !slices.Contains(picked, r) {
					picked = append(picked, r)
				}
			}
			for _, r := range picked {
				if math.IsInf(acc[r], 1) {
					h.push(event{t: e.t + gp.latency, kind: gDeliver, node: int32(r)})
				}
			}
			left[m] -= int32(k)
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
