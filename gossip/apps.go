package gossip

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Each node owns one app-state record (see appwire.go for its versions and
// encoding). It gossips the parts that change as broadcasts that every node
// taking them as new passes on, as memberlist does with its own alive
// messages, and every push/pull carries the records of all live members,
// which repairs broadcasts lost or pruned. A receiver keeps, per member, the
// last complete record (what Members shows) and the newest parts it has
// heard; it shows a newer version only when those parts match that
// version's header exactly.
//
// Anyone who can send to the cluster can forge any node's record today:
// records are not signed (issue 13 adds signatures over the record header,
// which covers the parts through the digest). A node ignores records about
// itself; it alone speaks for its own.

const (
	// defaultOrphanTTL is how long a record is kept for a name that is not a
	// member: one heard of before memberlist reports the node's join (the two
	// race), or that of a member declared dead, which may refute and come
	// back with the same generation.
	defaultOrphanTTL = 30 * time.Second
	// maxOrphans bounds the records kept for names that are not members, so
	// messages naming made-up nodes cost bounded memory.
	maxOrphans = 1024
	// minAppQueue is the fewest app-state broadcasts a node keeps queued:
	// past max(minAppQueue, 2 × members), those sent most often are dropped
	// and push/pull carries what they would have.
	minAppQueue = 4096
	// appBroadcastPrefix starts every app-state broadcast's name,
	// "apps/<app>/<node>": a newer part for the same app of the same node
	// replaces an older one still queued. App names hold no '/'.
	appBroadcastPrefix = "apps/"
)

// selfRecord is this node's own app-state record. Its lock is taken before
// memMu, never after.
type selfRecord struct {
	mu       sync.Mutex
	gen      uint64 // set by Start; 0 before
	seq      uint64
	epoch    uint64
	contents map[string][]byte // encoded content per app, to tell what changed
	parts    []appPart         // sorted by app
	raw      []byte            // the whole record for push/pull; nil until there is one
}

func (s *selfRecord) header(node string) recordHeader {
	return recordHeader{node: node, gen: s.gen, seq: s.seq, epoch: s.epoch, count: len(s.parts), digest: digestOf(s.parts)}
}

// update makes contents (encoded app states by app) the record's apps and
// returns the parts that changed; false if nothing did. Removing an app
// starts a new epoch, in which every part is new.
func (s *selfRecord) update(contents map[string][]byte) ([]appPart, bool, error) {
	same := len(contents) == len(s.contents)
	removed := false
	for app, c := range s.contents {
		switch nc, ok := contents[app]; {
		case !ok:
			removed, same = true, false
		case !bytes.Equal(c, nc):
			same = false
		}
	}
	if same {
		return nil, false, nil
	}
	seq, epoch := s.seq+1, s.epoch
	if removed {
		epoch = seq
	}
	old := make(map[string]appPart, len(s.parts))
	for _, p := range s.parts {
		old[p.app] = p
	}
	parts := make([]appPart, 0, len(contents))
	var changed []appPart
	for _, app := range slices.Sorted(maps.Keys(contents)) {
		if p, ok := old[app]; ok && epoch == s.epoch && bytes.Equal(s.contents[app], contents[app]) {
			parts = append(parts, p)
			continue
		}
		p, err := newPart(seq, epoch, contents[app])
		if err != nil {
			return nil, false, err
		}
		parts = append(parts, p)
		changed = append(changed, p)
	}
	s.seq, s.epoch, s.contents, s.parts = seq, epoch, contents, parts
	return changed, true, nil
}

// SetApps replaces this node's app states, at most Config.MaxApps of them,
// and queues what changed for gossip. More apps fail with ErrTooManyApps and
// invalid ones with an error; the previous state then stays. Members lists
// them sorted by app and cut as they travel (see AppState), at once for this
// node and, for the others, once they have all of this update. An unchanged
// state is not gossiped again.
func (n *Node) SetApps(apps []AppState) error {
	if len(apps) > n.cfg.MaxApps {
		return fmt.Errorf("gossip set apps: %w: %d apps, the limit is %d", ErrTooManyApps, len(apps), n.cfg.MaxApps)
	}
	if err := checkApps(apps); err != nil {
		return fmt.Errorf("gossip set apps: %w", err)
	}
	if err := checkAppExtras(apps); err != nil {
		return fmt.Errorf("gossip set apps: %w", err)
	}
	contents := make(map[string][]byte, len(apps))
	for _, a := range apps {
		contents[a.App] = encodeAppContent(a)
	}
	n.life.Lock()
	closing := n.closing
	n.life.Unlock()
	if closing {
		return fmt.Errorf("gossip set apps: %w", ErrClosed)
	}
	n.self.mu.Lock()
	defer n.self.mu.Unlock()
	changed, ok, err := n.self.update(contents)
	if err != nil {
		return fmt.Errorf("gossip set apps: %w", err) // checkApps makes this unreachable
	}
	if ok {
		n.publishSelfLocked(changed)
	}
	return nil
}

// publishSelfLocked shows the own record in Members and, once Start has set
// the generation, queues the changed parts (or, when removing apps left
// none, the bare header) and encodes the whole record for push/pull.
func (n *Node) publishSelfLocked(changed []appPart) {
	apps := partStates(n.self.parts)
	n.selfApps.Store(&apps)
	n.memMu.Lock()
	if self, ok := n.members[n.cfg.Name]; ok {
		self.Apps = apps
		n.members[n.cfg.Name] = self
	}
	n.memMu.Unlock()
	if n.self.gen == 0 {
		return
	}
	h := n.self.header(n.cfg.Name)
	n.self.raw = encodeRecord(h, n.self.parts)
	msgs := make(map[string][]byte, max(1, len(changed)))
	if len(changed) == 0 {
		msgs[""] = encodeAppMsg(h, nil)
		n.queueApps(h.node, "", msgs[""])
	}
	for _, p := range changed {
		msgs[p.app] = encodeAppMsg(h, []appPart{p})
		n.queueApps(h.node, p.app, msgs[p.app])
	}
	n.tellSeeders(msgs)
}

// tellSeeders queues this node's own app-state changes (msgs, one per
// changed app, named by app) to be sent straight to every seeder, besides
// gossip. The seeder's rollout controller decides on what it sees, and
// gossip alone brings it a fleet-wide change slowly: when every node
// changes at once (a rollback), packets carry about 15 states, newest
// first, and the simulated seeder at 5000 nodes saw the last node back
// 48–161 s after it was.
//
// The send waits a random delay of up to DirectSpread (N members × 100µs,
// at most 2 s), and a later change of the same app replaces the queued
// one: the seeder takes packets one at a time and memberlist drops those
// that find 1024 waiting, so 5000 nodes sending three changes each within
// milliseconds would lose most of them. A lost packet still arrives by
// gossip or push/pull.
func (n *Node) tellSeeders(msgs map[string][]byte) {
	if len(msgs) == 0 || n.ml.Load() == nil {
		return
	}
	n.direct.mu.Lock()
	defer n.direct.mu.Unlock()
	if n.direct.pending == nil {
		n.direct.pending = make(map[string][]byte)
	}
	for app, m := range msgs {
		n.direct.pending[app] = m
	}
	if !n.direct.armed {
		n.direct.armed = true
		time.AfterFunc(directDelay(n.numMembers()), n.sendDirect)
	}
}

// DirectSpread bounds the random delay of a node's direct sends to the
// seeders (Node.tellSeeders) in a cluster of members: members × 100µs, at
// most 2 s, so that about 10 000 packets a second reach a seeder when the
// whole fleet changes state at once.
func DirectSpread(members int) time.Duration {
	return min(time.Duration(members)*100*time.Microsecond, 2*time.Second)
}

func directDelay(members int) time.Duration {
	if s := DirectSpread(members); s > 0 {
		return rand.N(s)
	}
	return 0
}

// sendDirect sends the queued own app states to every seeder, one packet
// per app.
func (n *Node) sendDirect() {
	n.direct.mu.Lock()
	msgs := n.direct.pending
	n.direct.pending, n.direct.armed = nil, false
	n.direct.mu.Unlock()
	if !n.enter() {
		return
	}
	defer n.exit()
	ml := n.ml.Load()
	if ml == nil {
		return
	}
	var seeders []NodeState
	n.memMu.Lock()
	for name, m := range n.members {
		if name != n.cfg.Name && m.Role == RoleSeeder {
			seeders = append(seeders, NodeState{Name: m.Name, Addr: m.Addr})
		}
	}
	n.memMu.Unlock()
	sent := 0
	for _, p := range seeders {
		to, err := memberlistNode(p)
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if err := ml.SendBestEffort(to, m); err != nil {
				n.log.Debug("cannot send app state to seeder", zap.String("seeder", p.Name), zap.Error(err))
				break
			}
			sent++
		}
	}
	n.mu.Lock()
	n.stats.SeederSent += uint64(sent)
	n.mu.Unlock()
}

func encodeAppMsg(h recordHeader, parts []appPart) []byte {
	return append([]byte{msgApps}, encodeRecord(h, parts)...)
}

func partStates(parts []appPart) []AppState {
	if len(parts) == 0 {
		return nil
	}
	out := make([]AppState, len(parts))
	for i, p := range parts {
		out[i] = p.state
	}
	return out
}

// queueApps queues an app-state message for gossip under its name, and
// prunes the queue to its bound. It must not be called with memMu held.
func (n *Node) queueApps(node, app string, msg []byte) {
	name := appBroadcastPrefix + app + "/" + node
	n.appQueue.Queue(name, msg)
	if limit := max(minAppQueue, 2*n.numMembers()); n.appQueue.Len() > limit {
		n.appQueue.Prune(limit)
	}
}

// peerRecord is what this node holds of another node's app states.
type peerRecord struct {
	member bool      // memberlist lists the node as alive (or suspect)
	gone   bool      // it was a member and left or died: kept hidden, in case it refutes
	since  time.Time // when it stopped being, or was first heard of without being, a member
	gen    uint64    // the generation held; a member's is its meta's
	shown  shownRecord
	head   recordHeader       // the newest header heard in gen
	parts  map[string]appPart // the newest part heard per app, at head's epoch or later
}

// shownRecord is a complete version of a node's record.
type shownRecord struct {
	hdr  recordHeader
	apps []AppState // sorted by app
	raw  []byte     // the whole record for push/pull; nil for the empty one a generation starts with
}

func newPeerRecord(node string, gen uint64) *peerRecord {
	p := &peerRecord{}
	p.reset(node, gen)
	return p
}

// reset empties the record and starts generation gen: its sequence 0 is
// the empty record, implied by the node's meta.
func (p *peerRecord) reset(node string, gen uint64) {
	h := recordHeader{node: node, gen: gen, digest: digestOf(nil)}
	p.gen, p.gone = gen, false
	p.shown = shownRecord{hdr: h}
	p.head = h
	p.parts = make(map[string]appPart)
}

func (p *peerRecord) show(h recordHeader, parts []appPart) {
	p.shown = shownRecord{hdr: h, apps: partStates(parts), raw: encodeRecord(h, parts)}
}

// complete shows head if the parts held are exactly its parts.
func (p *peerRecord) complete() bool {
	if p.head.seq <= p.shown.hdr.seq || len(p.parts) != p.head.count {
		return false
	}
	parts := slices.SortedFunc(maps.Values(p.parts), func(a, b appPart) int { return strings.Compare(a.app, b.app) })
	if digestOf(parts) != p.head.digest {
		return false
	}
	p.show(p.head, parts)
	return true
}

// mergeAppsLocked takes a header and parts of another node's record, a
// whole record from a push/pull or a broadcast's, and reports whether it
// told this node anything new (a broadcast is then passed on). Records of
// names that are not members are kept only from broadcasts, at most
// maxOrphans of them for at most orphanTTL.
func (n *Node) mergeAppsLocked(h recordHeader, parts []appPart, whole bool) bool {
	now := n.now()
	n.sweepLocked(now)
	p := n.peers[h.node]
	if p == nil {
		if whole || n.orphans >= maxOrphans {
			return false
		}
		p = newPeerRecord(h.node, h.gen)
		p.since = now
		n.peers[h.node] = p
		n.orphans++
	}
	switch {
	case h.gen == p.gen:
	case !p.member && h.gen > p.gen:
		p.reset(h.node, h.gen) // a newer generation of a node not (yet) a member
		p.since = now
	default:
		return false // another generation than the member's
	}
	fresh := false
	if h.seq > p.head.seq {
		p.head, fresh = h, true
		maps.DeleteFunc(p.parts, func(_ string, q appPart) bool { return q.seq < h.epoch })
	}
	for _, q := range parts {
		if q.seq < p.head.epoch {
			continue
		}
		if cur, ok := p.parts[q.app]; ok && cur.seq >= q.seq {
			continue
		}
		p.parts[q.app], fresh = q, true
	}
	shown := false
	if whole && h.seq > p.shown.hdr.seq {
		p.show(h, parts)
		shown = true
	}
	if p.complete() {
		shown = true
	}
	if p.gone {
		fresh = false // kept for a refute, not spread: the cluster has let it go
	}
	if shown {
		n.appTaken.Add(1)
		if m, ok := n.members[h.node]; ok && p.member {
			m.Apps = p.shown.apps
			n.members[h.node] = m
			n.notify()
		}
	}
	return fresh
}

// sweepLocked drops records of non-members kept past orphanTTL, looking at
// most once a second.
func (n *Node) sweepLocked(now time.Time) {
	if n.orphans == 0 || now.Sub(n.lastSweep) < time.Second {
		return
	}
	n.lastSweep = now
	for name, p := range n.peers {
		if !p.member && now.Sub(p.since) > n.orphanTTL {
			delete(n.peers, name)
			n.orphans--
		}
	}
}

// joinedLocked makes name's record that of a member of generation gen and
// returns its apps.
func (n *Node) joinedLocked(name string, gen uint64) []AppState {
	p := n.peers[name]
	if p == nil {
		p = newPeerRecord(name, gen)
		n.peers[name] = p
	} else if !p.member {
		n.orphans--
	}
	p.member, p.since = true, time.Time{}
	if p.gen != gen {
		p.reset(name, gen)
	}
	p.gone = false
	return p.shown.apps
}

// goneLocked handles a member memberlist no longer lists, having left or
// died (memberlist does not tell which): its record is no longer shown,
// carried in push/pull or passed on, and is dropped after orphanTTL unless
// the node comes back in the same generation first (a node wrongly declared
// dead refutes so, and has no reason to send its apps again).
func (n *Node) goneLocked(name string) {
	p := n.peers[name]
	if p == nil || !p.member {
		return
	}
	now := n.now()
	p.member, p.gone, p.since = false, true, now
	n.orphans++
	n.sweepLocked(now)
}

// handleApps takes an app-state broadcast and passes it on if it was new.
func (n *Node) handleApps(msg []byte) {
	msg = bytes.Clone(msg) // memberlist reuses its buffer, and the parts alias it
	h, parts, err := decodeRecord(msg[1:], false)
	if err != nil {
		n.refuseApps(fromGossip, 1, 0, err)
		return
	}
	if h.node == n.cfg.Name {
		return
	}
	n.memMu.Lock()
	fresh := n.mergeAppsLocked(h, parts, false)
	n.memMu.Unlock()
	if fresh {
		app := ""
		if len(parts) == 1 {
			app = parts[0].app
		}
		n.queueApps(h.node, app, msg)
	}
}

// mergeRecords takes the app-state records of a push/pull; overCap records
// past a cap were already skipped while decoding. Records no newer than
// the one shown are skipped after their header: most are, in a settled
// cluster.
func (n *Node) mergeRecords(records [][]byte, overCap int) {
	type record struct {
		h     recordHeader
		parts []appPart
	}
	took := make([]record, 0, len(records))
	refused := 0
	var firstErr error
	stale := n.staleRecords(records)
	for i, raw := range records {
		if stale[i] {
			continue
		}
		h, parts, err := decodeRecord(raw, true)
		if err != nil {
			refused++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if h.node != n.cfg.Name {
			took = append(took, record{h, parts})
		}
	}
	if overCap > 0 {
		n.refuseApps(fromPushPull, 0, overCap, fmt.Errorf("%w: app-state records over %d bytes or past %d in one push/pull",
			errOverCap, maxRecordBytes, maxPushPullRecords))
	}
	if refused > 0 {
		n.refuseApps(fromPushPull, refused, 0, firstErr)
	}
	n.memMu.Lock()
	defer n.memMu.Unlock()
	n.sweepLocked(n.now())
	for _, r := range took {
		n.mergeAppsLocked(r.h, r.parts, true)
	}
}

// staleRecords marks the records whose header is valid and says they are
// no newer than what is shown for a member, or that are of no member.
func (n *Node) staleRecords(records [][]byte) []bool {
	heads := make([]recordHeader, len(records))
	valid := make([]bool, len(records))
	for i, raw := range records {
		h, _, _, err := decodeHeader(raw, true)
		heads[i], valid[i] = h, err == nil
	}
	stale := make([]bool, len(records))
	n.memMu.Lock()
	defer n.memMu.Unlock()
	for i, h := range heads {
		if !valid[i] {
			continue // decoded in full, and refused
		}
		p := n.peers[h.node]
		stale[i] = h.node == n.cfg.Name || p == nil || (p.member && h.gen != p.gen) ||
			(h.gen == p.gen && h.seq <= p.shown.hdr.seq)
	}
	return stale
}

// pushPullRecords are the encoded records a push/pull carries: this node's
// and every member's, except the empty ones generations start with.
func (n *Node) pushPullRecords() [][]byte {
	out := n.ownRecord()
	n.memMu.Lock()
	defer n.memMu.Unlock()
	n.sweepLocked(n.now()) // every push/pull comes here, so records expire in a quiet cluster too
	for _, p := range n.peers {
		if p.member && p.shown.raw != nil {
			out = append(out, p.shown.raw)
		}
	}
	return out
}

// refuseApps counts invalid app-state messages or records refused after
// decoding and overCap ones refused unread, and logs them at most once per
// refusalLogEvery for each source and reason.
func (n *Node) refuseApps(src source, invalid, overCap int, err error) {
	reason := reasonInvalid
	n.appRefused.Add(uint64(invalid))
	n.mu.Lock()
	n.stats.AppRefusedOverCap += uint64(overCap)
	n.mu.Unlock()
	if overCap > 0 {
		reason = reasonOverCap
	}
	n.refusals.log("apps/"+reason+"/"+string(src), n.now(), func(suppressed zap.Field) {
		n.log.Warn("refused app-state records", zap.String("reason", reason), zap.String("source", string(src)),
			zap.Int("records", invalid+overCap), suppressed, zap.Error(err))
	})
}

// ownRecord is this node's encoded record alone, or none before it has one.
func (n *Node) ownRecord() [][]byte {
	n.self.mu.Lock()
	defer n.self.mu.Unlock()
	if n.self.raw == nil {
		return nil
	}
	return [][]byte{n.self.raw}
}
