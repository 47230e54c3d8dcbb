package sim

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/bench"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// scenarios are small parameter sets, each bound by a different term of
// T*, that the property tests run through.
var scenarios = []struct {
	name string
	cfg  Config
}{
	{"one node", Config{Params: bench.Params{Nodes: 1, SizeBytes: 8 * MiB, NodeUp: 10 * MiB, NodeDown: 10 * MiB, OriginUp: 40 * MiB}}},
	// Broadcast gossip only: a rumour reaches both nodes at the same time
	// whatever the seed.
	{"two nodes", Config{Params: bench.Params{Nodes: 2, SizeBytes: 8 * MiB, NodeUp: 10 * MiB, NodeDown: 10 * MiB, OriginUp: 40 * MiB}, Gossip: GossipModel{RumourFanout: -1}}},
	// F/u_s: a slow origin and fast nodes.
	{"origin bound", Config{Params: bench.Params{Nodes: 20, SizeBytes: 16 * MiB, NodeUp: 100 * MiB, NodeDown: 100 * MiB, OriginUp: 2 * MiB}}},
	// F/d_min: slow downlinks, everything else fast.
	{"download bound", Config{Params: bench.Params{Nodes: 30, SizeBytes: 16 * MiB, NodeUp: 100 * MiB, NodeDown: 4 * MiB, OriginUp: 100 * MiB}}},
	// N·F/(u_s+Σu_i): slow uplinks.
	{"upload bound", Config{Params: bench.Params{Nodes: 150, SizeBytes: 32 * MiB, NodeUp: 2 * MiB, NodeDown: 100 * MiB, OriginUp: 20 * MiB}}},
	// More nodes than connection slots, odd sizes, a piece count that is
	// not a power of two, four chunks per piece.
	{"odd sizes", Config{Params: bench.Params{Nodes: 120, SizeBytes: 5*MiB + 12345, PieceLength: 256 * KiB, NodeUp: 8 * MiB, NodeDown: 12 * MiB, OriginUp: 30 * MiB, MaxConns: 8, MaxPeers: 5, Seed: 7}, MaxRequests: 4}},
	// Grouped pieces and a tiny origin connection cap.
	{"grouped pieces", Config{Params: bench.Params{Nodes: 60, SizeBytes: 64 * MiB, PieceLength: 64 * KiB, NodeUp: 20 * MiB, NodeDown: 20 * MiB, OriginUp: 40 * MiB, Seed: 3}, MaxSimPieces: 100, OriginMaxConns: 2}},
	// Long enough (slow links) for anacrolix's one-minute connection
	// replacement to take part, and few enough connection slots that nodes
	// fill theirs.
	{"slow and long", Config{Params: bench.Params{Nodes: 40, SizeBytes: 8 * MiB, NodeUp: 64 * KiB, NodeDown: 256 * KiB, OriginUp: 256 * KiB, MaxPeers: 3, MaxConns: 8, Seed: 11}, OriginMaxConns: 2}},
	// The origin policy: feeders take shares, everyone else peers only.
	{"feeders", Config{Params: bench.Params{Nodes: 150, SizeBytes: 32 * MiB, NodeUp: 2 * MiB, NodeDown: 100 * MiB, OriginUp: 20 * MiB, OriginFeeders: 8, Seed: 5}}},
	{"one feeder", Config{Params: bench.Params{Nodes: 30, SizeBytes: 5*MiB + 777, PieceLength: 256 * KiB, NodeUp: 4 * MiB, NodeDown: 8 * MiB, OriginUp: 8 * MiB, OriginFeeders: 1, MaxPeers: 4, Seed: 9}}},
	{"more feeders than nodes", Config{Params: bench.Params{Nodes: 3, SizeBytes: 8 * MiB, NodeUp: 10 * MiB, NodeDown: 10 * MiB, OriginUp: 40 * MiB, OriginFeeders: 5}}},
}

func run(t *testing.T, cfg Config) (bench.Result, *engine) {
	t.Helper()
	res, e, err := simulate(context.Background(), cfg, nil, runOptions{check: true})
	if err != nil {
		t.Fatalf("simulate: %v", err)
	}
	return res, e
}

// TestBytesConserved checks that every node receives the bundle exactly
// once: useful bytes per node are F, origin and peer bytes add up to N×F,
// and no piece completes twice at a node.
func TestBytesConserved(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			res, e := run(t, sc.cfg)
			n, f := int64(sc.cfg.Nodes), sc.cfg.SizeBytes
			var sum int64
			for v, h := range e.hot {
				got := h.recv
				if got != f {
					t.Errorf("node %d received %d useful bytes, want %d", v, got, f)
				}
				sum += got
			}
			if sum != n*f {
				t.Errorf("nodes received %d bytes in all, want N×F = %d", sum, n*f)
			}
			if got := res.OriginBytes + res.PeerBytes; got != n*f {
				t.Errorf("origin %d + peer %d bytes = %d, want N×F = %d", res.OriginBytes, res.PeerBytes, got, n*f)
			}
			if res.DuplicateBytes != 0 {
				t.Errorf("duplicate bytes %d, the model has none", res.DuplicateBytes)
			}
			for k, c := range e.receipts {
				if c != 1 {
					t.Fatalf("node %d completed piece %d %d times, want once", k/e.pieces, k%e.pieces, c)
				}
			}
		})
	}
}

// TestBounds checks the Kumar–Ross bound and the origin's floor: no run
// completes before T*, and the origin sends every byte at least once.
func TestBounds(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			res, _ := run(t, sc.cfg)
			if res.TStarS <= 0 {
				t.Fatalf("T* = %v", res.TStarS)
			}
			if res.CompletionS < res.TStarS*(1-1e-9) {
				t.Errorf("completion %.6fs beats T* %.6fs", res.CompletionS, res.TStarS)
			}
			// Every node, not only the last, needs F/d at least.
			if first := res.Completions[0]; first < float64(sc.cfg.SizeBytes)/float64(sc.cfg.NodeDown)*(1-1e-9) {
				t.Errorf("first node completed at %.6fs, before F/d_min", first)
			}
			if res.OriginBytes < sc.cfg.SizeBytes {
				t.Errorf("origin sent %d bytes, less than the bundle (%d)", res.OriginBytes, sc.cfg.SizeBytes)
			}
		})
	}
}

// TestFeedersSendOneCopy checks the origin policy: with feeders the origin
// sends every piece exactly once.
func TestFeedersSendOneCopy(t *testing.T) {
	for _, sc := range scenarios {
		if sc.cfg.OriginFeeders == 0 {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			res, _ := run(t, sc.cfg)
			if res.OriginBytes != sc.cfg.SizeBytes {
				t.Errorf("origin sent %d bytes, want exactly the bundle (%d)", res.OriginBytes, sc.cfg.SizeBytes)
			}
		})
	}
}

func TestResultFields(t *testing.T) {
	cfg := scenarios[4].cfg
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != bench.KindSim {
		t.Errorf("kind %q", res.Kind)
	}
	if res.Params.Nodes != cfg.Nodes || res.Params.PieceLength == 0 || res.Params.MaxPeers != 20 || res.Params.MaxConns != 50 {
		t.Errorf("params not filled in: %+v", res.Params)
	}
	if len(res.Completions) != cfg.Nodes || !slices.IsSorted(res.Completions) || res.Completions[0] <= 0 {
		t.Errorf("completions: %d, sorted %v, first %v", len(res.Completions), slices.IsSorted(res.Completions), res.Completions[0])
	}
	if res.CompletionS != res.Completions[len(res.Completions)-1] || res.CompletionRatio < 1 || res.OriginEgressRatio < 1 {
		t.Errorf("derived fields not filled in: %+v", res)
	}
	if res.Gossip99S <= 0 || res.Gossip99S > res.Gossip100S {
		t.Errorf("gossip p99 %v p100 %v", res.Gossip99S, res.Gossip100S)
	}
	if res.Gossip100S > res.Completions[0] {
		t.Errorf("gossip reached everyone at %v, after the first completion %v", res.Gossip100S, res.Completions[0])
	}
	if res.WallS <= 0 || res.Notes == "" {
		t.Errorf("wall %v notes %q", res.WallS, res.Notes)
	}
}

func TestDeterministic(t *testing.T) {
	for _, sc := range []int{1, 4, 5, 6} {
		cfg := scenarios[sc].cfg
		t.Run(scenarios[sc].name, func(t *testing.T) {
			a, _ := run(t, cfg)
			b, _ := run(t, cfg)
			if !slices.Equal(a.Completions, b.Completions) || a.OriginBytes != b.OriginBytes || a.PeerBytes != b.PeerBytes || a.Gossip100S != b.Gossip100S {
				t.Fatalf("same seed, different results:\n%v %d\n%v %d", a.Completions, a.OriginBytes, b.Completions, b.OriginBytes)
			}
			cfg.Seed++
			c, _ := run(t, cfg)
			if slices.Equal(a.Completions, c.Completions) {
				t.Errorf("seeds %d and %d gave the same completions", cfg.Seed-1, cfg.Seed)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	cfg := scenarios[4].cfg
	var calls, last int
	_, err := Run(context.Background(), cfg, func(done, total int) {
		calls++
		if total != cfg.Nodes || done < last || done > total {
			t.Errorf("progress(%d, %d) after %d", done, total, last)
		}
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 || last != cfg.Nodes {
		t.Errorf("%d progress calls, last done %d", calls, last)
	}
}

func TestCancel(t *testing.T) {
	cfg := Config{Params: bench.Params{Nodes: 3000, SizeBytes: GiB, NodeUp: 125e6, NodeDown: 125e6, OriginUp: 1250e6}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, cfg, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run past its deadline: %v, want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, cfg, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
}

// TestCancelPromptly checks that Run notices a cancellation soon, also
// before any node completes: progress is reported as the run goes.
func TestCancelPromptly(t *testing.T) {
	cfg := Config{Params: bench.Params{Nodes: 3000, SizeBytes: GiB, NodeUp: 125e6, NodeDown: 125e6, OriginUp: 1250e6}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	_, err := Run(ctx, cfg, func(done, total int) {
		if cancelled.IsZero() {
			cancelled = time.Now()
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > 2*time.Second {
		t.Errorf("took %v to notice the cancellation", d)
	}
}

func TestValidate(t *testing.T) {
	ok := bench.Params{Nodes: 10, SizeBytes: MiB, NodeUp: MiB, NodeDown: MiB, OriginUp: MiB}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		flag string
	}{
		{"zero nodes", func(c *Config) { c.Nodes = 0 }, "--nodes"},
		{"negative nodes", func(c *Config) { c.Nodes = -3 }, "--nodes"},
		{"too many nodes", func(c *Config) { c.Nodes = MaxNodes + 1 }, "--nodes"},
		{"zero size", func(c *Config) { c.SizeBytes = 0 }, "--size"},
		{"absurd size", func(c *Config) { c.SizeBytes = 1 << 60 }, "--size"},
		{"size × nodes overflows", func(c *Config) { c.SizeBytes, c.Nodes = MaxSize, 100_000 }, "--size"},
		{"negative piece length", func(c *Config) { c.PieceLength = -1 }, "--piece-length"},
		{"zero node up", func(c *Config) { c.NodeUp = 0 }, "--node-up"},
		{"zero node down", func(c *Config) { c.NodeDown = 0 }, "--node-down"},
		{"zero origin up", func(c *Config) { c.OriginUp = 0 }, "--origin-up"},
		{"negative rate", func(c *Config) { c.NodeUp = -5 }, "--node-up"},
		{"negative max peers", func(c *Config) { c.MaxPeers = -1 }, "--max-peers"},
		{"too many conns", func(c *Config) { c.MaxConns = 1000 }, "--max-conns"},
		{"negative origin conns", func(c *Config) { c.OriginMaxConns = -1 }, "--origin-max-conns"},
		{"negative requests", func(c *Config) { c.MaxRequests = -1 }, "--max-requests"},
		{"too many requests", func(c *Config) { c.MaxRequests = 1000 }, "--max-requests"},
		{"too many sim pieces", func(c *Config) { c.MaxSimPieces = 1 << 20 }, "--sim-pieces"},
		{"negative gossip interval", func(c *Config) { c.Gossip.Interval = -time.Second }, "--gossip-interval"},
		{"negative fanout", func(c *Config) { c.Gossip.Fanout = -1 }, "--gossip-fanout"},
		{"negative latency", func(c *Config) { c.Gossip.Latency = -time.Millisecond }, "--gossip-latency"},
		{"negative push/pull", func(c *Config) { c.Gossip.PushPull = -time.Second }, "--push-pull-interval"},
		{"negative refresh", func(c *Config) { c.PeerRefresh = -time.Second }, "--peer-refresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Params: ok}
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.flag)
			}
			if _, err := Run(context.Background(), c, nil); err == nil {
				t.Fatal("Run accepted what Validate refuses")
			}
		})
	}

	c := Config{Params: ok}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PieceLength != 256*KiB || c.MaxPeers != 20 || c.MaxConns != 50 || c.OriginMaxConns != 50 ||
		c.MaxRequests != DefaultMaxRequests || c.MaxSimPieces != DefaultMaxSimPieces ||
		c.Gossip.Interval != 200*time.Millisecond || c.Gossip.Fanout != 3 || c.Gossip.Latency != time.Millisecond ||
		c.Gossip.PushPull != 30*time.Second || c.PeerRefresh != time.Second {
		t.Errorf("defaults not filled in: %+v", c)
	}
}

func TestSimPieces(t *testing.T) {
	for _, tc := range []struct {
		size, piece int64
		limit       int
		pieces      int
		length      int64
	}{
		{GiB, 512 * KiB, 512, 512, 2 * MiB},         // 2048 real pieces, grouped by 4
		{GiB, 512 * KiB, 2048, 2048, 512 * KiB},     // not grouped
		{64 * MiB, 256 * KiB, 512, 256, 256 * KiB},  // under the bound
		{5*MiB + 1, 256 * KiB, 512, 21, 256 * KiB},  // a short last piece
		{5*MiB + 1, 256 * KiB, 7, 7, 3 * 256 * KiB}, // grouped by 3
		{100, 256 * KiB, 512, 1, 100},               // smaller than a piece
		{3 * GiB, 16 * MiB, 100, 96, 2 * 16 * MiB},  // 192 real pieces, grouped by 2
	} {
		c := Config{Params: bench.Params{SizeBytes: tc.size, PieceLength: tc.piece}, MaxSimPieces: tc.limit}
		pieces, length, last := c.simPieces()
		if pieces != tc.pieces || length != tc.length || int64(pieces-1)*length+last != tc.size || last <= 0 || last > length {
			t.Errorf("size %d piece %d limit %d: %d pieces of %d, last %d; want %d of %d",
				tc.size, tc.piece, tc.limit, pieces, length, last, tc.pieces, tc.length)
		}
	}
}

func TestChunks(t *testing.T) {
	e := &engine{r: 3, pieces: 4, pieceSize: 10, lastSize: 2}
	for p := range 4 {
		var sum int64
		for k := range e.chunks(p) {
			sum += e.chunkSize(p, k)
		}
		if sum != e.size(p) {
			t.Errorf("piece %d: chunks add up to %d, want %d", p, sum, e.size(p))
		}
	}
	if e.chunks(0) != 3 || e.chunks(3) != 2 {
		t.Errorf("chunks: %d and %d", e.chunks(0), e.chunks(3))
	}
}

// TestPiecePermutation checks that every node's piece order is a
// permutation and that pieceAt inverts pos.
func TestPiecePermutation(t *testing.T) {
	for _, pieces := range []int{1, 2, 3, 7, 64, 100, 512} {
		cfg := Config{Params: bench.Params{Nodes: 5, SizeBytes: int64(pieces) * 1000, PieceLength: 1000, NodeUp: 1, NodeDown: 1, OriginUp: 1}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		p, length, last := cfg.simPieces()
		e := newEngine(engineParams{nodes: 5, pieces: p, maxRequests: 2, maxConns: 4, originConns: 4, maxPeers: 2,
			pieceSize: length, lastSize: last, nodeUp: 1, nodeDown: 1, originUp: 1, refresh: 1, accept: make([]float64, 5), spread: make([]float64, 5)},
			rand.New(rand.NewPCG(uint64(pieces), 1)))
		for v := range int32(5) {
			seen := make([]bool, p)
			for q := range p {
				i := e.pos(v, q)
				if seen[i] {
					t.Fatalf("%d pieces, node %d: position %d twice", p, v, i)
				}
				seen[i] = true
				if e.pieceAt(v, i) != q {
					t.Fatalf("%d pieces, node %d: pieceAt(pos(%d)) = %d", p, v, q, e.pieceAt(v, i))
				}
			}
		}
	}
}

// TestReplacement checks that in a run longer than anacrolix's one-minute
// grace, full members drop idle connections for new ones, and that the
// run still conserves bytes (covered by TestBytesConserved).
func TestReplacement(t *testing.T) {
	res, e := run(t, scenarios[7].cfg)
	if res.CompletionS < 2*connProveTime {
		t.Fatalf("run took %.0fs, too short to test replacement", res.CompletionS)
	}
	if e.replaced == 0 {
		t.Error("no connection was ever replaced")
	}
}

// TestOriginConnsMatter checks a policy knob has the effect it should: an
// origin that serves fewer connections at once sends less.
func TestOriginConnsMatter(t *testing.T) {
	cfg := Config{Params: bench.Params{Nodes: 100, SizeBytes: 32 * MiB, NodeUp: 10 * MiB, NodeDown: 10 * MiB, OriginUp: 100 * MiB, Seed: 5}}
	wide, _ := run(t, cfg)
	cfg.OriginMaxConns = 2
	narrow, _ := run(t, cfg)
	if narrow.OriginBytes >= wide.OriginBytes {
		t.Errorf("origin egress with 2 connections %d, with 50 %d: want less", narrow.OriginBytes, wide.OriginBytes)
	}
	if math.IsNaN(narrow.CompletionRatio) || narrow.CompletionRatio < 1 {
		t.Errorf("ratio %v", narrow.CompletionRatio)
	}
}

func BenchmarkRun5000(b *testing.B) {
	cfg := Config{Params: bench.Params{Nodes: 5000, SizeBytes: GiB, NodeUp: 125e6, NodeDown: 125e6, OriginUp: 1250e6, Seed: 1}}
	for b.Loop() {
		res, err := Run(context.Background(), cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.CompletionRatio, "completion_ratio")
		b.ReportMetric(res.OriginEgressRatio, "origin_egress_ratio")
	}
}

// testEngine is a bare engine of n nodes with 1000-byte pieces, one request
// per node and a slot rate equal to a node's upload (one upload saturates
// it), for tests that set up its state by hand.
func testEngine(n, pieces, maxPeers int) *engine {
	accept := make([]float64, n)
	return newEngine(engineParams{nodes: n, pieces: pieces, maxRequests: 1, maxConns: 50, originConns: 50, maxPeers: maxPeers,
		pieceSize: 1000, lastSize: 1000, nodeUp: 1000, nodeDown: 1000, originUp: 1000, refresh: 1, accept: accept, spread: accept, feeders: 1},
		rand.New(rand.NewPCG(1, 2)))
}

// link connects nodes i and j without starting any transfer.
func link(e *engine, i, j int32) {
	si, sj := e.freeSlot(i), e.freeSlot(j)
	oi, oj := int32(e.slotOff(i))+si, int32(e.slotOff(j))+sj
	e.peer[oi], e.other[oi] = j, sj
	e.peer[oj], e.other[oj] = i, si
	e.nconn[i]++
	e.nconn[j]++
}

// give records that node v holds piece p, without announcing it.
func give(e *engine, v int32, p int) {
	e.have[int(v)*e.hw+p>>6] |= 1 << (p & 63)
	e.hot[v].haveN++
}

// TestPickFree checks piece selection against a crowd: node 0 starts the
// rarest piece its connections have (piece 0, at node 1 only) while its
// holder has upload to spare, and otherwise a piece (1) that a connection
// with upload to spare has, instead of queueing at the saturated holder.
func TestPickFree(t *testing.T) {
	for _, saturated := range []bool{false, true} {
		e := testEngine(4, 4, 3)
		for v := range int32(4) {
			e.hot[v].state = stDownloading
		}
		give(e, 1, 0)
		give(e, 2, 1)
		give(e, 3, 1)
		for v := range int32(3) {
			link(e, 0, v+1)
		}
		if saturated {
			e.full[0] |= 1 << 1 // as if node 1 were uploading at its cap
			e.nup[1] = 1
		}
		e.fill(0)
		ups := []int32{e.up[1].n, e.up[2].n, e.up[3].n}
		got := e.fl[0].piece
		switch {
		case !saturated && (got != 0 || ups[0] != 1):
			t.Errorf("holder free: node 0 fetches piece %d, uploads at nodes 1-3 %v; want piece 0 from node 1", got, ups)
		case saturated && (got != 1 || ups[0] != 0 || ups[1]+ups[2] != 1):
			t.Errorf("holder saturated: node 0 fetches piece %d, uploads at nodes 1-3 %v; want piece 1 from node 2 or 3", got, ups)
		}
	}
}

// TestDialAll checks the peer lists: a node is handed every advertiser and,
// up to MaxPeers, members that do not advertise the release yet; it
// connects to those that have started (their state has not spread yet)
// and not to those that have not.
func TestDialAll(t *testing.T) {
	const n, maxPeers, advertised = 30, 8, 5
	e := testEngine(n, 4, maxPeers)
	for k := range e.advT {
		if k >= advertised {
			e.advT[k] = 100
		}
	}
	adv := e.adv[:advertised]
	for v := range int32(n) {
		e.hot[v].state = stDownloading
	}
	i := e.adv[advertised] // not a feeder: node 0 is
	if i == 0 {
		i = e.adv[advertised+1]
	}
	e.peerRefresh(i)
	for _, j := range adv {
		if !e.connected(i, j) {
			t.Errorf("node %d is not connected to advertiser %d", i, j)
		}
	}
	if got := int(e.nconn[i]); got != maxPeers {
		t.Errorf("node %d has %d connections after one refresh, want MaxPeers = %d", i, got, maxPeers)
	}

	// A node that has not started is handed, and refused.
	e = testEngine(3, 4, 2)
	e.advT[0], e.advT[1], e.advT[2] = 100, 100, 100
	e.hot[0].state, e.hot[1].state = stDownloading, stDownloading
	e.peerRefresh(0)
	if !e.connected(0, 1) || e.connected(0, 2) || e.nconn[2] != 0 {
		t.Errorf("connections 0-1 %v, 0-2 %v (node 2 has %d); want 0-1 only", e.connected(0, 1), e.connected(0, 2), e.nconn[2])
	}
}
