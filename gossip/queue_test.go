package gossip

import (
	"fmt"
	"slices"
	"testing"
)

func drain(q *queue, limit int) []string {
	var got []string
	for _, m := range q.Broadcasts(0, limit) {
		got = append(got, string(m))
	}
	return got
}

// The sequence that made memberlist v0.7.0's queue lose a message: the
// queue empties while a same-name message replaces another, its id counter
// restarts, and a later message of the same length gets an id already in
// use, replacing the newest state of another name.
func TestQueueNeverLosesAMessageOfEqualLength(t *testing.T) {
	q := newQueue(func() int { return 10 }, 4)
	q.Queue("a", []byte("a-v1"))
	q.Queue("a", []byte("a-v2")) // replaces a-v1; the queue was empty a moment
	q.Queue("b", []byte("b-v1"))
	q.Queue("c", []byte("c-v1"))
	if n := q.Len(); n != 3 {
		t.Fatalf("queued %d, want 3", n)
	}
	got := drain(q, 1<<20)
	slices.Sort(got)
	if want := []string{"a-v2", "b-v1", "c-v1"}; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
}

// Many names, replaced in random-looking order with equal-length messages:
// every name's newest message is sent, and no older one.
func TestQueueSendsNewestOfEveryName(t *testing.T) {
	q := newQueue(func() int { return 1 }, 1) // each message is sent once
	newest := map[string]string{}
	for i := range 500 {
		name := fmt.Sprintf("n%02d", (i*7)%37)
		msg := fmt.Sprintf("%s-%04d", name, i)
		q.Queue(name, []byte(msg))
		newest[name] = msg
		if i%11 == 0 { // send some while queueing, emptying it at times
			for _, m := range drain(q, 40) {
				if newest[m[:3]] != m {
					t.Fatalf("sent %s, but %s was queued after it", m, newest[m[:3]])
				}
				delete(newest, m[:3])
			}
		}
	}
	for _, m := range drain(q, 1<<20) {
		if newest[m[:3]] != m {
			t.Fatalf("sent %s, want %s", m, newest[m[:3]])
		}
		delete(newest, m[:3])
	}
	if len(newest) != 0 {
		t.Fatalf("never sent: %v", newest)
	}
	if q.Len() != 0 {
		t.Fatalf("%d left queued after each was sent once", q.Len())
	}
}

func TestQueueTransmitLimitAndOrder(t *testing.T) {
	// 9 nodes: limit is 2 × ceil(log10(10)) = 2 sends each.
	q := newQueue(func() int { return 9 }, 2)
	q.Queue("small", []byte("s"))
	q.Queue("large", []byte("llll"))
	// Room for one: the largest never-sent message goes first.
	if got := drain(q, 4); !slices.Equal(got, []string{"llll"}) {
		t.Fatalf("first round %v, want [llll]", got)
	}
	// Never-sent before once-sent, then once-sent fills what is left.
	if got := drain(q, 5); !slices.Equal(got, []string{"s", "llll"}) {
		t.Fatalf("second round %v, want [s llll]", got)
	}
	if got := drain(q, 5); !slices.Equal(got, []string{"s"}) {
		t.Fatalf("third round %v, want [s]", got)
	}
	if q.Len() != 0 {
		t.Fatalf("%d queued after every message was sent twice", q.Len())
	}
	// A re-queued name after its sends were used up starts afresh.
	q.Queue("small", []byte("s2"))
	if got := drain(q, 100); !slices.Equal(got, []string{"s2"}) {
		t.Fatalf("after re-queue %v, want [s2]", got)
	}
}

func TestQueueOverheadAndPrune(t *testing.T) {
	q := newQueue(func() int { return 100 }, 4)
	for i := range 10 {
		q.Queue(fmt.Sprint(i), []byte("0123456789"))
	}
	// Each costs 10 + 5 overhead: 3 fit in 45 bytes, not 4.
	if got := q.Broadcasts(5, 59); len(got) != 3 {
		t.Fatalf("sent %d in 59 bytes with 5 overhead, want 3", len(got))
	}
	// Newest first, so 9, 8 and 7 went. Prune drops the most-sent, then
	// the oldest never-sent.
	q.Prune(4)
	var left []string
	for q.Len() > 0 {
		it, _ := q.tree.DeleteMin()
		left = append(left, it.name)
	}
	if want := []string{"6", "5", "4", "3"}; !slices.Equal(left, want) {
		t.Fatalf("after Prune(4) %v, want %v", left, want)
	}
	q.Reset()
	if q.Len() != 0 || len(q.byName) != 0 {
		t.Fatal("Reset left messages")
	}
	q.Queue("x", []byte("x"))
	if got := drain(q, 1); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("after Reset %v", got)
	}
}
