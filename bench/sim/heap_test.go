package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
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
		want, wantKey := minItem(in, keys)
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
	var e engine
	ups := make([]uploader, 3)
	// Grow and shrink across the inline heap and the spilled one, with
	// several uploaders sharing spill slots.
	for _, n := range []int{1, 2, 3, 500, 2, 7} {
		var want [][]float64
		for i := range ups {
			var w []float64
			for range n + i {
				x := float64(rng.IntN(1000))
				e.push(&ups[i], upload{vfin: x})
				w = append(w, x)
			}
			slices.Sort(w)
			want = append(want, w)
		}
		for i := range ups {
			var got []float64
			for ups[i].n > 0 {
				if q := e.queue(&ups[i]); len(q) != int(ups[i].n) {
					t.Fatalf("queue of %d uploads for a count of %d", len(q), ups[i].n)
				}
				got = append(got, e.pop(&ups[i]).vfin)
			}
			if !slices.Equal(got, want[i]) || ups[i].spill != 0 {
				t.Fatalf("popped %v, want %v (spill %d)", got, want[i], ups[i].spill)
			}
		}
	}
	if unsafe.Sizeof(uploader{}) != 64 {
		t.Errorf("an uploader is %d bytes, want one cache line", unsafe.Sizeof(uploader{}))
	}
}

// TestCalendar drives the calendar as TestKeyHeap drives the heap, with
// keys that move forward like completion times (and sometimes back, and
// far ahead), and checks its minimum against a plain scan.
func TestCalendar(t *testing.T) {
	const n = 300
	rng := rand.New(rand.NewPCG(2, 2))
	c := newCalendar(n, 1)
	in := make([]bool, n)
	keys := make([]float64, n)
	now := 0.0
	for step := range 50000 {
		item := int32(rng.IntN(n))
		switch r := rng.IntN(10); {
		case r == 0:
			c.remove(item)
			in[item] = false
		default:
			k := now + float64(rng.IntN(64))/16 // ties on purpose
			if r == 1 {
				k = now + float64(rng.IntN(1000)) // beyond the ring
			}
			c.set(item, k)
			in[item], keys[item] = true, k
		}
		want, wantKey := minItem(in, keys)
		if want < 0 {
			if c.len() != 0 {
				t.Fatalf("step %d: calendar holds %d items, want none", step, c.len())
			}
			continue
		}
		got, k := c.min()
		if got != want || k != wantKey {
			t.Fatalf("step %d: min (%d, %v), want (%d, %v)", step, got, k, want, wantKey)
		}
		if rng.IntN(3) == 0 {
			// Time moves to the minimum, as the engine's does; now and
			// then a new key comes before it (an event from elsewhere).
			now = k
			c.remove(got)
			in[got] = false
			if rng.IntN(50) == 0 {
				now = max(0, now-float64(rng.IntN(10)))
			}
		}
	}
}

// minItem is the oracle the queue tests check against: the item in the
// queue with the least key (the lowest index among ties), or -1.
func minItem(in []bool, keys []float64) (int32, float64) {
	want, wantKey := int32(-1), math.Inf(1)
	for i := range in {
		if in[i] && keys[i] < wantKey {
			want, wantKey = int32(i), keys[i]
		}
	}
	return want, wantKey
}
