package gossip

import (
	"math"
	"math/rand/v2"
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// A desired state queued for gossip goes out only in the room memberlist
// leaves in its packets after its own membership messages. While a cluster
// is joining, those fill every packet for minutes, and the state waits. So
// a node that accepts a new state also sends it, once, straight to a few
// random members: a rumour that queues behind nothing. Receivers take it
// through accept like any other copy, and pass it on only if it was new to
// them, so the rumour dies out after every node has sent it once: at most
// N × fan-out messages per state, in about log N / log fan-out hops.
//
// With fan-out k, a share of about e^-k of the nodes is never picked and
// waits for the broadcast or push/pull as before: the default fan-out grows
// with ln N so that this is a fraction of one node, not a share.
const (
	// minRumourFanout and maxRumourFanout bound the default fan-out.
	minRumourFanout = 3
	maxRumourFanout = 12
	// rumourFanoutSlack is added to ln N: e^-slack nodes stay unreached in
	// expectation (about 0.05).
	rumourFanoutSlack = 3
)

// MaxRumourFanout bounds Config.RumourFanout.
const MaxRumourFanout = 64

// RumourFanout is how many members a newly accepted state is sent to, in a
// cluster where this node knows members members (itself included).
func RumourFanout(configured, members int) int {
	switch {
	case configured < 0:
		return 0
	case configured > 0:
		return configured
	}
	k := int(math.Ceil(math.Log(float64(max(members, 1))))) + rumourFanoutSlack
	return min(max(k, minRumourFanout), maxRumourFanout)
}

// rumour sends msg, the encoded state d this node has just accepted, to a
// few random members other than itself, each over its own stream, from
// goroutines Close waits for (at most TCPTimeout, as sends run in
// parallel).
//
// Streams, not packets: memberlist hands received packets to one goroutine
// through a queue that serves membership messages (alive) first and drops
// past 1024 waiting, so during a join storm a packet rumour waits behind
// the very news it is meant to overtake, or is lost. A stream is read by its
// own goroutine straight into the delegate, reports failure to the sender
// and has no size limit. It costs a connection per copy: N × fan-out for
// the whole cluster per state, which is rare.
func (n *Node) rumour(d release.DesiredState, msg []byte) {
	ml := n.ml.Load()
	if ml == nil {
		return
	}
	targets := n.randomPeers(RumourFanout(n.cfg.RumourFanout, n.numMembers()))
	if len(targets) == 0 {
		return
	}
	n.life.Lock()
	defer n.life.Unlock()
	if n.closing {
		return
	}
	for _, p := range targets {
		n.wg.Go(func() {
			to, err := memberlistNode(p)
			if err == nil {
				err = ml.SendReliable(to, msg)
			}
			if err != nil {
				if !n.stopping.Load() {
					n.log.Debug("cannot send desired state", zap.String("peer", p.Name), zap.String("app", d.App),
						zap.Uint64("seq", d.Sequence), zap.Error(err))
				}
				return
			}
			n.countSent(1)
		})
	}
}

func (n *Node) countSent(k int) {
	n.mu.Lock()
	n.stats.DirectSent += uint64(k)
	n.mu.Unlock()
}

// randomPeers picks up to k members other than this node, uniformly
// (reservoir sampling over the member map).
func (n *Node) randomPeers(k int) []NodeState {
	if k <= 0 {
		return nil
	}
	n.memMu.Lock()
	defer n.memMu.Unlock()
	out := make([]NodeState, 0, min(k, len(n.members)))
	seen := 0
	for name, m := range n.members {
		if name == n.cfg.Name {
			continue
		}
		seen++
		if len(out) < k {
			out = append(out, NodeState{Name: m.Name, Addr: m.Addr})
		} else if j := rand.N(seen); j < k {
			out[j] = NodeState{Name: m.Name, Addr: m.Addr}
		}
	}
	return out
}

// memberlistNode is what SendReliable needs of a member: its name and
// address.
func memberlistNode(p NodeState) (*memberlist.Node, error) {
	host, ps, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return nil, err
	}
	return &memberlist.Node{Name: p.Name, Addr: net.ParseIP(host), Port: uint16(port)}, nil
}
