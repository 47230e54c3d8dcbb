package gossip

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// TestPublishCaps: what the cluster would refuse to carry is refused at
// Publish, with a sentinel, and the same state from a peer is counted over
// the cap; a held (app, environment) still takes newer states.
func TestPublishCaps(t *testing.T) {
	k := newKey(t)
	n := startNode(t, testConfig("seeder", trustOf(k.Public())))

	// A plan of 1000 steps makes a state of over 8 KiB.
	d, err := desired(t, k, "web", 1).Unverified()
	if err != nil {
		t.Fatal(err)
	}
	d.Plan.Steps = nil
	for i := range 1000 {
		d.Plan.Steps = append(d.Plan.Steps, release.Step{Count: i + 1})
	}
	big, err := release.SignDesired(d, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Publish(big); !errors.Is(err, ErrStateTooLarge) {
		t.Fatalf("Publish of %d bytes of payload = %v, want ErrStateTooLarge", len(big.Payload), err)
	}

	if err := n.Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatal(err)
	}
	// Fill the node up to the cap with other (app, environment) keys.
	n.mu.Lock()
	for i := range MaxDesiredStates - 1 {
		n.holdLocked(fmt.Sprintf("filler-%d@default", i), entry{signed: release.SignedDesiredState{
			Envelope: release.Envelope{Sig: []byte(fmt.Sprint(i))}}})
	}
	n.mu.Unlock()

	if err := n.Publish(desired(t, k, "api", 1)); !errors.Is(err, ErrTooManyStates) {
		t.Fatalf("Publish past the cap = %v, want ErrTooManyStates", err)
	}
	before := n.Stats()
	n.handleMsg(mustMsg(t, desired(t, k, "db", 1)))
	if st := n.Stats(); st.RefusedOverCap != before.RefusedOverCap+1 || st.Accepted != before.Accepted {
		t.Fatalf("a new key from gossip past the cap: stats %+v", st)
	}
	if err := n.Publish(desired(t, k, "web", 2)); err != nil {
		t.Fatalf("a held key past the cap: %v", err)
	}
	if got := len(n.DesiredAll()); got != MaxDesiredStates {
		t.Fatalf("holds %d states, want %d", got, MaxDesiredStates)
	}
}

// TestDesiredMsgCaps: a desired-state message over MaxDesiredBytes, plain
// or once inflated, is refused before it is decoded.
func TestDesiredMsgCaps(t *testing.T) {
	k := newKey(t)
	n := startNode(t, testConfig("rx", trustOf(k.Public())))
	plain := append([]byte{msgDesired}, bytes.Repeat([]byte(" "), MaxDesiredBytes+1)...)
	var bomb bytes.Buffer
	bomb.WriteByte(msgDesiredFlate)
	fw, _ := flate.NewWriter(&bomb, flate.BestCompression)
	fw.Write(bytes.Repeat([]byte(" "), 1<<20))
	fw.Close()
	for name, msg := range map[string][]byte{"plain": plain, "deflated": bomb.Bytes()} {
		before := n.Stats()
		n.handleMsg(msg)
		if st := n.Stats(); st.RefusedOverCap != before.RefusedOverCap+1 || st.Verifications != before.Verifications {
			t.Errorf("%s: stats %+v", name, st)
		}
	}
}

// TestPushPullDesiredCaps: a push/pull's desired states past the cap, or
// over MaxDesiredBytes, are counted and skipped unread; a legacy
// (msgPushPull) state is held to the same caps.
func TestPushPullDesiredCaps(t *testing.T) {
	k := newKey(t)
	good := desired(t, k, "web", 1)
	huge := good
	huge.KeyID = strings.Repeat("k", MaxDesiredBytes)
	states := []release.SignedDesiredState{huge, good, desired(t, k, "api", 1), desired(t, k, "db", 1)}
	buf, err := encodePushPull(states, nil)
	if err != nil {
		t.Fatal(err)
	}
	lim := defaultPushPullLimits
	lim.desired = 2
	st, err := decodePushPull(buf, lim)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.desired) != 2 || !sameEnvelope(st.desired[0], good) || st.desiredRefused != 2 {
		t.Fatalf("took %d states, refused %d; want web and api, and 2", len(st.desired), st.desiredRefused)
	}
	legacy := append([]byte{msgPushPull}, make([]byte, maxDesiredSection+1)...)
	if _, err := decodePushPull(legacy, defaultPushPullLimits); !errors.Is(err, errOverCap) {
		t.Fatalf("legacy push/pull over the section bound: %v", err)
	}
}

func TestCountElements(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`]`, 0},
		{` , {"a":[1,2,{"b":"],\"}"}]} ,"x", 3 , null]`, 4},
		{`{"a":1},{"b":2}]}`, 2}, // right after '['
		{`,{"a":"unterminated`, 1},
		{``, 0},
	}
	for _, tt := range tests {
		if got := countElements([]byte(tt.in)); got != tt.want {
			t.Errorf("countElements(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestRateLog(t *testing.T) {
	r := newRateLog(time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	allow := func(key string, at time.Duration) (bool, uint64) { return r.allow(key, t0.Add(at)) }
	if ok, held := allow("a", 0); !ok || held != 0 {
		t.Fatalf("first line: %v %d", ok, held)
	}
	for range 5 {
		if ok, _ := allow("a", 30*time.Second); ok {
			t.Fatal("a second line within the minute")
		}
	}
	if ok, _ := allow("b", time.Second); !ok {
		t.Fatal("another cause held back")
	}
	if ok, held := allow("a", time.Minute); !ok || held != 5 {
		t.Fatalf("after the minute: %v, %d held back; want 5", ok, held)
	}
	// Past maxRateKeys, new keys share one line.
	for i := range 2 * maxRateKeys {
		allow(fmt.Sprint("k", i), 0)
	}
	if len(r.keys) > maxRateKeys+1 {
		t.Fatalf("%d keys tracked", len(r.keys))
	}

	// log adds the count as a field, and none when nothing was held back.
	r = newRateLog(time.Minute)
	var fields [][]zap.Field
	emit := func(f zap.Field) { fields = append(fields, []zap.Field{f}) }
	r.log("c", t0, emit)
	r.log("c", t0, emit)
	r.log("c", t0.Add(time.Minute), emit)
	if len(fields) != 2 || fields[0][0] != zap.Skip() || fields[1][0] != zap.Uint64("suppressed", 1) {
		t.Fatalf("fields %v", fields)
	}
}
