package gossip

import (
	"math"
	"sync"

	"github.com/google/btree"
)

// queue holds a node's outgoing broadcasts for memberlist's gossip rounds:
// each message is sent up to RetransmitMult × ceil(log10(N+1)) times, the
// least-sent first, and a newer message replaces a queued one of the same
// name.
//
// It replaces memberlist.TransmitLimitedQueue (v0.7.0), which loses
// messages: it restarts its id counter whenever it empties, and its btree
// treats two items with equal (transmits, length, id) as one, so a later
// message of the same length silently replaced another node's newest app
// state. Real processes then saw stale node states until push/pull, 30–50 s
// later (hashicorp/memberlist PR #263, unmerged). Here ids only grow.
type queue struct {
	numNodes func() int
	mult     int

	mu     sync.Mutex
	tree   *btree.BTreeG[*queued]
	byName map[string]*queued
	nextID uint64
}

// queued is one broadcast and how often it has been sent. The tree orders
// by (transmits ascending, length descending, id descending): never-sent
// messages first, and among those the largest, so a packet fills well; the
// id makes every item distinct.
type queued struct {
	transmits int
	size      int
	id        uint64
	name      string
	msg       []byte
}

func lessQueued(a, b *queued) bool {
	if a.transmits != b.transmits {
		return a.transmits < b.transmits
	}
	if a.size != b.size {
		return a.size > b.size
	}
	return a.id > b.id
}

func newQueue(numNodes func() int, mult int) *queue {
	return &queue{
		numNodes: numNodes,
		mult:     mult,
		tree:     btree.NewG(32, lessQueued),
		byName:   make(map[string]*queued),
	}
}

// Queue adds msg under name, dropping a queued message of the same name.
func (q *queue) Queue(name string, msg []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.byName[name]; ok {
		q.tree.Delete(old)
	}
	q.nextID++
	it := &queued{size: len(msg), id: q.nextID, name: name, msg: msg}
	q.tree.ReplaceOrInsert(it)
	q.byName[name] = it
}

// limit is how many times a message is sent before it is dropped.
func (q *queue) limit() int {
	n := q.numNodes()
	return q.mult * int(math.Ceil(math.Log10(float64(n+1))))
}

// Broadcasts returns messages that fit in limit bytes, each costing overhead
// bytes more than its length: the least-sent first, and within one transmit
// count the largest that still fits. Each returned message counts one more
// transmit; one that reaches the limit is dropped.
func (q *queue) Broadcasts(overhead, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.tree.Len() == 0 {
		return nil
	}
	maxSends := q.limit()
	var (
		out   [][]byte
		used  int
		again []*queued
	)
	lo, _ := q.tree.Min()
	hi, _ := q.tree.Max()
	for tx := lo.transmits; tx <= hi.transmits; {
		free := limit - used - overhead
		if free <= 0 {
			break
		}
		// Within transmit count tx, items run from largest to smallest:
		// start at the first no larger than free.
		from := &queued{transmits: tx, size: free, id: math.MaxUint64}
		to := &queued{transmits: tx + 1, size: math.MaxInt, id: math.MaxUint64}
		var pick *queued
		q.tree.AscendRange(from, to, func(it *queued) bool {
			pick = it
			return false
		})
		if pick == nil {
			tx++
			continue
		}
		q.tree.Delete(pick)
		out = append(out, pick.msg)
		used += overhead + pick.size
		if pick.transmits+1 >= maxSends {
			delete(q.byName, pick.name)
			continue
		}
		pick.transmits++
		again = append(again, pick)
	}
	for _, it := range again {
		q.tree.ReplaceOrInsert(it)
	}
	return out
}

// Len is how many messages are queued.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.tree.Len()
}

// Prune drops the most-sent messages until at most keep remain.
func (q *queue) Prune(keep int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.tree.Len() > keep {
		it, _ := q.tree.DeleteMax()
		delete(q.byName, it.name)
	}
}

// Reset drops every queued message.
func (q *queue) Reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tree.Clear(false)
	clear(q.byName)
}
