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
// by item: an item's key can change in place.
type keyHeap struct {
	key  []float64
	pos  []int32 // -1 when absent
	heap []int32
}

func newKeyHeap(n int) keyHeap {
	h := keyHeap{key: make([]float64, n), pos: make([]int32, n), heap: make([]int32, 0, n)}
	for i := range h.pos {
		h.pos[i] = -1
	}
	return h
}

func (h *keyHeap) less(a, b int32) bool {
	ka, kb := h.key[a], h.key[b]
	return ka < kb || (ka == kb && a < b)
}

func (h *keyHeap) len() int { return len(h.heap) }

// min returns the item with the smallest key and that key.
func (h *keyHeap) min() (int32, float64) {
	it := h.heap[0]
	return it, h.key[it]
}

// set inserts item with key k or moves it to k.
func (h *keyHeap) set(item int32, k float64) {
	h.key[item] = k
	i := h.pos[item]
	if i < 0 {
		i = int32(len(h.heap))
		h.heap = append(h.heap, item)
		h.pos[item] = i
	}
	h.up(i)
	h.down(h.pos[item])
}

// remove takes item out if present.
func (h *keyHeap) remove(item int32) {
	i := h.pos[item]
	if i < 0 {
		return
	}
	last := int32(len(h.heap) - 1)
	h.pos[item] = -1
	if i == last {
		h.heap = h.heap[:last]
		return
	}
	moved := h.heap[last]
	h.heap[i] = moved
	h.pos[moved] = i
	h.heap = h.heap[:last]
	h.up(i)
	h.down(h.pos[moved])
}

// The heap is 4-ary: half the levels of a binary heap, and the children
// of a node share a cache line.
const keyArity = 4

func (h *keyHeap) up(i int32) {
	for i > 0 {
		p := (i - 1) / keyArity
		if !h.less(h.heap[i], h.heap[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *keyHeap) down(i int32) {
	n := int32(len(h.heap))
	for {
		first := keyArity*i + 1
		if first >= n {
			return
		}
		m := first
		for c := first + 1; c < min(first+keyArity, n); c++ {
			if h.less(h.heap[c], h.heap[m]) {
				m = c
			}
		}
		if !h.less(h.heap[m], h.heap[i]) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

func (h *keyHeap) swap(i, j int32) {
	h.heap[i], h.heap[j] = h.heap[j], h.heap[i]
	h.pos[h.heap[i]] = i
	h.pos[h.heap[j]] = j
}
