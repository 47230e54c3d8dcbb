package swarm

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/RoaringBitmap/roaring"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"github.com/anacrolix/torrent/types"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// ErrDropped reports a fetch ended by Drop.
var ErrDropped = errors.New("release dropped")

// partSuffix marks a bundle that is still downloading. fileStorage renames
// it to the bundle's name once every piece has passed its hash check.
const partSuffix = ".part"

// Sources are where to fetch a release from, as "host:port" BitTorrent
// addresses: the origins, whose bytes count as origin bytes, and other nodes.
type Sources struct {
	Origins []string
	Peers   []string
}

// entry is one release this client seeds or fetches. Fields other than m,
// cancel, done and writeErr are guarded by Client.mu.
type entry struct {
	m        release.Manifest
	started  time.Time
	cancel   context.CancelFunc // stops the fetch goroutine
	done     chan struct{}      // closed once finished is set
	writeErr chan error         // storage write failures reported by anacrolix

	finished bool  // the fetch is over: verified (err nil) or failed
	err      error // why it failed
	waiters  int   // Fetch calls waiting on done
	t        *torrent.Torrent
	store    storage.ClientImplCloser
	pending  []torrent.PeerInfo       // sources given before t exists
	given    map[string]time.Time     // when each address was last handed to anacrolix
	regive   map[string]time.Duration // how long after that it may be handed again

	freshPart   bool      // the part file is new (reservePart): no piece to check
	use         OriginUse // how this fetch uses the origins; its share changes on the fetch's goroutine only
	bansAtStart int       // peer IPs the client had banned when the fetch started
	originsOpen bool      // origins may be handed to anacrolix now
	origins     []string  // the origins' addresses, as last given
	peers       []string  // the peers' addresses, as last given
}

func newEntry(m release.Manifest, cancel context.CancelFunc) *entry {
	return &entry{
		m:        m,
		started:  time.Now(),
		cancel:   cancel,
		done:     make(chan struct{}),
		writeErr: make(chan error, 1),
	}
}

// usableLocked reports why the client cannot serve releases right now.
func (c *Client) usableLocked() error {
	if c.closed {
		return ErrClosed
	}
	if !c.started {
		return ErrNotStarted
	}
	return nil
}

// Seed serves the complete bundle already stored at BundlePath(Config.Dir,
// m.ReleaseID), or in shared mode the shared copy (Client.BundlePath). It rebuilds the info dictionary from the file and m
// (InfoName(m.App, m.Version), m.PieceLength), which hash-checks every piece,
// and refuses the file unless its infohash equals m.InfoHash
// (ErrInfoHashMismatch) and its sha256 equals m.ReleaseID
// (release.ErrIDMismatch). Seeding a release already served is a no-op.
func (c *Client) Seed(m release.Manifest) error {
	short := m.ReleaseID.Short()
	if err := m.Validate(); err != nil {
		return fmt.Errorf("seed %s: %w", short, err)
	}
	c.mu.Lock()
	served, err := c.servedLocked(m)
	closing := c.closing
	c.mu.Unlock()
	if err != nil || served {
		return wrapOp("seed", short, err)
	}

	path := c.BundlePath(m.ReleaseID)
	d, err := verifyBundle(path, m, closing)
	if errors.Is(err, errStopped) {
		err = ErrClosed
	}
	if err != nil {
		return fmt.Errorf("seed %s: %w", short, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if served, err := c.servedLocked(m); err != nil || served {
		return wrapOp("seed", short, err)
	}
	e := newEntry(m, func() {})
	if err := c.addTorrentLocked(e, d.infoBytes); err != nil {
		return fmt.Errorf("seed %s: %w", short, err)
	}
	e.finished = true
	close(e.done)
	c.entries[m.ReleaseID] = e
	c.log.Debug("seeding", zap.String("release_id", string(m.ReleaseID)), zap.String("app", m.App), zap.String("version", m.Version))
	return nil
}

// servedLocked reports whether m is already seeded, or an error if the client
// is unusable or a fetch of m is under way.
func (c *Client) servedLocked(m release.Manifest) (bool, error) {
	if err := c.usableLocked(); err != nil {
		return false, err
	}
	e := c.entries[m.ReleaseID]
	switch {
	case e == nil:
		return false, nil
	case e.m.InfoHash != m.InfoHash:
		return false, fmt.Errorf("already served with infohash %s, not %s", e.m.InfoHash, m.InfoHash)
	case !e.finished:
		return false, errors.New("a fetch of this release is in progress")
	}
	return true, nil
}

func wrapOp(op, short string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, short, err)
}

// Fetch downloads the bundle for m into BundlePath(Config.Dir, m.ReleaseID)
// from src and the peers they lead to. It learns the info dictionary from
// peers (BEP 9; the infohash is in the signed manifest), checks every piece
// against it, then checks the whole file's sha256 against m.ReleaseID. On a
// mismatch it removes the file and its directory and returns an error
// wrapping release.ErrIDMismatch.
//
// A bundle already complete and valid on disk is seeded at once; a partial
// one (a ".part" file) is resumed after its pieces are re-checked. After
// success the client keeps seeding the bundle until Drop or Close.
//
// In shared mode (Config.SharedDir) nothing is stored: every piece is
// downloaded and checked whatever the shared copy holds, and the release id
// check reads the shared copy.
//
// Fetch returns when the bundle is verified, when the fetch fails, or when ctx
// ends (with ctx.Err() wrapped). Concurrent calls for one release share one
// download; when the last of them gives up on its ctx, the download stops and
// its partial file stays for a later Fetch to resume.
func (c *Client) Fetch(ctx context.Context, m release.Manifest, src Sources) error {
	return c.FetchWith(ctx, m, src, OriginUse{})
}

// OriginUse says how a fetch uses the origins among its sources. The zero
// value takes from origins and peers alike from the start, so the origin
// uploads to every node until the last one is done.
//
// A fleet sets it so that the origin sends each piece about once: a few
// nodes are feeders, each fetching a different share of the pieces from the
// origin (Share of Of), and every other node fetches from peers only,
// turning to the origin (Fallback) only if it goes that long without a
// verified piece.
type OriginUse struct {
	// Share and Of, with Of > 0, make this fetch an origin feeder: from the
	// origins it takes only the pieces whose index is Share mod Of, and once
	// it holds them it closes its origin connections and fetches the rest
	// from peers.
	Share, Of int
	// Fallback, when positive, keeps a fetch off the origins until it has
	// gone this long without a verified piece (a feeder: after its share),
	// and then opens them for a pulse of Fallback/4 at a time.
	Fallback time.Duration
	// SwarmProgress, when set, reports how far the rest of the fleet has got
	// with this release: any measure that rises while other nodes fetch it,
	// such as the sum of their gossiped progress. While it has risen within
	// the last Fallback the swarm is working, so a fetch that gets nothing
	// from its own peers is slow, not starved, and waits for peers rather
	// than asking the origin, up to starveLimit Fallback periods without a
	// verified piece of its own. The policy loop calls it about once a
	// second (four times per Fallback if that is shorter); it must not
	// block.
	//
	// Once the fetch has seen the client ban a peer, a swarm that works no
	// longer holds it off the origin: the pieces it lacks may be the
	// banned peer's share, which the rest of the swarm is not fetching. It
	// then waits only while a connected peer holds a piece it lacks.
	SwarmProgress func() float64
	// Reassign, when set, is asked for this node's share again when the
	// client has banned a peer (for sending data that fails a piece hash)
	// since the fetch last asked, with every IP it has banned (BannedIPs):
	// a feeder whose peers have banned it sends them nothing, so its share
	// must come from another node. While any peer is banned it is asked
	// again every reassignInterval too: the node's view of the fleet may
	// have been partial when the ban came (a node that has just joined).
	// It returns the share this node holds now, as Share and Of above (of
	// 0: none). A share other than the
	// fetch's own makes it a feeder of that share from then on, as if it
	// had started so: it asks for only that share's pieces, from the
	// origins too, until it holds them, then fetches the rest from peers.
	// An answer of no share ends a share an earlier answer gave (another
	// node, ranked before this one in a fuller view, took it): the fetch
	// leaves the origins and fetches the rest from peers. A share the
	// fetch started with stays. It is called from the fetch's policy loop
	// and must not block.
	Reassign func(banned []string) (share, of int)
}

func (u OriginUse) validate() error {
	if u.Of < 0 || u.Share < 0 || (u.Of > 0 && u.Share >= u.Of) || u.Fallback < 0 {
		return fmt.Errorf("origin use: share %d of %d, fallback %v", u.Share, u.Of, u.Fallback)
	}
	return nil
}

// FetchWith is Fetch with an origin policy; the first call for a release
// sets it for the whole download (OriginUse.Reassign may change its share).
func (c *Client) FetchWith(ctx context.Context, m release.Manifest, src Sources, use OriginUse) error {
	short := m.ReleaseID.Short()
	if err := use.validate(); err != nil {
		return fmt.Errorf("fetch %s: %w", short, err)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("fetch %s: %w", short, err)
	}
	c.mu.Lock()
	if err := c.usableLocked(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("fetch %s: %w", short, err)
	}
	e := c.entries[m.ReleaseID]
	if e == nil {
		e = c.startFetchLocked(m, use)
	} else if e.m.InfoHash != m.InfoHash {
		c.mu.Unlock()
		return fmt.Errorf("fetch %s: already served with infohash %s, not %s", short, e.m.InfoHash, m.InfoHash)
	}
	e.waiters++
	c.addSourcesLocked(e, src)
	c.mu.Unlock()

	select {
	case <-e.done:
	case <-ctx.Done():
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	e.waiters--
	if e.finished {
		return wrapOp("fetch", short, e.err)
	}
	if e.waiters == 0 {
		c.removeLocked(e, ctx.Err())
	}
	return fmt.Errorf("fetch %s: %w", short, ctx.Err())
}

// startFetchLocked registers an entry for m and starts the goroutine that
// fetches it.
func (c *Client) startFetchLocked(m release.Manifest, use OriginUse) *entry {
	ctx, cancel := context.WithCancel(context.Background())
	e := newEntry(m, cancel)
	e.use = use
	e.originsOpen = use.Of > 0 || use.Fallback == 0
	e.bansAtStart = len(bannedIPs(c.cl))
	c.entries[m.ReleaseID] = e
	c.log.Info("fetch started",
		zap.String("release_id", string(m.ReleaseID)),
		zap.String("app", m.App),
		zap.String("version", m.Version),
		zap.Int64("size", m.BundleSize))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.finish(e, c.fetch(ctx, e))
	}()
	return e
}

// fetch does the work of one Fetch; ctx ends when the entry is removed.
func (c *Client) fetch(ctx context.Context, e *entry) error {
	m := e.m
	path := c.BundlePath(m.ReleaseID)
	if c.shared != nil {
		// The shared copy is not this client's: download every piece.
		return c.download(ctx, e, path)
	}
	d, err := verifyBundle(path, m, ctx.Done())
	switch {
	case err == nil:
		c.log.Debug("bundle already on disk", zap.String("release_id", string(m.ReleaseID)))
		return c.attach(ctx, e, d.infoBytes)
	case errors.Is(err, errStopped):
		return ctx.Err()
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, release.ErrIDMismatch):
		return err
	default:
		// Corrupt or cut short: keep it as a partial download so the
		// initial piece check keeps whatever pieces are still good.
		c.log.Warn("stored bundle failed verification; downloading again",
			zap.String("release_id", string(m.ReleaseID)), zap.Error(err))
		if err := demote(path, m.BundleSize); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	fresh, err := reservePart(path, m.BundleSize)
	if err != nil {
		return err
	}
	c.mu.Lock()
	e.freshPart = fresh
	c.mu.Unlock()
	return c.download(ctx, e, path)
}

// download fetches e's bundle from peers into path (its final name), then
// checks the whole file against the release id.
func (c *Client) download(ctx context.Context, e *entry, path string) error {
	m := e.m
	if err := c.attach(ctx, e, nil); err != nil {
		return err
	}
	c.mu.Lock()
	t := e.t
	c.mu.Unlock()
	if t == nil {
		return ctx.Err()
	}

	// The policy runs from the start: a node held off the origin whose
	// peers have nothing may not even get the info dictionary from them.
	tick := time.NewTicker(policyInterval)
	defer tick.Stop()
	w := &watch{feeding: e.use.Of > 0, lastAt: time.Now(), progressAt: time.Now(), redialGap: infoRedial}
info:
	for {
		select {
		case <-t.GotInfo():
			break info
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			c.applyPolicy(e, t, w, now)
		}
	}
	if err := c.downloadAll(ctx, t, m); err != nil {
		return err
	}
wait:
	for {
		select {
		case <-t.Complete().On():
			break wait
		case err := <-e.writeErr:
			return fmt.Errorf("write bundle: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			c.applyPolicy(e, t, w, now)
		}
	}
	c.noteBans(m)

	id, err := fileID(path, ctx.Done())
	if errors.Is(err, errStopped) {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	if id != m.ReleaseID {
		return fmt.Errorf("%w: got %s, want %s", release.ErrIDMismatch, id, m.ReleaseID)
	}
	return nil
}

// downloadAll checks the info dictionary peers sent against m and asks for
// every piece. It holds c.mu so that the torrent is not dropped meanwhile.
func (c *Client) downloadAll(ctx context.Context, t *torrent.Torrent, m release.Manifest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if info := t.Info(); info.Length != m.BundleSize || info.PieceLength != m.PieceLength || len(info.Files) != 0 {
		return fmt.Errorf("%w: peers' info has length %d, piece length %d, %d files; manifest says %d, %d, one file",
			ErrInfoHashMismatch, info.Length, info.PieceLength, len(info.Files), m.BundleSize, m.PieceLength)
	}
	if e := c.entries[m.ReleaseID]; e != nil && e.use.Of > 0 {
		// A feeder wants only its share until it holds it.
		for i := e.use.Share; i < t.NumPieces(); i += e.use.Of {
			t.Piece(i).SetPriority(types.PiecePriorityNormal)
		}
		return nil
	}
	t.DownloadAll()
	return nil
}

// finish records how a fetch ended, unless the entry was removed meanwhile.
// A failed fetch stops serving; one whose bytes are not the release (or not
// the manifest's torrent) also loses its files.
func (c *Client) finish(e *entry, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.finished {
		return
	}
	id := string(e.m.ReleaseID)
	took := zap.Duration("took", time.Since(e.started))
	if err == nil {
		e.finished = true
		close(e.done)
		// What this fetch received: payload it needed (a piece resumed
		// from disk is not in it, so a piece fetched twice shows), and
		// payload it did not (duplicates, endgame).
		fields := []zap.Field{zap.String("release_id", id), took}
		if e.t != nil {
			st := e.t.Stats()
			useful := st.BytesReadUsefulData.Int64()
			fields = append(fields, zap.Int64("fetched_bytes", useful), zap.Int64("wasted_bytes", st.BytesReadData.Int64()-useful))
		}
		c.log.Info("fetch done", fields...)
		return
	}
	c.removeLocked(e, err)
	if errors.Is(err, release.ErrIDMismatch) || errors.Is(err, ErrInfoHashMismatch) {
		dir := filepath.Dir(BundlePath(c.cfg.Dir, e.m.ReleaseID))
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			c.log.Warn("remove bad bundle", zap.String("release_id", id), zap.Error(rmErr))
		}
	}
	c.log.Warn("fetch failed", zap.String("release_id", id), took, zap.Error(err))
}

// attach adds e's torrent unless ctx has ended (the entry was removed).
// infoBytes, when set, mean the bundle is complete and verified on disk.
func (c *Client) attach(ctx context.Context, e *entry, infoBytes []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.addTorrentLocked(e, infoBytes)
}

// addTorrentLocked adds e's torrent to anacrolix with its own storage (see
// newStorage). With infoBytes the torrent starts complete: the bundle was
// verified, so anacrolix trusts the full-size file without re-hashing it.
func (c *Client) addTorrentLocked(e *entry, infoBytes []byte) error {
	var ih metainfo.Hash
	if err := ih.FromHexString(e.m.InfoHash); err != nil {
		return fmt.Errorf("infohash %q: %w", e.m.InfoHash, err)
	}
	store, err := c.newStorage(e, infoBytes != nil)
	if err != nil {
		return err
	}
	t, isNew := c.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, Storage: store, ChunkSize: chunkSize})
	if !isNew {
		store.Close()
		return fmt.Errorf("infohash %s is already served for another release", e.m.InfoHash)
	}
	if infoBytes != nil {
		if err := t.SetInfoBytes(infoBytes); err != nil {
			c.dropTorrent(t, e.m.ReleaseID)
			store.Close()
			return fmt.Errorf("set info: %w", err)
		}
	}
	writeErr := e.writeErr
	t.SetOnWriteChunkError(func(err error) {
		select {
		case writeErr <- err:
		default:
		}
	})
	e.t, e.store = t, store
	if len(e.pending) > 0 {
		t.AddPeers(e.pending)
		e.pending = nil
	}
	return nil
}

// newStorage is the storage of e's release: in shared mode a sharedStorage
// over the shared copy, otherwise a fileStorage: the bundle in the
// release's directory, a ".part" file while downloading. complete says the
// bundle is verified.
func (c *Client) newStorage(e *entry, complete bool) (storage.ClientImplCloser, error) {
	path := c.BundlePath(e.m.ReleaseID)
	if c.shared != nil {
		return newSharedStorage(path, complete, c.shared), nil
	}
	if complete {
		// anacrolix reads a part file in preference to the bundle.
		if err := os.Remove(path + partSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	m := e.m
	resumed := func(pieces, of int, bytes int64) {
		c.log.Info(fmt.Sprintf("resumed download: %d of %d pieces already verified (%s)", pieces, of, SizeText(bytes, false)),
			zap.String("release_id", string(m.ReleaseID)), zap.String("app", m.App), zap.String("version", m.Version),
			zap.Int("pieces", pieces), zap.Int("of", of), zap.Int64("bytes", bytes))
	}
	return newFileStorage(path, complete, e.freshPart, resumed), nil
}

// removeLocked stops serving e and wakes its waiters with err if it had not
// finished.
func (c *Client) removeLocked(e *entry, err error) {
	e.cancel()
	if c.entries[e.m.ReleaseID] == e {
		delete(c.entries, e.m.ReleaseID)
	}
	if e.t != nil {
		c.dropTorrent(e.t, e.m.ReleaseID)
		e.t = nil
	}
	if e.store != nil {
		if err := e.store.Close(); err != nil {
			c.log.Debug("close storage", zap.String("release_id", string(e.m.ReleaseID)), zap.Error(err))
		}
		e.store = nil
	}
	if !e.finished {
		e.finished = true
		e.err = err
		close(e.done)
	}
}

// AddSources adds peers to a release being fetched or seeded, as gossip
// learns of them. It does nothing for a release this client does not know.
func (c *Client) AddSources(id release.ID, src Sources) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[id]; e != nil {
		c.addSourcesLocked(e, src)
	}
}

// An address handed to anacrolix is not handed again for a while:
// anacrolix keeps it in its pool until it dials it, and redials a
// connection that closed only when given the address anew. The wait starts
// at firstRegive and doubles up to regiveAfter while the address has no
// connection of ours: a dial that failed because the peer had not added the
// release yet (a handshake it refuses) is retried within a second, and a
// peer that stays away is retried every regiveAfter.
const (
	firstRegive = 500 * time.Millisecond
	regiveAfter = 5 * time.Second
)

// addSourcesLocked remembers src as e's sources and gives them (giveLocked):
// those it has not had lately, and no peers while it has at least half its
// connections. anacrolix dials whatever
// sits in its peer pool and, at its connection cap, drops a connection for
// each new one while its incoming and outgoing connections are unbalanced:
// refilling the pool on every agent tick kept 100 in-process agents
// reshuffling their connections, 100–170 handshakes each per release.
func (c *Client) addSourcesLocked(e *entry, src Sources) {
	if len(src.Origins) > 0 {
		e.origins = slices.Clone(src.Origins)
	}
	if len(src.Peers) > 0 {
		e.peers = slices.Clone(src.Peers)
	}
	c.giveLocked(e)
}

// giveLocked hands e's torrent the sources last given that it has not had
// lately: the origins while they are open, the peers while it has fewer
// than half its connections.
func (c *Client) giveLocked(e *entry) {
	var fresh []torrent.PeerInfo
	if e.originsOpen && (e.t == nil || !hasOriginConn(e.t)) {
		// The origins are wanted whatever the connection count; but not
		// given again while connected to one: anacrolix keeps an address
		// it is already connected to in its pool until a slot frees, and
		// would dial the origin again after the fetch left it.
		fresh = c.freshLocked(e, Sources{Origins: e.origins})
	}
	if e.t == nil || len(e.t.PeerConns()) < max(c.cfg.MaxConnsPerTorrent/2, 1) {
		fresh = append(fresh, c.freshLocked(e, Sources{Peers: e.peers})...)
	}
	if len(fresh) == 0 {
		return
	}
	if e.t == nil {
		e.pending = append(e.pending, fresh...)
		return
	}
	e.t.AddPeers(fresh)
}

// freshLocked turns src into peers, leaving out those handed to anacrolix
// too lately (see firstRegive) and those it is connected to by its own dial.
func (c *Client) freshLocked(e *entry, src Sources) []torrent.PeerInfo {
	now := time.Now()
	if e.given == nil {
		e.given, e.regive = map[string]time.Time{}, map[string]time.Duration{}
	}
	var dialled map[string]bool
	if e.t != nil {
		dialled = map[string]bool{}
		for _, pc := range e.t.PeerConns() {
			if pc.Discovery != torrent.PeerSourceIncoming && pc.RemoteAddr != nil {
				dialled[pc.RemoteAddr.String()] = true
			}
		}
	}
	var fresh []torrent.PeerInfo
	for _, p := range c.peerInfos(c.addr, src) {
		addr := p.Addr.String()
		if dialled[addr] {
			delete(e.regive, addr) // connected: the next loss is retried soon
			continue
		}
		at, ok := e.given[addr]
		wait := cmp.Or(e.regive[addr], firstRegive)
		if ok && now.Sub(at) < wait {
			continue
		}
		if ok {
			e.regive[addr] = min(2*wait, regiveAfter)
		}
		e.given[addr] = now
		fresh = append(fresh, p)
	}
	return fresh
}

// openOriginsLocked lets e use the origins from now on.
func (c *Client) openOriginsLocked(e *entry) {
	e.originsOpen = true
	for _, a := range e.origins {
		delete(e.given, a)
	}
	c.giveLocked(e)
}

// leaveOriginsLocked closes e's connections to origins and keeps them out.
func (c *Client) leaveOriginsLocked(e *entry) {
	e.originsOpen = false
	if e.t != nil {
		closeOrigins(e.t)
	}
}

// hasOriginConn reports whether t is connected to an origin.
func hasOriginConn(t *torrent.Torrent) bool {
	return slices.ContainsFunc(t.PeerConns(), isOrigin)
}

// closeOrigins closes t's connections to origins and says how many.
func closeOrigins(t *torrent.Torrent) (n int) {
	for _, pc := range t.PeerConns() {
		if isOrigin(pc) {
			pc.Close()
			n++
		}
	}
	return n
}

// Progress reports how many bytes of release id have passed their piece
// check, and the bundle's size; ok is false if this client does not know id.
func (c *Client) Progress(id release.ID) (have, total int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil {
		return 0, 0, false
	}
	total = e.m.BundleSize
	switch {
	case e.finished:
		return total, total, true
	case e.t == nil:
		return 0, total, true
	}
	return verifiedBytes(e.t), total, true
}

// verifiedBytes sums the lengths of t's pieces that passed their hash check.
func verifiedBytes(t *torrent.Torrent) int64 {
	info := t.Info()
	if info == nil {
		return 0
	}
	pl, length := info.PieceLength, info.Length
	var have int64
	begin := int64(0)
	for _, r := range t.PieceStateRuns() {
		end := begin + int64(r.Length)
		if r.Complete {
			have += min(end*pl, length) - begin*pl
		}
		begin = end
	}
	return have
}

// Drop stops serving (or fetching) release id. Files stay on disk; a Fetch
// waiting on it returns ErrDropped.
func (c *Client) Drop(id release.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[id]; e != nil {
		c.removeLocked(e, ErrDropped)
	}
}

// policyInterval is how often a download checks its origin policy (a
// feeder's share, a stall) and looks for banned peers.
const policyInterval = 250 * time.Millisecond

// infoRedial is how long a fetch waits for the info dictionary before it
// dials its peers again; each redial doubles the wait, up to maxInfoRedial,
// so that hundreds of nodes waiting on a busy host do not churn.
const (
	infoRedial    = time.Second
	maxInfoRedial = 16 * time.Second
)

// starveLimit: a fetch whose peers hold pieces it lacks but send none, or
// whose swarm progresses without it, falls back to the origin after this many
// OriginUse.Fallback periods.
const starveLimit = 6

// reassignInterval is how often a fetch asks OriginUse.Reassign again while
// the client has banned a peer.
const reassignInterval = 3 * time.Second

// swarmSample is how often the policy loop asks OriginUse.SwarmProgress (or
// four times per Fallback, if that is more often).
const swarmSample = time.Second

// hasPeerConn reports whether t is connected to a peer other than an
// origin.
func hasPeerConn(t *torrent.Torrent) bool {
	for _, pc := range t.PeerConns() {
		if !isOrigin(pc) {
			return true
		}
	}
	return false
}

// peerHasWanted reports whether a connected peer other than an origin holds
// a piece t lacks.
func peerHasWanted(t *torrent.Torrent) bool {
	var done roaring.Bitmap
	i := 0
	for _, run := range t.PieceStateRuns() {
		if run.Complete {
			done.AddRange(uint64(i), uint64(i+run.Length))
		}
		i += run.Length
	}
	for _, pc := range t.PeerConns() {
		if isOrigin(pc) {
			continue
		}
		if pc.PeerPieces().AndCardinality(&done) < pc.PeerPieces().GetCardinality() {
			return true
		}
	}
	return false
}

// watch is one download's policy state, owned by its goroutine.
type watch struct {
	feeding    bool      // a feeder that does not hold its share yet
	have       int64     // bytes held (verified or written) at lastAt
	lastAt     time.Time // when have last grew, or a peer last held a wanted piece
	progressAt time.Time // when have last grew
	lastBans   time.Time
	redialAt   time.Time     // when peers were last redialled for the info
	redialGap  time.Duration // the wait before the next redial; doubles
	pulseAt    time.Time     // when a fallback opened the origins; zero: none open
	leftAt     time.Time     // when the fetch last left the origins
	swarm      float64       // the highest OriginUse.SwarmProgress seen
	swarmAt    time.Time     // when SwarmProgress was last asked
	swarmRose  time.Time     // when it, or peerPieces, last rose
	peerPieces uint64        // pieces connected peers held when last asked
	bans       int           // banned IPs when Reassign was last asked; 0 at first
	reassignAt time.Time     // when Reassign was last asked
	reassigned bool          // the fetch's share is one Reassign gave
	banned     bool          // the client banned a peer since the fetch started
}

// swarmWorking asks use.SwarmProgress and counts the pieces connected peers
// hold (at most once per swarmSample), and reports whether either rose
// within the last Fallback, or SwarmProgress has not left zero yet: at the
// start of a rollout every node has nothing, and on a busy host the
// feeders' first pieces can take longer than Fallback to show, which is no
// reason for the whole fleet to turn to the origin at once. Peers gaining
// pieces is the local sign: gossiped progress lags when hundreds of nodes
// update their state at once.
func (w *watch) swarmWorking(t *torrent.Torrent, use OriginUse, now time.Time) bool {
	if use.SwarmProgress == nil {
		return false
	}
	if now.Sub(w.swarmAt) >= min(swarmSample, use.Fallback/4) {
		w.swarmAt = now
		if p := use.SwarmProgress(); p > w.swarm {
			w.swarm, w.swarmRose = p, now
		}
		n := peersPieces(t)
		if n > w.peerPieces {
			w.swarmRose = now
		}
		w.peerPieces = n
	}
	return w.swarm == 0 || now.Sub(w.swarmRose) < use.Fallback
}

// peersPieces is the number of pieces t's peers other than origins hold,
// summed over its connections.
func peersPieces(t *torrent.Torrent) (n uint64) {
	for _, pc := range t.PeerConns() {
		if !isOrigin(pc) {
			n += pc.PeerPieces().GetCardinality()
		}
	}
	return n
}

// applyPolicy moves a feeder off the origins once it holds its share, opens
// the origins to a fetch that made no progress for OriginUse.Fallback,
// reports banned peers and, after a ban, asks OriginUse.Reassign for the
// node's share.
func (c *Client) applyPolicy(e *entry, t *torrent.Torrent, w *watch, now time.Time) {
	reassign, unassign, share, of := false, false, 0, 0
	if now.Sub(w.lastBans) >= banCheckInterval {
		w.lastBans = now
		banned := c.noteBans(e.m)
		if len(banned) > e.bansAtStart {
			w.banned = true
		}
		if e.use.Reassign != nil && (len(banned) > w.bans || (w.bans > 0 && now.Sub(w.reassignAt) >= reassignInterval)) {
			w.bans, w.reassignAt = len(banned), now
			share, of = e.use.Reassign(banned)
			reassign = of > 0 && (share != e.use.Share || of != e.use.Of)
			unassign = of <= 0 && w.reassigned
		}
	}
	hasInfo := t.Info() != nil
	working := w.swarmWorking(t, e.use, now)
	// After a ban the swarm may work on everything but the banned peer's
	// share: only peers that hold what this node lacks are worth waiting
	// for (see OriginUse.SwarmProgress).
	waitSwarm := working && !w.banned
	if hasInfo {
		// Progress counts chunks written, not only verified pieces: on a
		// busy host a piece's last chunk and its hash check can lag far
		// behind its first bytes. (BytesCompleted is also far cheaper than
		// Stats or PieceStateRuns, and this runs four times a second.)
		if have := t.BytesCompleted(); have > w.have {
			w.have, w.lastAt, w.progressAt = have, now, now
		} else if (waitSwarm || peerHasWanted(t)) && now.Sub(w.progressAt) < starveLimit*e.use.Fallback {
			// Slow is not stalled: a connected peer holds a piece this node
			// lacks, or the rest of the swarm is progressing (on a busy host
			// everyone is slow), so waiting costs the origin nothing.
			// (Unless nothing came for several fallbacks: a peer may claim
			// pieces it does not send.)
			w.lastAt = now
		}
	} else if (waitSwarm || hasPeerConn(t)) && now.Sub(w.progressAt) < starveLimit*e.use.Fallback {
		// Still waiting for the info dictionary from connected peers
		// (redialled with backoff below): not starved yet.
		w.lastAt = now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.t != t {
		return // removed meanwhile
	}
	switch {
	case reassign:
		c.feedLocked(e, t, w, share, of, hasInfo)
	case unassign:
		c.unfeedLocked(e, t, w, hasInfo, now)
	}
	if w.feeding && hasInfo && shareComplete(t, e.use) {
		w.feeding = false
		w.leftAt = now
		c.leaveOriginsLocked(e)
		t.DownloadAll()
		w.lastAt = now // the fallback clock starts now
		c.log.Info("feeder holds its share of the origin's pieces; fetching the rest from peers",
			zap.String("release_id", string(e.m.ReleaseID)), zap.Int("share", e.use.Share), zap.Int("of", e.use.Of))
	}
	if !hasInfo && now.Sub(w.redialAt) >= w.redialGap && now.Sub(e.started) >= infoRedial {
		// A peer that had no info dictionary at the handshake does not offer
		// it later on that connection (anacrolix v1.59.1 asks only peers
		// that announced its size), so peers dialled before they had it
		// never hand it over: dial them again.
		w.redialAt = now
		w.redialGap = min(2*w.redialGap, maxInfoRedial)
		for _, pc := range t.PeerConns() {
			if !isOrigin(pc) {
				pc.Close()
			}
		}
		for _, a := range e.peers {
			delete(e.given, a)
		}
	}
	if !w.pulseAt.IsZero() && now.Sub(w.pulseAt) >= fallbackPulse(e.use) {
		// The pulse is over: back to peers, with the pieces it brought to
		// trade; starving for another Fallback opens the origin again.
		w.pulseAt = time.Time{}
		w.lastAt, w.leftAt = now, now
		c.leaveOriginsLocked(e)
	}
	if !e.originsOpen && !w.leftAt.Equal(now) {
		// A dial to an origin that was in flight when the fetch left the
		// origins completes afterwards; left open, it would serve a
		// feeder the whole bundle (16 feeders sent 3.8 copies so).
		if n := closeOrigins(t); n > 0 {
			c.log.Info("closed origin connections opened after the fetch left the origins",
				zap.String("release_id", string(e.m.ReleaseID)), zap.Int("conns", n))
		}
	}
	// Connections that closed are replaced from the sources last given.
	c.giveLocked(e)
	if !e.originsOpen && !w.feeding && e.use.Fallback > 0 && now.Sub(w.lastAt) >= e.use.Fallback && len(e.origins) > 0 {
		c.log.Warn("no verified piece from peers lately; asking the origin",
			zap.String("release_id", string(e.m.ReleaseID)), zap.Duration("stalled", now.Sub(w.lastAt)),
			zap.Duration("since_data", now.Sub(w.progressAt)), zap.Int64("have_bytes", w.have),
			zap.Bool("has_info", hasInfo), zap.Int("peers", len(t.PeerConns())), zap.Bool("swarm_working", working),
			zap.Bool("banned_a_peer", w.banned),
			zap.Duration("for", fallbackPulse(e.use)))
		w.pulseAt = now
		c.openOriginsLocked(e)
	}
}

// feedLocked makes e's fetch the feeder of share of of, as OriginUse.Reassign
// asked: it wants only that share's pieces (with the info dictionary; until
// then downloadAll reads e.use) and opens the origins until it holds them.
// A fallback pulse under way becomes part of it.
func (c *Client) feedLocked(e *entry, t *torrent.Torrent, w *watch, share, of int, hasInfo bool) {
	if share < 0 || share >= of {
		c.log.Warn("ignored an origin share out of range",
			zap.String("release_id", string(e.m.ReleaseID)), zap.Int("share", share), zap.Int("of", of))
		return
	}
	c.log.Info("origin feeder in place of a banned peer; fetching its share from the origin",
		zap.String("release_id", string(e.m.ReleaseID)), zap.Int("share", share), zap.Int("of", of),
		zap.Int("was_share", e.use.Share), zap.Int("was_of", e.use.Of))
	e.use.Share, e.use.Of = share, of
	w.feeding, w.reassigned = true, true
	w.pulseAt = time.Time{}
	if hasInfo {
		t.CancelPieces(0, t.NumPieces())
		for i := share; i < t.NumPieces(); i += of {
			t.Piece(i).SetPriority(types.PiecePriorityNormal)
		}
	}
	c.openOriginsLocked(e)
}

// unfeedLocked ends the share Reassign gave e's fetch: it leaves the origins
// and wants every piece again, from peers.
func (c *Client) unfeedLocked(e *entry, t *torrent.Torrent, w *watch, hasInfo bool, now time.Time) {
	c.log.Info("no longer an origin feeder: a node ranked before this one took the share",
		zap.String("release_id", string(e.m.ReleaseID)), zap.Int("share", e.use.Share), zap.Int("of", e.use.Of),
		zap.Bool("held_it", !w.feeding))
	e.use.Share, e.use.Of = 0, 0
	w.reassigned = false
	if !w.feeding {
		return
	}
	w.feeding = false
	w.leftAt, w.lastAt = now, now
	c.leaveOriginsLocked(e)
	if hasInfo {
		t.DownloadAll()
	}
}

// fallbackPulse is how long a starved fetch keeps the origin open: long
// enough for pieces to trade with its peers, short enough that one stuck
// node does not pull a whole copy from the origin (at 2 MiB/s, 10s of
// fallback gave the origin a second copy of a 32 MiB bundle per stuck node).
func fallbackPulse(use OriginUse) time.Duration {
	return max(use.Fallback/4, policyInterval)
}

// shareComplete reports whether t holds every piece of use's share.
func shareComplete(t *torrent.Torrent, use OriginUse) bool {
	for i := use.Share; i < t.NumPieces(); i += use.Of {
		if !t.PieceState(i).Complete {
			return false
		}
	}
	return true
}

// verifyBundle hashes the stored bundle at path and checks it against m: its
// size, its infohash (ErrInfoHashMismatch) and its release id
// (release.ErrIDMismatch). A missing file yields an fs.ErrNotExist error.
func verifyBundle(path string, m release.Manifest, stop <-chan struct{}) (digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return digest{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return digest{}, err
	}
	if fi.Size() != m.BundleSize {
		return digest{}, fmt.Errorf("%w: %s is %d bytes, manifest says %d", ErrInfoHashMismatch, path, fi.Size(), m.BundleSize)
	}
	d, err := digestBundle(f, m.BundleSize, m.PieceLength, InfoName(m.App, m.Version), true, stop)
	if err != nil {
		return digest{}, err
	}
	if d.infoHash != m.InfoHash {
		return digest{}, fmt.Errorf("%w: %s hashes to %s, manifest says %s", ErrInfoHashMismatch, path, d.infoHash, m.InfoHash)
	}
	if d.id != m.ReleaseID {
		return digest{}, fmt.Errorf("%w: got %s, want %s", release.ErrIDMismatch, d.id, m.ReleaseID)
	}
	return d, nil
}

// demote turns a stored bundle that failed verification into a partial
// download, or removes it if its size is wrong or a partial one exists.
func demote(path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path + partSuffix); err == nil || fi.Size() != size {
		return os.Remove(path)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return err
	}
	return os.Rename(path, path+partSuffix)
}

// fileID is the release id of the file at path.
func fileID(path string, stop <-chan struct{}) (release.ID, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-stop:
			return "", errStopped
		default:
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			return release.IDFromHash(h), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// dropTorrent drops t, surviving a known anacrolix v1.59.1 bug: closing a
// torrent can panic with "piece N has relative availability M" (an internal
// accounting check on peers that closed concurrently). The client lock is
// released by Drop's own deferred unlock as the panic unwinds, so recovering
// leaves the client usable; the torrent may stay registered until the
// client closes. Seen in benchmarks of 50+ agents in one process.
func (c *Client) dropTorrent(t *torrent.Torrent, id release.ID) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Warn("anacrolix panicked while dropping a torrent; ignored", zap.String("release_id", string(id)), zap.Any("panic", r))
		}
	}()
	t.Drop()
}
