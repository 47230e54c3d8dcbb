package swarm

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Two feeders split the origin's pieces between them; two more nodes never
// touch the origin. The origin sends the bundle about once, and everyone
// ends with all of it.
func TestOriginFeedersSendEachPieceOnce(t *testing.T) {
	checkFeeders(t, 8<<20, testTimeout)
}

// checkFeeders fetches a bundle of size to two feeders, each taking half
// the pieces from the origin, and two nodes that never touch the origin,
// within timeout.
func checkFeeders(t *testing.T, size int64, timeout time.Duration) {
	t.Helper()
	b := newBundle(t, size)
	origin := newOrigin(t, b, Config{})
	const n = 4
	nodes := make([]*Client, n)
	addrs := make([]string, n)
	for i := range nodes {
		nodes[i] = newClient(t, Config{DisablePEX: true})
		addrs[i] = nodes[i].Addr()
	}
	uses := []OriginUse{{Share: 0, Of: 2}, {Share: 1, Of: 2}, {Fallback: time.Minute}, {Fallback: time.Minute}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range nodes {
		wg.Go(func() {
			errs[i] = c.FetchWith(ctx, b.m, Sources{Origins: []string{origin.Addr()}, Peers: addrs}, uses[i])
		})
	}
	wg.Wait()
	for i, c := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d (%+v): %v", i, uses[i], errs[i])
		}
		checkFetched(t, c, b)
		s := c.Stats()
		if uses[i].Of == 0 && s.BytesFromOrigin != 0 {
			t.Errorf("node %d is no feeder but got %d bytes from the origin", i, s.BytesFromOrigin)
		}
		if uses[i].Of > 0 && s.BytesFromOrigin > b.m.BundleSize/2+2*b.m.PieceLength {
			t.Errorf("feeder %d got %d bytes from the origin, more than its half share", i, s.BytesFromOrigin)
		}
	}
	sent := origin.Stats().BytesSent
	t.Logf("origin sent %.2f copies of %d bytes", float64(sent)/float64(b.m.BundleSize), b.m.BundleSize)
	if sent > b.m.BundleSize+4*b.m.PieceLength {
		t.Errorf("origin sent %d bytes for a %d-byte bundle: more than about one copy", sent, b.m.BundleSize)
	}
}

// A node kept off the origin that gets nothing from peers turns to the
// origin once Fallback has passed without progress.
func TestOriginFallbackAfterStall(t *testing.T) {
	b := newBundle(t, 1<<20)
	origin := newOrigin(t, b, Config{})
	c := newClient(t, Config{DisablePEX: true})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// The only peer has nothing; the origin is known but held back.
	empty := newClient(t, Config{})
	src := Sources{Origins: []string{origin.Addr()}, Peers: []string{empty.Addr()}}
	start := time.Now()
	if err := c.FetchWith(ctx, b.m, src, OriginUse{Fallback: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, c, b)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("fetched in %v, before the fallback could open the origin", took)
	}
	if s := c.Stats(); s.BytesFromOrigin != b.m.BundleSize {
		t.Errorf("stats %+v: want the whole bundle from the origin", s)
	}
}

// While the rest of the swarm makes progress, or has nothing yet, a node
// whose own peers have nothing waits rather than asking the origin; once the
// swarm stops (or starveLimit fallbacks pass with nothing), the fallback
// opens the origin.
func TestSwarmProgressHoldsOffFallback(t *testing.T) {
	const fallback = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		// progress is the swarm's progress at d after the fetch started.
		progress func(d time.Duration) float64
		// wait is how long the fetch must hold off the origin.
		wait time.Duration
	}{
		{"rising for 2s", func(d time.Duration) float64 { return min(d, 2*time.Second).Seconds() }, 2 * time.Second},
		{"nothing yet", func(time.Duration) float64 { return 0 }, starveLimit * fallback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t, 1<<20)
			origin := newOrigin(t, b, Config{})
			c := newClient(t, Config{DisablePEX: true})
			empty := newClient(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			start := time.Now()
			var asked atomic.Int64
			use := OriginUse{Fallback: fallback, SwarmProgress: func() float64 {
				asked.Add(1)
				return tc.progress(time.Since(start))
			}}
			src := Sources{Origins: []string{origin.Addr()}, Peers: []string{empty.Addr()}}
			if err := c.FetchWith(ctx, b.m, src, use); err != nil {
				t.Fatal(err)
			}
			checkFetched(t, c, b)
			if took := time.Since(start); took < tc.wait {
				t.Errorf("fetched in %v, before the swarm stopped", took)
			}
			if s := c.Stats(); s.BytesFromOrigin != b.m.BundleSize {
				t.Errorf("stats %+v: want the whole bundle from the origin", s)
			}
			if n := asked.Load(); n < 2 {
				t.Errorf("SwarmProgress asked %d times", n)
			}
		})
	}
}

// A starved node asks the origin in pulses, not until it is done: one stuck
// node must not pull a whole copy while its peers could still feed it.
func TestFallbackPulses(t *testing.T) {
	b := newBundle(t, 1<<20)
	origin := newOrigin(t, b, Config{UploadRate: 512 << 10})
	c, logs := newWatchedClient(t, Config{DisablePEX: true})
	empty := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	src := Sources{Origins: []string{origin.Addr()}, Peers: []string{empty.Addr()}}
	if err := c.FetchWith(ctx, b.m, src, OriginUse{Fallback: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, c, b)
	// Two seconds of origin time at 512 KiB/s, in pulses of a quarter
	// second (policyInterval) at most.
	if n := logs.FilterMessageSnippet("asking the origin").Len(); n < 3 {
		t.Errorf("the origin opened %d times; want a pulse at a time", n)
	}
	if s := c.Stats(); s.BytesFromOrigin != b.m.BundleSize {
		t.Errorf("stats %+v: want the whole bundle from the origin", s)
	}
}

func TestOriginUseValidate(t *testing.T) {
	for _, u := range []OriginUse{{Share: 2, Of: 2}, {Share: -1, Of: 2}, {Of: -1}, {Fallback: -time.Second}} {
		if err := u.validate(); err == nil {
			t.Errorf("%+v accepted", u)
		}
	}
	for _, u := range []OriginUse{{}, {Share: 1, Of: 2}, {Fallback: time.Second}} {
		if err := u.validate(); err != nil {
			t.Errorf("%+v: %v", u, err)
		}
	}
}

// A slow peer that holds what the node lacks is not a stall: the node
// waits for it rather than turning to the origin, even though pieces come
// slower than the fallback period.
func TestSlowPeerIsNoStall(t *testing.T) {
	b := newBundle(t, 1<<20)
	origin := newOrigin(t, b, Config{})
	slow := newClient(t, Config{UploadRate: 256 << 10})
	store(t, slow.cfg.Dir, b)
	if err := slow.Seed(b.m); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, Config{DisablePEX: true})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	src := Sources{Origins: []string{origin.Addr()}, Peers: []string{slow.Addr()}}
	if err := c.FetchWith(ctx, b.m, src, OriginUse{Fallback: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, c, b)
	if s := c.Stats(); s.BytesFromOrigin != 0 || s.BytesFromPeers != b.m.BundleSize {
		t.Errorf("stats %+v: want the whole bundle from the slow peer, nothing from the origin", s)
	}
}
