package sim

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestKeyHeap drives the indexed heap with random sets and removes and
// checks its minimum against a plain scan.
func TestKeyHeap(t *testing.T) {
	const n = 200
	rng := rand.New(rand.NewPCG(1, 1))
	h := newKeyHeap(n)
	in := make([]bool, n)
	keys := make([]float64, n)
	for step := range 20000 {
		item := int32(rng.IntN(n))
		if rng.IntN(4) == 0 {
			h.remove(item)
			in[item] = false
		} else {
			k := float64(rng.IntN(50)) // ties on purpose
			h.set(item, k)
			in[item], keys[item] = true, k
		}
		want, wantKey := int32(-1), math.Inf(1)
		for i := range int32(n) {
			if in[i] && keys[i] < wantKey {
				want, wantKey = i, keys[i]
			}
		}
		if want < 0 {
			if h.len() != 0 {
				t.Fatalf("step %d: heap holds %d items, want none", step, h.len())
			}
			continue
		}
		if got, k := h.min(); got != want || k != wantKey {
			t.Fatalf("step %d: min (%d, %v), want (%d, %v)", step, got, k, want, wantKey)
		}
	}
}

func TestEventHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	var h eventHeap
	for i := range 1000 {
		h.push(event{t: float64(rng.IntN(100)), node: int32(i)})
	}
	last := event{t: -1}
	for h.len() > 0 {
		e := h.pop()
		if e.t < last.t || (e.t == last.t && e.seq < last.seq) {
			t.Fatalf("popped %+v after %+v", e, last)
		}
		last = e
	}
}

func TestUploaderQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var u uploader
	for range 500 {
		u.push(upload{vfin: float64(rng.IntN(1000))})
	}
	last := -1.0
	for len(u.q) > 0 {
		x := u.pop()
		if x.vfin < last {
			t.Fatalf("popped %v after %v", x.vfin, last)
		}
		last = x.vfin
	}
}
