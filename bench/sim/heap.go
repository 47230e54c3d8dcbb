package sim

// event is a timed event; seq orders events at the same time by when they
// were scheduled, which keeps runs deterministic.
type event struct {
	t    float64
	seq  uint64
	node int32
	kind uint8
}

func (a *event) before(b *event) bool {
	return a.t < b.t || (a.t == b.t && a.seq < b.seq)
}

// eventHeap is a binary min-heap of events by time, then scheduling order.
type eventHeap struct {
	s   []event
	seq uint64
}

func (h *eventHeap) len() int { return len(h.s) }

func (h *eventHeap) top() *event { return &h.s[0] }

func (h *eventHeap) push(e event) {
	e.seq = h.seq
	h.seq++
	h.s = append(h.s, e)
	i := len(h.s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.s[i].before(&h.s[p]) {
			break
		}
		h.s[i], h.s[p] = h.s[p], h.s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	top := h.s[0]
	last := len(h.s) - 1
	h.s[0] = h.s[last]
	h.s = h.s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && h.s[r].before(&h.s[l]) {
			m = r
		}
		if !h.s[m].before(&h.s[i]) {
			break
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
	return top
}

// keyHeap is an indexed 4-ary min-heap of items 0..n-1 by a float key, ties
// by item: an item's key can change in place. Keys live in the heap array
// beside their items, so that comparing a node's children reads one cache
// line instead of one per child.
type keyHeap struct {
	pos  []int32 // -1 when absent
	heap []keyed
}

type keyed struct {
	key  float64
	item int32
}

func newKeyHeap(n int) keyHeap {
	// The array starts keyAlign entries into its allocation (which is
	// aligned to a cache line once it is large), so that the children of
	// a node, from keyArity·i+1 on, fill one line rather than straddle two.
	h := keyHeap{pos: make([]int32, n), heap: make([]keyed, keyAlign, n+keyAlign)[keyAlign:]}
	for i := range h.pos {
		h.pos[i] = -1
	}
	return h
}

func (a keyed) less(b keyed) bool {
	return a.key < b.key || (a.key == b.key && a.item < b.item)
}

func (h *keyHeap) len() int { return len(h.heap) }

// min returns the item with the smallest key and that key.
func (h *keyHeap) min() (int32, float64) {
	return h.heap[0].item, h.heap[0].key
}

// set inserts item with key k or moves it to k.
func (h *keyHeap) set(item int32, k float64) {
	x := keyed{key: k, item: item}
	i := h.pos[item]
	if i < 0 {
		h.heap = append(h.heap, x)
		h.up(int32(len(h.heap)-1), x)
		return
	}
	old := h.heap[i].key
	switch {
	case k < old:
		h.up(i, x)
	case k > old:
		h.down(i, x)
	default:
		h.heap[i] = x
	}
}

// remove takes item out if present.
func (h *keyHeap) remove(item int32) {
	i := h.pos[item]
	if i < 0 {
		return
	}
	last := int32(len(h.heap) - 1)
	h.pos[item] = -1
	moved := h.heap[last]
	h.heap = h.heap[:last]
	if i == last {
		return
	}
	if moved.less(h.heap[i]) {
		h.up(i, moved)
	} else {
		h.down(i, moved)
	}
}

// The heap is 4-ary: half the levels of a binary heap, and the children
// of a node (16 bytes each) share a cache line.
const keyArity = 4

// keyAlign is the entries before the root in a line (64 bytes of 16-byte
// entries): keyArity·i+1 is then a multiple of 4 past the line start.
const keyAlign = 3

// up places x, whose slot is i, at or above i.
func (h *keyHeap) up(i int32, x keyed) {
	for i > 0 {
		p := (i - 1) / keyArity
		if !x.less(h.heap[p]) {
			break
		}
		h.heap[i] = h.heap[p]
		h.pos[h.heap[i].item] = i
		i = p
	}
	h.heap[i] = x
	h.pos[x.item] = i
}

// down places x, whose slot is i, at or below i.
func (h *keyHeap) down(i int32, x keyed) {
	n := int32(len(h.heap))
	for {
		first := keyArity*i + 1
		if first >= n {
			break
		}
		m := first
		for c := first + 1; c < min(first+keyArity, n); c++ {
			if h.heap[c].less(h.heap[m]) {
				m = c
			}
		}
		if !h.heap[m].less(x) {
			break
		}
		h.heap[i] = h.heap[m]
		h.pos[h.heap[i].item] = i
		i = m
	}
	h.heap[i] = x
	h.pos[x.item] = i
}
