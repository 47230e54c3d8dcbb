package sim

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Node states.
const (
	stWaiting     uint8 = iota // has not accepted the desired state yet
	stDownloading              // fetching
	stComplete                 // has every piece; seeds
)

// Misc event kinds.
const (
	mStart   uint8 = iota // a node accepts the desired state
	mRefresh              // a downloading node hands its fetch fresh peers
)

const (
	// connProveTime is anacrolix's grace period: a connection younger than
	// this is never dropped to make room for another.
	connProveTime = 60.0
	// replaceRetry is how long a full member that found nothing to drop
	// waits before looking again.
	replaceRetry = 0.1
	// stallTime ends a run in which no transfer has been active for this
	// long: the connection graph can no longer make progress.
	stallTime = 3600.0
	// ctxCheckEvery is how many events pass between context checks.
	ctxCheckEvery = 1 << 12
	// progressEvery is how many events pass between progress reports,
	// besides one per percent of nodes complete.
	progressEvery = 1 << 18

	// maxLevel is where availability saturates: pieces that this many or
	// more connections have rank alike.
	maxLevel = 14
)

// nodeHot is what the inner loops touch of a node, two to a cache line.
type nodeHot struct {
	state  uint8
	active int16 // chunks in flight to it
	seeds  int16 // connected members that had every piece when connected
	haveN  int32 // pieces it has
	// first is a position in the node's piece order before which every
	// piece is one it has, fetches, or (a feeder on the origin) leaves to
	// others: firstIn starts there.
	first int32
	recv  int64 // useful bytes received
}

// uploader is one member's upload side: processor sharing with a virtual
// clock. Each of its n uploads progresses at rate(m, n) bytes/s; vclock is
// the bytes each has progressed since the start, as of vtime. Its uploads
// are a min-heap by the vclock value at which they complete (see queue):
// up to two live in the uploader itself, so that an uploader is one cache
// line; past two, the heap moves to e.spill[spill-1] (the origin's and
// saturated nodes'), and back when one is left.
type uploader struct {
	vclock, vtime float64
	n             int32
	spill         int32
	inline        [2]upload
	_             [8]byte // 64 bytes: uploaders do not straddle lines
}

// upload is one chunk in flight: chunk of piece to down, in the
// downloader's connection slot downSlot.
type upload struct {
	vfin     float64
	down     int32
	piece    uint16 // maxSimPiecesLimit
	downSlot uint8  // maxConnsLimit
	chunk    uint8  // maxRequestsLimit
}

// flight is a piece a node is fetching: the next chunk to request and how
// many chunks it still waits for.
type flight struct {
	piece, next, left int32
}

// slotMeta is what replacement and learn/forget need of a connection end;
// the time of the last chunk over it is kept apart (help), as every chunk
// writes it.
type slotMeta struct {
	since float64 // handshake
	seed  bool    // the peer was complete when connected: counted in seeds
}

// slotMask has a bit per connection slot of a node.
type slotMask [maxConnsLimit/64 + 1]uint64

// openConn is a connection replace ranks.
type openConn struct {
	help  float32
	since float64
	slot  int32
}

// engine is the piece-level simulation of one publish. Members 0..n-1 are
// nodes and member n is the origin. Times are seconds since publish.
type engine struct {
	n, pieces, r int
	origin       int32
	feeders      int     // the origin policy; see engineParams
	shareLeft    []int32 // by feeder: share pieces it does not hold yet
	pow2         bool
	pieceSize    int64 // every simulated piece but the last
	lastSize     int64
	slotRate     float64 // a download slot's cap: NodeDown / MaxRequests
	nodeUp       float64 // a node's upload cap
	originUp     float64
	refresh      float64 // seconds between peer refreshes
	maxPeers     int
	rng          *rand.Rand
	now          float64

	// Per node.
	hot      []nodeHot
	perm     []uint64 // a<<32|b: the node ranks piece p at position a·p+b mod pieces
	permInv  []uint32 // a⁻¹ mod pieces
	doneAt   []float64
	onOrigin []bool
	// starved has a bit per node that has a free download slot and nothing
	// to request; announce wakes it.
	starved []uint64
	fl      []flight // r per node; piece -1 when free
	// have holds bitfields, hw words per member (a cache line at up to
	// 512 pieces; the origin's, last, has every bit set): pick counts
	// availability from its connections' bitfields when it needs it
	// instead of keeping counts that every have message would update, and
	// source reads the same bitfields, which pick has just brought into
	// the cache.
	have []uint64
	hw   int
	tail uint64 // valid bits of a bitfield's last word
	// share holds, per feeder, the bitfield of its share.
	share []uint64
	// seedSlot has a bit per connection slot of a node whose peer had
	// every piece when connected (counted in seeds, not per piece); sw
	// words per node.
	seedSlot []uint64
	sw       int

	// Per member: connection slots, slotCap(m) of them from slotOff(m).
	// A slot holds the peer, or -1 when free, and the slot on the peer's
	// side (other). The peers are apart as the inner loops read only them.
	maxConns, originConns int
	nconn                 []int32
	peer, other           []int32
	meta                  []slotMeta
	// help is the last chunk a slot's member received over the
	// connection; the last either way is the later of both ends' (see
	// lastHelp), and a chunk writes one end.
	help   []float32
	replAt []float64 // no replacement attempt before

	up []uploader // per member
	// spill holds the upload heaps that outgrew their uploader; spillFree
	// the indices free for reuse.
	spill     [][]upload
	spillFree []int32
	// full has a bit per member whose upload one more transfer would slow
	// (n+1 > cap/slotRate): source reads it instead of the uploader.
	full []uint64
	nup  []int32  // uploads per member, as up[m].n, kept compact for source
	ups  calendar // uploaders by next upload completion
	// Uploaders whose count changed in the current event.
	dirty     []bool
	dirtyList []int32

	misc eventHeap
	adv  []int32   // nodes by the time the cluster learns they serve the release
	advT []float64 // and those times
	advK int       // how many have been advertised by now

	wake   []int32
	picked []int32
	open   []openConn // scratch space of replace
	// Scratch space of pick: where in have the bitfields it counts start,
	// their slots, the candidates, the bit-sliced counts (8 words per
	// bitfield word, planes of them used) and the slots that have the
	// piece it picked, for sourceFrom.
	pickRows  []int
	pickSlots []int32
	want      []uint64
	held      []uint64
	cand      []uint64
	count     []uint64
	planes    int
	holders   slotMask
	touched   uint64 // keeps pick's touch loop and the loads ahead
	ahead     int32  // the uploader whose line step loaded, or -1
	// sat holds, per node, hw words: the pieces that, when it last
	// counted, at least maxLevel of its connections had. Availability
	// only grows while no connection of the node closes (dropConn clears
	// its row), so these still rank alike, by the node's own order, and
	// when every candidate is among them pick need not count (fast).
	sat         []uint64
	fast        bool // pick did not count: e.pickRows and e.count are not set
	alwaysCount bool // pick never takes the shortcut (tests)
	shortcuts   int  // picks that took it

	originBytes, peerBytes int64
	done                   int
	replaced               int // connections dropped to make room
	lastBusy               float64

	receipts []uint8 // per node and piece, only when checking
	checkErr error
}

// engineParams are the resolved inputs of an engine.
type engineParams struct {
	nodes, pieces, maxRequests, maxConns, originConns, maxPeers int
	pieceSize, lastSize                                         int64
	nodeUp, nodeDown, originUp                                  float64
	refresh                                                     float64
	// accept is when each node accepts the desired state; spread is a
	// sample of how long a node's own state takes to reach the others.
	accept, spread []float64
	check          bool
	alwaysCount    bool // see engine.alwaysCount
	// feeders, when positive, is the origin policy: nodes 0..feeders-1
	// take from the origin only their share (pieces p with p mod feeders
	// equal to their index) and leave it once they hold it; no other node
	// connects to the origin.
	feeders int
}

func newEngine(p engineParams, rng *rand.Rand) *engine {
	n, P := p.nodes, p.pieces
	e := &engine{
		n: n, pieces: P, r: p.maxRequests, origin: int32(n),
		pow2:      P&(P-1) == 0,
		pieceSize: p.pieceSize, lastSize: p.lastSize,
		slotRate: p.nodeDown / float64(p.maxRequests),
		nodeUp:   p.nodeUp, originUp: p.originUp,
		refresh: p.refresh, maxPeers: p.maxPeers, rng: rng,
	}
	e.feeders = min(p.feeders, n)
	e.shareLeft = make([]int32, e.feeders)
	e.hot = make([]nodeHot, n)
	e.perm = make([]uint64, n+1) // the origin's is read, never used
	e.permInv = make([]uint32, n)
	e.doneAt = make([]float64, n)
	e.starved = make([]uint64, (n+63)/64)
	e.onOrigin = make([]bool, n)
	e.fl = make([]flight, n*e.r)
	for i := range e.fl {
		e.fl[i].piece = -1
	}
	e.hw = (P + 63) / 64
	e.tail = ^uint64(0) >> (e.hw*64 - P)
	e.have = make([]uint64, (n+1)*e.hw)
	for w := range e.hw {
		e.have[n*e.hw+w] = ^uint64(0) // the origin holds everything
	}
	for v := range n {
		a := randomUnit(rng, P)
		e.perm[v] = uint64(a)<<32 | uint64(rng.IntN(P))
		e.permInv[v] = uint32(modInverse(a, P))
	}

	// A feeder wants only its share until it holds it.
	e.share = make([]uint64, e.feeders*e.hw)
	for f := range e.feeders {
		for q := f; q < P; q += e.feeders {
			e.share[f*e.hw+q>>6] |= 1 << (q & 63)
			e.shareLeft[f]++
		}
	}

	members := n + 1
	e.maxConns, e.originConns = p.maxConns, p.originConns
	e.sw = (p.maxConns + 63) / 64
	e.seedSlot = make([]uint64, n*e.sw)
	e.pickRows = make([]int, 0, p.maxConns)
	e.pickSlots = make([]int32, 0, p.maxConns)
	e.want = make([]uint64, e.hw)
	e.sat = make([]uint64, n*e.hw)
	e.alwaysCount = p.alwaysCount
	e.held = make([]uint64, e.hw)
	e.cand = make([]uint64, e.hw)
	e.planes = bits.Len(uint(p.maxConns))
	e.count = make([]uint64, 8*e.hw)
	e.nconn = make([]int32, members)
	total := n*p.maxConns + p.originConns
	e.peer = make([]int32, total)
	for i := range e.peer {
		e.peer[i] = -1
	}
	e.other = make([]int32, total)
	e.meta = make([]slotMeta, total)
	e.help = make([]float32, total)
	e.replAt = make([]float64, members)

	e.up = make([]uploader, members)
	e.full = make([]uint64, (members+63)/64)
	e.nup = make([]int32, members)
	// A chunk at the slot rate: how far ahead most completions lie.
	e.ahead = -1
	e.ups = newCalendar(members, float64(e.pieceSize)/float64(e.chunks(0))/e.slotRate)
	e.dirty = make([]bool, members)

	// Nodes start when they accept the desired state; the others learn that
	// a node serves the release when its own state change has spread: a
	// delay drawn from a broadcast's spread (no rumour carries node states).
	e.adv = make([]int32, n)
	advAt := make([]float64, n)
	for v := range n {
		e.adv[v] = int32(v)
		advAt[v] = p.accept[v] + p.spread[rng.IntN(n)]
		e.misc.push(event{t: p.accept[v], node: int32(v), kind: mStart})
	}
	slices.SortStableFunc(e.adv, func(x, y int32) int { return cmp.Compare(advAt[x], advAt[y]) })
	e.advT = make([]float64, n)
	for i, v := range e.adv {
		e.advT[i] = advAt[v]
	}
	if p.check {
		e.receipts = make([]uint8, n*P)
	}
	return e
}

// randomUnit returns a random a in [1, m) coprime with m (1 when m <= 2).
func randomUnit(rng *rand.Rand, m int) int {
	if m <= 2 {
		return 1
	}
	for {
		if a := 1 + rng.IntN(m-1); gcd(a, m) == 1 {
			return a
		}
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// modInverse returns x with a·x ≡ 1 (mod m), for a coprime with m.
func modInverse(a, m int) int {
	if m == 1 {
		return 0
	}
	t, newT, r, newR := 0, 1, m, a
	for newR != 0 {
		q := r / newR
		t, newT = newT, t-q*newT
		r, newR = newR, r-q*newR
	}
	if t < 0 {
		t += m
	}
	return t
}

// upCap is member m's upload rate, as up[m].cap, without loading the
// uploader.
func (e *engine) upCap(m int32) float64 {
	if m == e.origin {
		return e.originUp
	}
	return e.nodeUp
}

// slotOff is where member m's connection slots start.
func (e *engine) slotOff(m int32) int {
	return int(m) * e.maxConns
}

// slotCap is how many connection slots member m has.
func (e *engine) slotCap(m int32) int {
	if m == e.origin {
		return e.originConns
	}
	return e.maxConns
}

// lastHelp is the time of the last chunk either way over the connection
// in member m's slot s.
func (e *engine) lastHelp(m, s int32) float32 {
	o := e.slotOff(m) + int(s)
	return max(e.help[o], e.help[e.slotOff(e.peer[o])+int(e.other[o])])
}

// pos is where node v keeps piece p in its availability nibbles.
func (e *engine) pos(v int32, p int) int {
	pm := e.perm[v]
	x := uint32(pm>>32)*uint32(p) + uint32(pm)
	if e.pow2 {
		return int(x & uint32(e.pieces-1))
	}
	return int(x % uint32(e.pieces))
}

// pieceAt is the piece node v keeps at position i.
func (e *engine) pieceAt(v int32, i int) int {
	x := e.permInv[v] * (uint32(i) + uint32(e.pieces) - uint32(e.perm[v]))
	if e.pow2 {
		return int(x & uint32(e.pieces-1))
	}
	return int(x % uint32(e.pieces))
}

func (e *engine) size(p int) int64 {
	if p == e.pieces-1 {
		return e.lastSize
	}
	return e.pieceSize
}

// chunks is how many chunks piece p is fetched in: one per download slot,
// fewer only for a piece shorter than that many bytes.
func (e *engine) chunks(p int) int {
	return int(min(int64(e.r), e.size(p)))
}

// chunkSize is the length of chunk k of piece p; the chunks of a piece
// differ by at most a byte and add up to the piece.
func (e *engine) chunkSize(p, k int) int64 {
	size, c := e.size(p), int64(e.chunks(p))
	n := size / c
	if int64(k) < size%c {
		n++
	}
	return n
}

// pick chooses node d's next piece by rarest first: the lowest
// availability among its connections (members that had everything when
// they connected count for every piece; counts saturate at maxLevel),
// ties broken by d's own random piece order, as anacrolix orders requests
// (availability, then a per-torrent random permutation). It leaves in
// e.holders the slots of d whose peers have the piece, for sourceFrom, and
// its candidates (e.want) and counts (e.count) for pickFree.
//
// Availability is counted here, from the bitfields of d's connections,
// rather than kept up to date by every have message: a node picks a piece
// once per piece it gets, while each piece it gets is a have message to
// every connection. The counts are bit-sliced (bit b of the counts of the
// pieces of bitfield word w in count[b·hw+w]), so a connection costs a few
// word operations per bitfield word, and the lowest count among the
// candidates is found a bit at a time from the top.
func (e *engine) pick(d int32) (int, bool) {
	hw, planes := e.hw, e.planes
	// The candidates: the pieces d lacks and is not fetching; of a feeder
	// still on the origin, only those of its share.
	want := e.want
	have := e.have[int(d)*hw : int(d+1)*hw]
	if int(d) < e.feeders && e.shareLeft[d] > 0 {
		share := e.share[int(d)*hw : int(d+1)*hw]
		for w := range want {
			want[w] = share[w] &^ have[w]
		}
	} else {
		for w := range want {
			want[w] = ^have[w]
		}
		want[hw-1] &= e.tail
	}
	for _, f := range e.fl[int(d)*e.r : int(d+1)*e.r] {
		if f.piece >= 0 {
			want[f.piece>>6] &^= 1 << (f.piece & 63)
		}
	}
	// If every candidate is saturated, counting would rank them alike,
	// all held: the first in d's order.
	sat := e.sat[int(d)*hw : int(d+1)*hw]
	var rest, some uint64
	for w, x := range want {
		rest |= x &^ sat[w]
		some |= x
	}
	if e.fast = rest == 0 && !e.alwaysCount; e.fast {
		if some == 0 {
			return 0, false
		}
		e.shortcuts++
		return e.firstIn(d, want, want), true
	}

	// The connections counted per piece: those partial when connected.
	off, cp := e.slotOff(d), e.slotCap(d)
	seed := e.seedSlot[int(d)*e.sw : int(d+1)*e.sw]
	rows, slots := e.pickRows[:0], e.pickSlots[:0]
	for s, v := range e.peer[off : off+cp] {
		if v >= 0 && seed[s>>6]>>(s&63)&1 == 0 {
			rows = append(rows, int(v)*hw)
			slots = append(slots, int32(s))
		}
	}
	e.pickRows, e.pickSlots = rows, slots
	// Count their bitfields (at offsets rows of have), word by word. A
	// first loop, short enough that the processor runs far ahead, touches
	// every bitfield so that their cache misses overlap.
	var touch uint64
	for _, o := range rows {
		touch += e.have[o]
	}
	e.touched = touch
	count := e.count
	for w, x := range want {
		if x != 0 { // else the stale counts meet no candidate
			countWord(count[w:], hw, e.have[w:], rows)
		}
	}
	// Those of the candidates that a connection has: all with a seed.
	held := e.held
	copy(held, want)
	if e.hot[d].seeds == 0 {
		for w := range held {
			var any uint64
			for b := range planes {
				any |= count[b*hw+w]
			}
			held[w] &= any
		}
	}
	none := true
	for w, x := range held {
		none = none && x == 0
		// Learn which are saturated (maxLevel = 14: 16 or more, or
		// 14 and 15 = 0b111x).
		ge := count[3*hw+w] & count[2*hw+w] & count[hw+w]
		for b := 4; b < 8; b++ {
			ge |= count[b*hw+w]
		}
		sat[w] |= x & ge
	}
	if none {
		return 0, false
	}

	p := e.rarest(d, held)
	e.setHolders(d, p)
	return p, true
}

// rarest returns the piece of held, a non-empty subset of the candidates
// pick counted (e.want), that pick ranks first: the lowest count in
// e.count, then d's own order.
func (e *engine) rarest(d int32, held []uint64) int {
	if e.fast {
		return e.firstIn(d, held, e.want) // every candidate is saturated
	}
	hw, count := e.hw, e.count
	// Those at the lowest count: from the top bit down, drop those with
	// the bit set whenever some have it clear.
	cand := e.cand
	copy(cand, held)
	low := 0
	for b := e.planes - 1; b >= 0; b-- {
		bit := count[b*hw : (b+1)*hw]
		var clearSome uint64
		for w, x := range cand {
			clearSome |= x &^ bit[w]
		}
		if clearSome == 0 {
			low |= 1 << b
			continue
		}
		for w := range cand {
			cand[w] &^= bit[w]
		}
	}
	if low >= maxLevel {
		cand = held // all saturated: they rank alike
	}
	return e.firstIn(d, cand, e.want)
}

// setHolders leaves in e.holders the slots of d whose peers have piece p,
// from the connections pick counted (e.pickRows, e.pickSlots), or all of
// d's if it did not count, and d's seeds.
func (e *engine) setHolders(d int32, p int) {
	hm := &e.holders
	*hm = slotMask{}
	if e.fast {
		off, w, bit := e.slotOff(d), p>>6, uint(p&63)
		for s, v := range e.peer[off : off+e.slotCap(d)] {
			if v >= 0 && e.have[int(v)*e.hw+w]>>bit&1 != 0 {
				hm[s>>6] |= 1 << (s & 63)
			}
		}
		return
	}
	copy(hm[:], e.seedSlot[int(d)*e.sw:int(d+1)*e.sw]) // a seed has every piece
	for i, o := range e.pickRows {
		s := e.pickSlots[i]
		hm[s>>6] |= (e.have[o+p>>6] >> (p & 63) & 1) << (s & 63)
	}
}

// freeHolder reports whether one of the slots of node d in hm has a peer
// whose upload is not saturated.
func (e *engine) freeHolder(d int32, hm *slotMask) bool {
	row := e.peer[e.slotOff(d):]
	for w, x := range hm {
		for x != 0 {
			v := row[w*64+bits.TrailingZeros64(x)]
			x &= x - 1
			if e.full[v>>6]>>(v&63)&1 == 0 {
				return true
			}
		}
	}
	return false
}

// pickFree is pick's second thought when every holder of the piece it
// chose is saturated: the rarest candidate (as pick ranks them) of a
// connection, looked for from a random slot, whose upload is not
// saturated and that has a candidate; ok is false if there is none, and
// then d fetches pick's piece from a saturated holder. It leaves the
// piece's holders in e.holders, as pick does.
//
// anacrolix keeps a request queue per peer and asks every unchoked peer
// for pieces that peer has, so a crowd at the holders of the rarest piece
// does not leave a downloader waiting on them while other peers have
// upload to spare; rarest first orders what it asks each peer for.
func (e *engine) pickFree(d int32, start int) (int, bool) {
	off, cp := e.slotOff(d), e.slotCap(d)
	set := e.held // pick is done with it
	for k := range cp {
		s := start + k
		if s >= cp {
			s -= cp
		}
		v := e.peer[off+s]
		// The origin (not in have) is a holder of every piece: if it had
		// upload to spare, pick's piece would have a free holder.
		if v < 0 || v == e.origin || e.full[v>>6]>>(v&63)&1 != 0 {
			continue
		}
		theirs := e.have[int(v)*e.hw : int(v+1)*e.hw]
		var any uint64
		for w, x := range e.want {
			set[w] = x & theirs[w]
			any |= set[w]
		}
		if any == 0 {
			continue
		}
		p := e.rarest(d, set)
		e.setHolders(d, p)
		return p, true
	}
	return 0, false
}

// csa is a carry-save adder: per bit, the carry (h) and sum (l) of a+b+c.
func csa(a, b, c uint64) (h, l uint64) {
	u := a ^ b
	return a&b | u&c, u ^ c
}

// countWord counts, per bit, how many of the words x[o], o in offs, have
// it set, bit-sliced: bit b of the counts goes to count[b·stride], for
// b < 8 (counts up to 255, which maxConnsLimit keeps to). Sixteen words at
// a time go through a tree of carry-save adders (Harley and Seal), about
// one adder a word.
func countWord(count []uint64, stride int, x []uint64, offs []int) {
	var ones, twos, fours, eights uint64
	var high [4]uint64 // 16s to 128s
	for ; len(offs) >= 16; offs = offs[16:] {
		o := offs[:16]
		var twosA, twosB, foursA, foursB, eightsA, eightsB, c uint64
		twosA, ones = csa(ones, x[o[0]], x[o[1]])
		twosB, ones = csa(ones, x[o[2]], x[o[3]])
		foursA, twos = csa(twos, twosA, twosB)
		twosA, ones = csa(ones, x[o[4]], x[o[5]])
		twosB, ones = csa(ones, x[o[6]], x[o[7]])
		foursB, twos = csa(twos, twosA, twosB)
		eightsA, fours = csa(fours, foursA, foursB)
		twosA, ones = csa(ones, x[o[8]], x[o[9]])
		twosB, ones = csa(ones, x[o[10]], x[o[11]])
		foursA, twos = csa(twos, twosA, twosB)
		twosA, ones = csa(ones, x[o[12]], x[o[13]])
		twosB, ones = csa(ones, x[o[14]], x[o[15]])
		foursB, twos = csa(twos, twosA, twosB)
		eightsB, fours = csa(fours, foursA, foursB)
		c, eights = csa(eights, eightsA, eightsB)
		for b := 0; c != 0; b++ {
			high[b], c = high[b]^c, high[b]&c
		}
	}
	for _, o := range offs {
		c := x[o]
		ones, c = ones^c, ones&c
		twos, c = twos^c, twos&c
		fours, c = fours^c, fours&c
		eights, c = eights^c, eights&c
		for b := 0; c != 0; b++ {
			high[b], c = high[b]^c, high[b]&c
		}
	}
	count[0], count[stride], count[2*stride], count[3*stride] = ones, twos, fours, eights
	for b, h := range high {
		count[(4+b)*stride] = h
	}
}

// firstIn returns the piece of the non-empty set m, a subset of d's
// candidates want, that node d ranks first in its own random order.
func (e *engine) firstIn(d int32, m, want []uint64) int {
	k := 0
	for _, x := range m {
		k += bits.OnesCount64(x)
	}
	if k > 32 {
		// Many: walk d's order, from where its candidates begin.
		h := &e.hot[d]
		i := int(h.first)
		for q := e.pieceAt(d, i); want[q>>6]>>(q&63)&1 == 0; q = e.pieceAt(d, i) {
			i++
		}
		h.first = int32(i)
		for ; ; i++ {
			if q := e.pieceAt(d, i); m[q>>6]>>(q&63)&1 != 0 {
				return q
			}
		}
	}
	best, bestPos := -1, e.pieces
	for w, x := range m {
		for x != 0 {
			q := w*64 + bits.TrailingZeros64(x)
			x &= x - 1
			if i := e.pos(d, q); i < bestPos {
				best, bestPos = q, i
			}
		}
	}
	return best
}

// source chooses who sends node d a chunk of piece p: among d's
// connections that have the piece, one that gives the highest rate now (a
// member whose upload is not saturated gives the full slot rate), looked
// for from a random slot. This stands for anacrolix requesting from every
// peer that has the piece and the fastest serving most.
//
// It reads the connections' bitfields from the random slot on and stops
// at the first free holder, as choose would pick it, so that a piece many
// connections have costs a few of them; only when every holder is
// saturated does it read them all.
func (e *engine) source(d int32, p int) (u, ds int32, ok bool) {
	start := e.rng.IntN(e.slotCap(d))
	if u, ds, ok := e.freeSource(d, p, start); ok {
		return u, ds, true
	}
	// Every holder is saturated: the least loaded gives most.
	off, cp := e.slotOff(d), e.slotCap(d)
	row := e.peer[off : off+cp]
	have, hw, w, bit := e.have, e.hw, p>>6, uint(p&63)
	best, bestRate := -1, -1.0
	for k := range cp {
		s := start + k
		if s >= cp {
			s -= cp
		}
		v := row[s]
		if v < 0 || have[int(v)*hw+w]>>bit&1 == 0 {
			continue
		}
		if r := min(e.slotRate, e.upCap(v)/float64(e.nup[v]+1)); r > bestRate {
			best, bestRate = s, r
		}
	}
	if best < 0 {
		return 0, 0, false
	}
	return row[best], int32(best), true
}

// freeSource is source's first choice: the first of node d's connections
// from slot start on (wrapping) that has piece p and upload to spare.
func (e *engine) freeSource(d int32, p, start int) (u, ds int32, ok bool) {
	off, cp := e.slotOff(d), e.slotCap(d)
	row := e.peer[off : off+cp]
	have, hw, w, bit := e.have, e.hw, p>>6, uint(p&63)
	for k := range cp {
		s := start + k
		if s >= cp {
			s -= cp
		}
		// The full bit first: it is at hand, the bitfield is not.
		if v := row[s]; v >= 0 && e.full[v>>6]>>(v&63)&1 == 0 && have[int(v)*hw+w]>>bit&1 != 0 {
			return v, int32(s), true
		}
	}
	return 0, 0, false
}

// sourceFrom is source for the piece pick just chose, whose holders pick
// found: hm.
func (e *engine) sourceFrom(d int32, hm *slotMask, start int) (u, ds int32, ok bool) {
	off, cp := e.slotOff(d), e.slotCap(d)
	row := e.peer[off : off+cp]
	var fm slotMask
	for w, x := range hm {
		for x != 0 {
			s := w*64 + bits.TrailingZeros64(x)
			x &= x - 1
			v := row[s]
			fm[w] |= (^e.full[v>>6] >> (v & 63) & 1) << (s & 63)
		}
	}
	return e.choose(row, hm, &fm, start)
}

// choose is the end of sourceFrom: given the slots of row that have the
// piece (hm) and those of them that could send at the full slot rate (fm),
// the first of fm from slot start (random), else the holder that gives
// most.
func (e *engine) choose(row []int32, hm, fm *slotMask, start int) (u, ds int32, ok bool) {
	cp := len(row)
	best := firstFrom(fm[:], start, cp)
	if best < 0 {
		// Every holder is saturated: the least loaded gives most.
		bestRate := -1.0
		for k := range cp {
			s := start + k
			if s >= cp {
				s -= cp
			}
			if hm[s>>6]>>(s&63)&1 == 0 {
				continue
			}
			v := row[s]
			r := min(e.slotRate, e.upCap(v)/float64(e.nup[v]+1))
			if r > bestRate {
				best, bestRate = s, r
			}
		}
	}
	if best < 0 {
		return 0, 0, false
	}
	return row[best], int32(best), true
}

// firstFrom returns the first set bit of m at or after start, wrapping
// around at n, or -1.
func firstFrom(m []uint64, start, n int) int {
	w := start >> 6
	if x := m[w] &^ (1<<(start&63) - 1); x != 0 {
		return w<<6 + bits.TrailingZeros64(x)
	}
	words := (n + 63) >> 6
	for k := 1; k <= words; k++ {
		i := (w + k) % words
		x := m[i]
		if i == w {
			x &= 1<<(start&63) - 1
		}
		if x != 0 {
			return i<<6 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

// fill starts downloads on node d's free slots while it has candidates:
// first the next chunk of a piece it is already fetching (anacrolix
// prefers partial pieces), else the first chunk of a new piece chosen by
// pick or, when every holder of that piece is saturated, by pickFree.
func (e *engine) fill(d int32) {
	fl := e.fl[int(d)*e.r : int(d+1)*e.r]
	h := &e.hot[d]
	for int(h.active) < e.r {
		if e.more(d, fl) {
			continue
		}
		// A new piece needs a free flight; all can be taken by pieces
		// whose holders left with chunks still to ask for.
		k := slices.IndexFunc(fl, func(f flight) bool { return f.piece < 0 })
		if k < 0 {
			e.starved[d>>6] |= 1 << (d & 63)
			return
		}
		p, ok := e.pick(d)
		if !ok {
			e.starved[d>>6] |= 1 << (d & 63)
			return
		}
		// The first random draw goes to the source if a holder of p has
		// upload to spare, else to pickFree (and the next to the source).
		start := e.rng.IntN(e.slotCap(d))
		var u, ds int32
		if e.fast {
			// What sourceFrom would choose, without reading every
			// holder's bitfield.
			u, ds, ok = e.freeSource(d, p, start)
		}
		if !e.fast || !ok {
			if e.fast {
				e.setHolders(d, p)
			}
			if !e.freeHolder(d, &e.holders) {
				if q, ok := e.pickFree(d, start); ok {
					p = q
				}
				start = e.rng.IntN(e.slotCap(d))
			}
			u, ds, ok = e.sourceFrom(d, &e.holders, start)
		}
		if !ok {
			panic(fmt.Sprintf("sim: node %d picked piece %d that no connection has", d, p))
		}
		fl[k] = flight{piece: int32(p), next: 1, left: int32(e.chunks(p))}
		e.start(u, d, p, 0, ds)
	}
	e.starved[d>>6] &^= 1 << (d & 63)
}

// more starts the next chunk of a piece node d is fetching, if one is left
// to request and a connection has the piece.
func (e *engine) more(d int32, fl []flight) bool {
	for k := range fl {
		f := &fl[k]
		if f.piece < 0 || int(f.next) >= e.chunks(int(f.piece)) {
			continue
		}
		p := int(f.piece)
		u, ds, ok := e.source(d, p)
		if !ok {
			continue // its holders left; wait for another
		}
		e.start(u, d, p, int(f.next), ds)
		f.next++
		return true
	}
	return false
}

// advance brings uploader u's virtual clock to now.
func (e *engine) advance(m int32, u *uploader) {
	u.vclock += e.rate(m, u.n) * (e.now - u.vtime)
	u.vtime = e.now
}

// rate is what each upload of member m gets when it has n: its upload
// shared equally, at most a download slot's rate. An uploader's count
// changes only at the time advance brought it to, so the rate since then
// is the one its count gives.
func (e *engine) rate(m, n int32) float64 {
	if n == 0 {
		return 0
	}
	return min(e.slotRate, e.upCap(m)/float64(n))
}

// setFull records whether one more upload would slow uploader u's.
func (e *engine) setFull(u int32, up *uploader) {
	bit := uint64(1) << (u & 63)
	if float64(up.n+1)*e.slotRate > e.upCap(u) {
		e.full[u>>6] |= bit
	} else {
		e.full[u>>6] &^= bit
	}
}

// touch marks uploader u for resched at the end of the event: everything
// in one event happens at one time, so rates and completions are
// recomputed once per uploader however often its count changed.
func (e *engine) touch(u int32) {
	if !e.dirty[u] {
		e.dirty[u] = true
		e.dirtyList = append(e.dirtyList, u)
	}
}

// flush reschedules the uploaders touched by the last event.
func (e *engine) flush() {
	for _, u := range e.dirtyList {
		e.dirty[u] = false
		e.resched(u)
	}
	e.dirtyList = e.dirtyList[:0]
}

// resched recomputes uploader u's rate and next completion after its count
// of uploads changed; advance must have run first.
func (e *engine) resched(u int32) {
	up := &e.up[u]
	if up.n == 0 {
		e.ups.remove(u)
		return
	}
	e.ups.set(u, e.now+max(0, e.queue(up)[0].vfin-up.vclock)/e.rate(u, up.n))
}

// start has member u send node d chunk k of piece p, over d's
// connection slot ds.
func (e *engine) start(u, d int32, p, k int, ds int32) {
	up := &e.up[u]
	e.advance(u, up)
	size := e.chunkSize(p, k)
	e.push(up, upload{vfin: up.vclock + float64(size), down: d, piece: uint16(p), downSlot: uint8(ds), chunk: uint8(k)})
	e.nup[u] = up.n
	e.setFull(u, up)
	e.touch(u)
	e.hot[d].active++
}

// step completes uploader u's next upload; the caller set e.now to its
// time.
func (e *engine) step(u int32) {
	up := &e.up[u]
	// Load ahead, so that the next event's cache misses overlap this
	// one's: the next event is most likely at the uploader second in the
	// queue, whose line the last event loaded; load its downloader's
	// state now, and the line of the uploader after it.
	if v := e.ahead; v >= 0 && v != u && e.up[v].spill == 0 && e.up[v].n > 0 {
		e.touchNode(e.up[v].inline[0].down)
	}
	e.ahead = -1
	if v, ok := e.ups.next(); ok {
		e.ahead = v
		e.touched += uint64(e.up[v].n)
	}
	e.advance(u, up)
	t := e.pop(up)
	e.touchNode(t.down)
	up.vclock = max(up.vclock, t.vfin)
	e.nup[u] = up.n
	e.setFull(u, up)
	e.touch(u)
	e.finish(u, t)
	for len(e.wake) > 0 {
		v := e.wake[len(e.wake)-1]
		e.wake = e.wake[:len(e.wake)-1]
		if e.hot[v].state == stDownloading {
			e.fill(v)
		}
	}
}

// touchNode loads what the event will read of node d, so that the cache
// misses overlap rather than come one after the other as the code reaches
// them: its flags, flights, bitfield, saturated pieces and connections.
func (e *engine) touchNode(d int32) {
	off, hw := e.slotOff(d), e.hw
	x := uint64(e.hot[d].haveN) + uint64(e.fl[int(d)*e.r].next) + e.have[int(d)*hw] + e.sat[int(d)*hw]
	for s := 0; s < e.maxConns; s += 16 { // a line of slots at a time
		x += uint64(e.peer[off+s])
	}
	e.touched += x
}

func (e *engine) finish(u int32, t upload) {
	d, p := t.down, int(t.piece)
	size := e.chunkSize(p, int(t.chunk))
	if u == e.origin {
		e.originBytes += size
	} else {
		e.peerBytes += size
	}
	h := &e.hot[d]
	h.recv += size
	h.active--
	e.help[e.slotOff(d)+int(t.downSlot)] = float32(e.now)
	fl := e.fl[int(d)*e.r : int(d+1)*e.r]
	k := 0
	for int(fl[k].piece) != p {
		k++
	}
	if fl[k].left--; fl[k].left == 0 {
		fl[k].piece = -1
		e.got(d, p)
		if e.hot[d].state != stDownloading {
			return
		}
	}
	e.fill(d)
}

// got records that node d has all of piece p.
func (e *engine) got(d int32, p int) {
	if e.receipts != nil {
		k := int(d)*e.pieces + p
		e.receipts[k]++
		if e.receipts[k] > 1 && e.checkErr == nil {
			e.checkErr = fmt.Errorf("node %d received piece %d twice", d, p)
		}
	}
	e.have[int(d)*e.hw+p>>6] |= 1 << (p & 63)
	h := &e.hot[d]
	h.haveN++
	e.announce(d, p)
	if int(h.haveN) == e.pieces {
		e.complete(d)
		return
	}
	if int(d) < e.feeders && p%e.feeders == int(d) {
		if e.shareLeft[d]--; e.shareLeft[d] == 0 {
			e.leaveOrigin(d)
		}
	}
}

// leaveOrigin is feeder d holding its share: it closes its origin
// connection and wants every other piece from its peers.
func (e *engine) leaveOrigin(d int32) {
	off, cp := e.slotOff(d), e.slotCap(d)
	for s := range cp {
		if e.peer[off+s] == e.origin {
			e.dropConn(d, int32(s))
			break
		}
	}
	e.hot[d].first = 0 // it wants the other pieces now
	if e.hot[d].state == stDownloading && int(e.hot[d].active) < e.r {
		e.fill(d)
	}
}

// usesOrigin reports whether node i may connect to the origin now.
func (e *engine) usesOrigin(i int32) bool {
	return e.feeders == 0 || (int(i) < e.feeders && e.shareLeft[i] > 0)
}

// announce tells node d's connections that it has piece p (a have
// message): it wakes those that were starved and lack the piece. The
// others learn of it when they next pick (see pick), so a have message
// costs a bit test per connection.
func (e *engine) announce(d int32, p int) {
	off, cp := e.slotOff(d), e.slotCap(d)
	w, bit := p>>6, uint(p&63)
	for _, v := range e.peer[off : off+cp] {
		if v < 0 || v == e.origin {
			continue
		}
		// A starved peer may want the piece even when it is fetching it:
		// it has chunks left to ask for whose holders had gone.
		if st := &e.starved[v>>6]; *st>>(v&63)&1 != 0 && e.have[int(v)*e.hw+w]>>bit&1 == 0 {
			*st &^= 1 << (v & 63)
			e.wake = append(e.wake, v)
		}
	}
}

// complete records node d's completion and drops its connections to the
// origin and to other complete nodes (anacrolix drops mutually complete
// peers), which frees their slots.
func (e *engine) complete(d int32) {
	h := &e.hot[d]
	h.state = stComplete
	e.starved[d>>6] &^= 1 << (d & 63)
	e.doneAt[d] = e.now
	e.done++
	off, cp := e.slotOff(d), e.slotCap(d)
	for s := range cp {
		v := e.peer[off+s]
		if v >= 0 && (v == e.origin || e.hot[v].state == stComplete) {
			e.dropConn(d, int32(s))
		}
	}
}

// connected reports whether node i has a connection to member j.
func (e *engine) connected(i, j int32) bool {
	if j == e.origin {
		return e.onOrigin[i]
	}
	off, cp := e.slotOff(i), e.slotCap(i)
	return slices.Contains(e.peer[off:off+cp], j)
}

func (e *engine) freeSlot(m int32) int32 {
	off, cp := e.slotOff(m), e.slotCap(m)
	if s := slices.Index(e.peer[off:off+cp], -1); s >= 0 {
		return int32(s)
	}
	panic(fmt.Sprintf("sim: member %d has no free connection slot", m))
}

// connect has downloading node i dial member j, as anacrolix does for every
// peer it is given: i must be under its connection cap and j must accept,
// which a node that has not started (added the release) does not.
func (e *engine) connect(i, j int32) {
	if i == j || e.connected(i, j) || int(e.nconn[i]) >= e.slotCap(i) {
		return
	}
	if j != e.origin && e.hot[j].state == stWaiting {
		return // j has not added the release: the dial fails
	}
	if int(e.nconn[j]) >= e.slotCap(j) && !e.replace(j) {
		return
	}
	si, sj := e.freeSlot(i), e.freeSlot(j)
	oi, oj := int32(e.slotOff(i))+si, int32(e.slotOff(j))+sj
	e.peer[oi], e.other[oi] = j, sj
	e.peer[oj], e.other[oj] = i, si
	e.meta[oi], e.help[oi] = slotMeta{since: e.now}, 0
	e.meta[oj], e.help[oj] = slotMeta{since: e.now}, 0
	e.nconn[i]++
	e.nconn[j]++
	if j == e.origin {
		e.onOrigin[i] = true
	}
	e.learn(i, oi, j)
	e.learn(j, oj, i)
	for _, m := range [2]int32{i, j} {
		if m != e.origin && e.hot[m].state == stDownloading && int(e.hot[m].active) < e.r {
			e.fill(m)
		}
	}
}

// learn records at downloading node x, over the connection in x's slot at
// offset ox, whether member y has every piece (the bitfield exchange): a
// seed counts for every piece, any other member per piece it has, which
// pick reads from its bitfield.
func (e *engine) learn(x, ox, y int32) {
	if x == e.origin || e.hot[x].state != stDownloading {
		return
	}
	if y == e.origin || e.hot[y].state == stComplete {
		e.hot[x].seeds++
		e.meta[ox].seed = true
		s := int(ox) - e.slotOff(x)
		e.seedSlot[int(x)*e.sw+s>>6] |= 1 << (s & 63)
	}
}

// forget undoes learn when the connection closes.
func (e *engine) forget(x, ox int32) {
	if x == e.origin {
		return
	}
	s := int(ox) - e.slotOff(x)
	e.seedSlot[int(x)*e.sw+s>>6] &^= 1 << (s & 63)
	if e.hot[x].state == stDownloading && e.meta[ox].seed {
		e.hot[x].seeds--
	}
}

// dropConn closes the connection in member i's slot si.
func (e *engine) dropConn(i, si int32) {
	oi := int32(e.slotOff(i)) + si
	j := e.peer[oi]
	oj := int32(e.slotOff(j)) + e.other[oi]
	e.forget(i, oi)
	e.forget(j, oj)
	// Availability at both ends may fall: they count again.
	for _, m := range [2]int32{i, j} {
		if m != e.origin {
			clear(e.sat[int(m)*e.hw : int(m+1)*e.hw])
		}
	}
	e.peer[oi], e.peer[oj] = -1, -1
	e.nconn[i]--
	e.nconn[j]--
	if j == e.origin {
		e.onOrigin[i] = false
	}
	if i == e.origin {
		e.onOrigin[j] = false
	}
}

// replace makes room at full member j for a new connection the way
// anacrolix does: a connection in the worse half (by when it last carried
// a chunk, then age) that is older than a minute is dropped. Connections
// with a chunk in flight are kept: anacrolix's chunk-level activity would
// rank them among the best.
func (e *engine) replace(j int32) bool {
	if e.now < connProveTime || e.now < e.replAt[j] {
		return false
	}
	off, cp := e.slotOff(j), e.slotCap(j)
	open := e.open[:0]
	for s := range int32(cp) {
		if o := off + int(s); e.peer[o] >= 0 {
			open = append(open, openConn{help: e.lastHelp(j, s), since: e.meta[o].since, slot: s})
		}
	}
	e.open = open
	slices.SortFunc(open, func(a, b openConn) int {
		return cmp.Or(cmp.Compare(a.help, b.help), cmp.Compare(a.since, b.since), cmp.Compare(a.slot, b.slot))
	})
	worse := len(open) - (cp+1)/2
	for _, c := range open[:max(worse, 0)] {
		if e.now-c.since <= connProveTime || e.busy(j, e.peer[off+int(c.slot)]) {
			continue
		}
		e.dropConn(j, c.slot)
		e.replaced++
		return true
	}
	e.replAt[j] = e.now + replaceRetry
	return false
}

// busy reports whether a chunk is in flight between members a and b.
func (e *engine) busy(a, b int32) bool {
	for _, t := range e.queue(&e.up[a]) {
		if t.down == b {
			return true
		}
	}
	for _, t := range e.queue(&e.up[b]) {
		if t.down == a {
			return true
		}
	}
	return false
}

// peerRefresh is the agent handing node i's fetch the origin and up to
// MaxPeers random members that advertise the release and, while fewer
// than MaxPeers others do, as many random members that do not advertise it
// yet (every node is admitted to the release): a dial to one that has not
// started fails (see connect), and it may be handed again at the next
// refresh.
func (e *engine) peerRefresh(i int32) {
	if e.hot[i].state != stDownloading {
		return
	}
	e.misc.push(event{t: e.now + e.refresh, node: i, kind: mRefresh})
	if int(e.nconn[i]) >= e.slotCap(i) {
		return
	}
	if e.usesOrigin(i) {
		e.connect(i, e.origin)
	}
	for e.advK < len(e.adv) && e.advT[e.advK] <= e.now {
		e.advK++
	}
	known, coming := e.adv[:e.advK], e.adv[e.advK:]
	handed := e.handRandom(i, known, e.maxPeers)
	e.handRandom(i, coming, e.maxPeers-handed)
}

// handRandom has node i dial up to k random members of set (other than i)
// and returns how many it dialled.
func (e *engine) handRandom(i int32, set []int32, k int) int {
	if k <= 0 {
		return 0
	}
	if n := len(set) - 1; n <= k && (n < k || slices.Contains(set, i)) {
		n = 0
		for _, j := range set {
			if j != i {
				e.connect(i, j)
				n++
			}
		}
		return n
	}
	chosen := e.picked[:0]
	for len(chosen) < k {
		j := set[e.rng.IntN(len(set))]
		if j == i || slices.Contains(chosen, j) {
			continue
		}
		chosen = append(chosen, j)
		e.connect(i, j)
	}
	e.picked = chosen
	return k
}

// run simulates until every node completes.
func (e *engine) run(ctx context.Context, progress func(done, total int)) error {
	step := max(1, e.n/100)
	nextReport := step
	for iter := 0; e.done < e.n; iter++ {
		if iter%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		tu := math.Inf(1)
		var u int32
		if e.ups.len() > 0 {
			u, tu = e.ups.min()
		}
		tm := math.Inf(1)
		if e.misc.len() > 0 {
			tm = e.misc.top().t
		}
		if math.IsInf(tu, 1) && math.IsInf(tm, 1) {
			return fmt.Errorf("stalled at %.3fs with %d of %d nodes complete: no transfer or event left", e.now, e.done, e.n)
		}
		if tm <= tu {
			ev := e.misc.pop()
			e.now = ev.t
			switch ev.kind {
			case mStart:
				e.hot[ev.node].state = stDownloading
				e.peerRefresh(ev.node)
			case mRefresh:
				e.peerRefresh(ev.node)
			}
		} else {
			e.now = tu
			e.step(u)
		}
		e.flush()
		if e.ups.len() > 0 {
			e.lastBusy = e.now
		} else if e.now-e.lastBusy > stallTime {
			return fmt.Errorf("stalled at %.3fs with %d of %d nodes complete: no transfer for %.0fs", e.now, e.done, e.n, stallTime)
		}
		if progress != nil && (e.done >= nextReport || iter%progressEvery == 0) {
			progress(e.done, e.n)
			for nextReport <= e.done {
				nextReport += step
			}
		}
	}
	return e.checkErr
}

// queue is uploader up's heap of uploads.
func (e *engine) queue(up *uploader) []upload {
	if up.spill == 0 {
		return up.inline[:up.n]
	}
	return e.spill[up.spill-1]
}

// push adds upload t to uploader up.
func (e *engine) push(up *uploader, t upload) {
	if up.spill == 0 && up.n < int32(len(up.inline)) {
		pushHeap(up.inline[:up.n], t)
		up.n++
		return
	}
	if up.spill == 0 {
		var k int32
		if f := len(e.spillFree); f > 0 {
			k = e.spillFree[f-1]
			e.spillFree = e.spillFree[:f-1]
		} else {
			k = int32(len(e.spill))
			e.spill = append(e.spill, nil)
		}
		e.spill[k] = append(e.spill[k][:0], up.inline[:]...)
		up.spill = k + 1
	}
	e.spill[up.spill-1] = pushHeap(e.spill[up.spill-1], t)
	up.n++
}

// pop takes uploader up's upload that completes first.
func (e *engine) pop(up *uploader) upload {
	if up.spill == 0 {
		t, _ := popHeap(up.inline[:up.n])
		up.n--
		return t
	}
	k := up.spill - 1
	t, q := popHeap(e.spill[k])
	up.n--
	e.spill[k] = q
	if up.n <= 1 {
		copy(up.inline[:], q)
		e.spillFree = append(e.spillFree, k)
		up.spill = 0
	}
	return t
}

// pushHeap and popHeap keep uploads as a binary min-heap by vfin.
func pushHeap(q []upload, t upload) []upload {
	q = append(q, t)
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if q[i].vfin >= q[p].vfin {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
	return q
}

func popHeap(q []upload) (upload, []upload) {
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && q[r].vfin < q[l].vfin {
			m = r
		}
		if q[m].vfin >= q[i].vfin {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	return top, q
}
