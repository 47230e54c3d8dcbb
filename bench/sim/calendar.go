package sim

import "math"

// calendar is a queue of items 0..n-1 by a float key, a time, ties by
// item, as keyHeap is, for the uploaders' next completions: every event
// moves one or two of them a chunk's time later, which in a heap sinks
// them through every level (a random cache line or two each), while here
// it moves them from one bucket to another.
//
// Keys fall into buckets of a fixed width; the buckets form a ring, and an
// item beyond the ring's span from the cursor sits in far, a heap. The
// cursor is at or before the bucket of the smallest key in the ring. A
// ring bucket may hold items of a later lap, which the scan passes over.
type calendar struct {
	width float64
	ring  [][]int32 // items by bucket index mod len(ring)
	mask  int64
	cur   int64 // the cursor: an absolute bucket index
	near  int   // items in the ring
	item  []calItem
	far   keyHeap
	// least caches the smallest item of the ring (-1: unknown).
	least int32
}

type calItem struct {
	key    float64
	bucket int64 // absolute; -1 absent, -2 in far
	at     int32 // index in its ring bucket
}

const (
	calAbsent = -1
	calFar    = -2
)

// newCalendar returns a calendar of n items whose keys are mostly spread
// over about span ahead of the smallest: its ring covers four spans, in
// about one bucket per item.
func newCalendar(n int, span float64) calendar {
	buckets := int64(64)
	for buckets < int64(n) {
		buckets *= 2
	}
	c := calendar{
		width: 4 * span / float64(buckets),
		ring:  make([][]int32, buckets),
		mask:  buckets - 1,
		item:  make([]calItem, n),
		far:   newKeyHeap(n),
		least: -1,
	}
	if !(c.width > 0) || math.IsInf(c.width, 0) {
		c.width = 1
	}
	for i := range c.item {
		c.item[i].bucket = calAbsent
	}
	return c
}

func (c *calendar) len() int { return c.near + c.far.len() }

func (c *calendar) bucketOf(k float64) int64 {
	b := k / c.width
	if b >= 1<<62 {
		return 1 << 62
	}
	return int64(b)
}

// set inserts item with key k or moves it to k.
func (c *calendar) set(item int32, k float64) {
	c.remove(item)
	it := &c.item[item]
	it.key = k
	b := c.bucketOf(k)
	if c.near == 0 || b < c.cur {
		// Buckets before the cursor are empty: it may move back. An item
		// already in the ring may then be more than a lap ahead, which
		// the scan allows for.
		c.cur = b
	}
	if b-c.cur > c.mask {
		it.bucket = calFar
		c.far.set(item, k)
		return
	}
	s := &c.ring[b&c.mask]
	it.bucket, it.at = b, int32(len(*s))
	*s = append(*s, item)
	c.near++
	if c.least >= 0 && less(k, item, c.item[c.least].key, c.least) {
		c.least = item
	}
}

// remove takes item out if present.
func (c *calendar) remove(item int32) {
	it := &c.item[item]
	switch it.bucket {
	case calAbsent:
		return
	case calFar:
		c.far.remove(item)
	default:
		s := &c.ring[it.bucket&c.mask]
		last := len(*s) - 1
		moved := (*s)[last]
		(*s)[it.at] = moved
		c.item[moved].at = it.at
		*s = (*s)[:last]
		c.near--
		if c.least == item {
			c.least = -1
		}
	}
	it.bucket = calAbsent
}

func less(k1 float64, i1 int32, k2 float64, i2 int32) bool {
	return k1 < k2 || k1 == k2 && i1 < i2
}

// ringMin returns the smallest item of the ring, moving the cursor to its
// bucket; the ring must not be empty.
func (c *calendar) ringMin() int32 {
	if c.least >= 0 {
		return c.least
	}
	for ; ; c.cur++ {
		best := int32(-1)
		for _, i := range c.ring[c.cur&c.mask] {
			if c.item[i].bucket == c.cur && (best < 0 || less(c.item[i].key, i, c.item[best].key, best)) {
				best = i
			}
		}
		if best >= 0 {
			c.least = best
			return best
		}
	}
}

// min returns the item with the smallest key and that key; the calendar
// must not be empty.
func (c *calendar) min() (int32, float64) {
	if c.near == 0 {
		return c.far.min()
	}
	i := c.ringMin()
	if c.far.len() > 0 {
		if j, k := c.far.min(); less(k, j, c.item[i].key, i) {
			return j, k
		}
	}
	return i, c.item[i].key
}

// next guesses the item that min will return after the current one: the
// next smallest in the cursor's bucket, else none. It only serves to load
// ahead what the next event will read.
func (c *calendar) next() (int32, bool) {
	if c.near == 0 {
		return 0, false
	}
	m := c.ringMin()
	best := int32(-1)
	for _, i := range c.ring[c.cur&c.mask] {
		if i != m && c.item[i].bucket == c.cur && (best < 0 || less(c.item[i].key, i, c.item[best].key, best)) {
			best = i
		}
	}
	return best, best >= 0
}
