package swarm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/swarmdeploy/swarm/release"
)

var (
	// ErrClosed reports a call on a Client after Close.
	ErrClosed = errors.New("swarm client closed")
	// ErrNotStarted reports a call that needs the network before Start.
	ErrNotStarted = errors.New("swarm client not started")
)

// Peer ids start with one of these, so that any client can tell origin bytes
// from peer bytes whichever side dialed. A peer can claim either; it only
// changes how its bytes are counted.
const (
	originPeerIDPrefix = "-SWO001-"
	agentPeerIDPrefix  = "-SWA001-"
)

const (
	// chunkSize is the block a node requests at a time, four times
	// BitTorrent's usual 16 KiB: every peer is a swarm node, and each
	// request, message and write costs anacrolix about the same whatever
	// its size (BENCHMARKS.md compares the two). It must not exceed
	// rateBurst: anacrolix refuses requests longer than the uploader's
	// burst.
	chunkSize = 64 << 10
	// rateBurst is every rate limiter's burst: the most a limiter lets
	// through at once after an idle spell, once per transfer, not per
	// second (at 1 MiB/s, a quarter of a second's worth). The upload
	// limiter needs at least a chunk; anacrolix would otherwise take the
	// per-connection request buffer as the burst. It is also the longest
	// read a capped connection makes (see cappedConn).
	rateBurst = 256 << 10
	// requestWindow is how many requests a node keeps in flight to one
	// peer: 8 MiB of 64 KiB chunks, plenty for a datacenter's round trips
	// (BENCHMARKS.md, "Release size", compares 64 and 128).
	// peerRequestBudget is the bytes an uploader lets one connection's
	// requests hold while it reads and sends them. A window larger than
	// the budget stalls the connection for good (see clampRequestWindow).
	// The budget is what anacrolix lets any peer keep in flight at the
	// usual 16 KiB (1024 requests, localClientReqq), so a client that is
	// not swarm cannot stall it either; swarm peers use half of it.
	requestWindow     = 128
	peerRequestBudget = 1024 * 16 << 10
	// maxHalfOpenConnsPerTorrent caps concurrent dials per release.
	maxHalfOpenConnsPerTorrent = 25
	// writerWakeInterval bounds how long a connection's writer sleeps.
	// anacrolix/torrent v1.59.1 loses wake-ups in peerConnMsgWriter.run (a
	// Broadcast between fillWriteBuffer and writeCond.Signaled is dropped),
	// which stalled about one loopback fetch in 75 until the next keepalive,
	// a minute by default, with requests or data queued on both sides. The
	// keepalive timer is the writer's only other wake-up; on a useful
	// connection it fires every interval for the cost of a 4-byte message.
	writerWakeInterval = time.Second
)

// A chunk larger than the limiters' burst would be refused by every peer,
// and a window larger than the budget stalls.
const (
	_ = uint(rateBurst - chunkSize)
	_ = uint(peerRequestBudget - requestWindow*chunkSize)
)

// Client seeds and fetches release bundles over BitTorrent. Create it with
// New, bind it with Start, and Close it when done.
type Client struct {
	cfg     Config
	log     *zap.Logger
	slogger *slog.Logger

	fromOrigin  atomic.Int64
	fromPeers   atomic.Int64
	connsOpened atomic.Int64 // BitTorrent handshakes completed
	connsClosed atomic.Int64
	banned      map[string]bool // peer IPs already reported banned; guarded by mu
	bannedN     atomic.Int64    // len(banned), read without locks
	shared      *sharedPages    // buffers of unverified pieces; nil unless Config.SharedDir

	mu      sync.Mutex
	cl      *torrent.Client
	store   storage.ClientImplCloser // default storage; never used for data
	sock    *peerSocket              // the BitTorrent listener and dialer
	addr    string
	started bool
	closed  bool
	closing chan struct{} // closed by Close
	entries map[release.ID]*entry
	final   Stats // counters as Close left them
	wg      sync.WaitGroup
}

// Stats are a client's byte counters since Start.
type Stats struct {
	BytesFromOrigin int64 // useful payload received from origin clients
	BytesFromPeers  int64 // useful payload received from non-origin clients
	BytesSent       int64 // payload uploaded
	BytesWasted     int64 // payload received that was not needed (duplicates)
	BadPieces       int64 // pieces that failed hash checks
	// ConnsOpened and ConnsClosed count peer connections that completed the
	// BitTorrent handshake and that closed; their difference is how many are
	// open, and a fast-growing ConnsOpened means connections churn.
	ConnsOpened int64
	ConnsClosed int64
	// PeersBanned counts peer addresses banned for sending data that failed
	// a piece hash. anacrolix bans the IP for every release until the
	// client restarts.
	PeersBanned int64
}

// New returns a Client for cfg. It does no I/O; Start binds the listener.
func New(cfg Config, log *zap.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.Named("swarm")
	c := &Client{
		cfg:     cfg,
		log:     log,
		slogger: newSlogger(log.Named("torrent")),
		closing: make(chan struct{}),
		entries: make(map[release.ID]*entry),
	}
	if cfg.SharedDir != "" {
		c.shared = &sharedPages{}
	}
	return c, nil
}

// BundlePath is where this client's bundle of release id is, or will be
// once fetched: BundlePath(Config.Dir, id), or with Config.SharedDir the
// shared copy, BundlePath(Config.SharedDir, id).
func (c *Client) BundlePath(id release.ID) string {
	if c.cfg.SharedDir != "" {
		return BundlePath(c.cfg.SharedDir, id)
	}
	return BundlePath(c.cfg.Dir, id)
}

// listenError reports a listen address that is taken.
type listenError struct {
	addr string
	err  error
}

func (e *listenError) Error() string {
	return "listen " + e.addr + ": address already in use; choose another --torrent port"
}

func (e *listenError) Unwrap() error { return e.err }

// Start creates the BitTorrent client and binds Config.ListenAddr.
func (c *Client) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.started {
		return errors.New("swarm client already started")
	}
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	cc, err := c.clientConfig()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// The client's TCP sockets are its own, not anacrolix's, so that the
	// download cap applies to every byte its connections read.
	cc.DisableTCP = true
	sock, err := listenPeers(c.cfg.ListenAddr, c.cfg.DownloadRate)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return &listenError{addr: c.cfg.ListenAddr, err: err}
		}
		return fmt.Errorf("start: listen %s: %w", c.cfg.ListenAddr, err)
	}
	cl, err := torrent.NewClient(cc)
	if err != nil {
		sock.Close()
		return fmt.Errorf("start: %w", err)
	}
	// Before any torrent exists, so nothing else reads the client's
	// listeners yet.
	cl.AddListener(sock)
	cl.AddDialer(sock)
	c.cl, c.store, c.sock, c.addr, c.started = cl, cc.DefaultStorage.(storage.ClientImplCloser), sock, sock.hostPort(), true
	c.log.Debug("started", zap.String("addr", c.addr), zap.Bool("origin", c.cfg.Origin))
	return nil
}

func (c *Client) clientConfig() (*torrent.ClientConfig, error) {
	host, port, err := splitListenAddr(c.cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	id, err := newPeerID(c.cfg.Origin)
	if err != nil {
		return nil, err
	}
	cc := torrent.NewDefaultClientConfig()
	cc.ListenHost = func(string) string { return host }
	cc.ListenPort = port
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().Is4() {
			cc.DisableIPv6 = true
		} else {
			cc.DisableIPv4 = true
		}
	}
	cc.PeerID = id
	// A datacenter fleet needs none of these; peers come from gossip.
	cc.NoDHT = true
	cc.DisableTrackers = true
	cc.DisableUTP = true
	cc.NoDefaultPortForwarding = true
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	// Plain BitTorrent handshakes only: obfuscation (MSE) hides traffic from
	// ISPs, costs a Diffie-Hellman exchange per connection, and on a failed
	// plain attempt anacrolix would dial again to try it.
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: true}
	// anacrolix refuses every incoming connection from a whole /24 for 15
	// minutes after one failed handshake from it, such as a peer that
	// dialled before this node added the release. A fleet's racks share
	// /24s (and every in-process test node shares 127.0.0.0/24): one early
	// dial would cut a node off from its neighbours for the whole rollout.
	cc.DisableAcceptRateLimiting = true
	cc.DisablePEX = c.cfg.DisablePEX
	// Upload to anyone who asks, not only tit-for-tat.
	cc.Seed = true
	cc.MaxAllocPeerRequestDataPerConn = peerRequestBudget
	cc.Callbacks.ReadExtendedHandshake = clampRequestWindow
	// The download cap is not anacrolix's DownloadRateLimiter, which
	// overshoots (see cappedConn): Start gives the client sockets that
	// apply it.
	cc.UploadRateLimiter = newLimiter(c.cfg.UploadRate)
	cc.EstablishedConnsPerTorrent = c.cfg.MaxConnsPerTorrent
	cc.HalfOpenConnsPerTorrent = min(maxHalfOpenConnsPerTorrent, c.cfg.MaxConnsPerTorrent)
	cc.Slogger = c.slogger
	cc.KeepAliveTimeout = writerWakeInterval
	// Every torrent gets its own storage (see newStorage); this default only
	// keeps anacrolix from opening a sqlite database in the working directory.
	cc.DefaultStorage = storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   c.cfg.Dir,
		PieceCompletion: storage.NewMapPieceCompletion(),
		Logger:          c.slogger,
	})
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, c.countReceived)
	cc.Callbacks.PeerConnAdded = append(cc.Callbacks.PeerConnAdded, func(*torrent.PeerConn) { c.connsOpened.Add(1) })
	cc.Callbacks.PeerConnClosed = func(*torrent.PeerConn) { c.connsClosed.Add(1) }
	return cc, nil
}

// clampRequestWindow lowers the request queue a peer advertises (reqq in
// its extended handshake) to requestWindow, before anacrolix reads it: a
// node then never has more requests in flight to one peer than that peer's
// peerRequestBudget can hold.
//
// Without it, one fetch alone stopped for good after about 30 MiB.
// anacrolix v1.59.1 advertises reqq 1024 and keeps up to 963 requests in
// flight (64 KiB each here: 60 MiB), while the uploader reserves budget
// for every request as it arrives (FIFO, granted while budget is left)
// and reads them one at a time in map order. When the reader picks a
// request whose reservation is not granted, it waits for budget that only
// sending already-read requests frees; once those are sent, the budget is
// held by granted requests nobody reads, and the connection hangs with
// both sides waiting. TestAnacrolixUploadStallsPastItsBudget shows it;
// docs/anacrolix.md has the whole story. With at most budget ÷ chunk
// requests in flight, every reservation is granted on arrival and the
// reader never waits.
//
// Every swarm node sends an extended handshake, so every window is set
// here; a peer that sends none keeps anacrolix's default of 250 requests.
func clampRequestWindow(_ *torrent.PeerConn, msg *pp.ExtendedHandshakeMessage) {
	if msg.Reqq <= 0 || msg.Reqq > requestWindow {
		msg.Reqq = requestWindow
	}
}

// banCheckInterval is how often a fetch looks for newly banned peers.
const banCheckInterval = time.Second

// noteBans logs, once each, the peers anacrolix banned since the last call:
// it drops and bans the IP of a peer whose data fails a piece hash, and the
// download goes on from the others. It returns every IP banned so far.
func (c *Client) noteBans(m release.Manifest) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl == nil || c.closed {
		return nil
	}
	ips := bannedIPs(c.cl)
	for _, ip := range ips {
		if c.banned[ip] {
			continue
		}
		if c.banned == nil {
			c.banned = map[string]bool{}
		}
		c.banned[ip] = true
		c.bannedN.Add(1)
		c.log.Warn("banned a peer that sent data failing its piece hash; downloading from the others",
			zap.String("peer_ip", ip), zap.String("app", m.App), zap.String("version", m.Version),
			zap.String("release_id", string(m.ReleaseID)))
	}
	return ips
}

// BannedIPs lists the peer IPs this client has banned for sending data that
// failed a piece hash, sorted, each once (IPv4 in dotted form, also for a
// peer reached over IPv6 as an IPv4-mapped address). anacrolix bans an IP
// for every release until the client restarts: no connection to or from
// it is made again, whatever its port.
func (c *Client) BannedIPs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl == nil || c.closed {
		return nil
	}
	return bannedIPs(c.cl)
}

// bannedIPs lists the IPs cl has banned, once each: anacrolix keeps an IPv4
// peer under both its plain and its IPv4-mapped IPv6 form.
func bannedIPs(cl *torrent.Client) []string {
	var out []string
	seen := map[netip.Addr]bool{}
	for _, s := range cl.BadPeerIPs() {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			out = append(out, s)
			continue
		}
		if ip = ip.Unmap(); !seen[ip] {
			seen[ip] = true
			out = append(out, ip.String())
		}
	}
	slices.Sort(out)
	return out
}

// isOrigin reports whether pc's peer says it is an origin.
func isOrigin(pc *torrent.PeerConn) bool {
	return string(pc.PeerID[:len(originPeerIDPrefix)]) == originPeerIDPrefix
}

// countReceived runs under anacrolix's client lock: atomics only.
func (c *Client) countReceived(ev torrent.ReceivedUsefulDataEvent) {
	n := int64(len(ev.Message.Piece))
	if pc, ok := ev.Peer.TryAsPeerConn(); ok && isOrigin(pc) {
		c.fromOrigin.Add(n)
		return
	}
	c.fromPeers.Add(n)
}

// peerSocket is a client's BitTorrent TCP listener and dialer, in place of
// anacrolix's own (ClientConfig.DisableTCP): with a download cap, every
// connection it makes or accepts reads through one limiter (cappedConn).
type peerSocket struct {
	net.Listener
	network string // "tcp4", "tcp6", or "tcp" for both
	host    string // the listen host as configured; "" for every address
	dialer  net.Dialer
	down    *downCap // nil without a download cap
}

// downCap is a client's download limiter. Its lock makes each reservation's
// time at least the previous one's.
type downCap struct {
	mu sync.Mutex
	l  *rate.Limiter
}

// wait is how long to hold n bytes just read to keep within the cap.
func (d *downCap) wait(n int) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	return d.l.ReserveN(now, n).DelayFrom(now)
}

// listenPeers binds addr ("host:port", checked by Config.Validate) for
// BitTorrent with a download cap of downBps bytes/s, 0 for none. An IPv4
// host listens and dials on IPv4 only, an IPv6 host on IPv6 only, an empty
// host on both, as anacrolix's sockets did.
func listenPeers(addr string, downBps int64) (*peerSocket, error) {
	host, _, err := splitListenAddr(addr)
	if err != nil {
		return nil, err
	}
	network := "tcp"
	if ip, err := netip.ParseAddr(host); err == nil {
		network = "tcp6"
		if ip.Unmap().Is4() {
			network = "tcp4"
		}
	}
	// BitTorrent sends its own keepalives; TCP's are not needed.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	s := &peerSocket{Listener: ln, network: network, host: host, dialer: net.Dialer{KeepAlive: -1, FallbackDelay: -1}}
	if downBps > 0 {
		s.down = &downCap{l: newLimiter(downBps)}
	}
	return s, nil
}

// hostPort is the socket's address as Client.Addr reports it: the bound
// port, and for an empty host the IPv4 wildcard.
func (s *peerSocket) hostPort() string {
	a := s.Addr().(*net.TCPAddr)
	if s.host == "" {
		return net.JoinHostPort("0.0.0.0", strconv.Itoa(a.Port))
	}
	return a.String()
}

// Accept is the listener's, for anacrolix, with the download cap applied.
func (s *peerSocket) Accept() (net.Conn, error) {
	nc, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return s.wrap(nc), nil
}

// Dial and DialerNetwork make peerSocket anacrolix's dialer.
func (s *peerSocket) Dial(ctx context.Context, addr string) (net.Conn, error) {
	nc, err := s.dialer.DialContext(ctx, s.network, addr)
	if err != nil {
		return nil, err
	}
	return s.wrap(nc), nil
}

func (s *peerSocket) DialerNetwork() string { return s.network }

func (s *peerSocket) wrap(nc net.Conn) net.Conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		// anacrolix does this for the connections of its own sockets: a
		// closed connection is reset, not left in TIME_WAIT.
		_ = tc.SetLinger(0)
	}
	if s.down == nil {
		return nc
	}
	return &cappedConn{Conn: nc, limit: s.down, closed: make(chan struct{})}
}

// cappedConn is a peer connection whose reads share the client's download
// limiter: every byte read counts, protocol messages and handshakes
// included, since the cap is on the link.
//
// anacrolix v1.59.1's own DownloadRateLimiter overshoots. Its reader notes
// the time, blocks in Read, then reserves the bytes at the noted time; the
// limiter takes an earlier time as its new "last" time, so the next
// reservation is credited that interval again. A read that waited a second
// on a quiet connection (a peer with nothing to send but a keepalive) gives
// every other connection a second of tokens for free: with 5–10 agents a
// 1 MiB/s cap averaged 1.26 MiB/s, and TestDownloadCapHoldsWithManyPeers
// read 2.33 MiB/s under 2 MiB/s. Here the time is taken after the read,
// under downCap's lock, so the limiter's clock only moves forward.
type cappedConn struct {
	net.Conn
	limit     *downCap
	closed    chan struct{} // closed by Close: ends a wait
	closeOnce sync.Once
}

// Read reads at most the limiter's burst, then waits until the limiter
// allows what it read before returning it: bytes reach anacrolix no faster
// than the cap, and the kernel holds back the sender once its socket
// buffer is full.
func (c *cappedConn) Read(b []byte) (int, error) {
	if len(b) > rateBurst {
		b = b[:rateBurst]
	}
	n, err := c.Conn.Read(b)
	if n == 0 {
		return n, err
	}
	if d := c.limit.wait(n); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
		}
	}
	return n, err
}

func (c *cappedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func newLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return rate.NewLimiter(rate.Inf, rateBurst)
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), rateBurst)
}

func newPeerID(origin bool) (string, error) {
	prefix := agentPeerIDPrefix
	if origin {
		prefix = originPeerIDPrefix
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("peer id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// Addr is the "host:port" the client listens on after Start, with the real
// port when port 0 was asked for; "" before Start. With an empty listen host
// it is a wildcard address ("0.0.0.0:port"): peers need a routable host,
// which is the caller's to advertise.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Close stops serving and fetching everything, waits for the client's
// goroutines and releases the listener. Files stay on disk. It is safe to
// call before Start and more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.closing)
	for _, e := range c.entries {
		c.removeLocked(e, ErrClosed)
	}
	cl, store, sock := c.cl, c.store, c.sock
	c.mu.Unlock()

	c.wg.Wait()
	if cl == nil {
		return nil
	}
	errs := closeClient(cl, c.log)
	// Only now: anacrolix's accept loop retries a failed Accept until it
	// sees its client closed.
	if err := sock.Close(); err != nil {
		errs = append(errs, err)
	}
	if store != nil {
		errs = append(errs, store.Close())
	}
	s := c.statsFrom(cl)
	c.mu.Lock()
	c.final = s
	c.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Stats returns the client's byte counters since Start; after Close, the
// final ones.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	cl, closed, final := c.cl, c.closed, c.final
	c.mu.Unlock()
	if closed || cl == nil {
		return final
	}
	return c.statsFrom(cl)
}

// Fetched reports the payload bytes this client has received from peers for
// release id since it began to fetch or seed it in this process:
// duplicates are not counted, nor are the pieces a resumed fetch found in
// its partial file. A download rate is this over time. ok is false if the
// client does not know id.
func (c *Client) Fetched(id release.ID) (n int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil {
		return 0, false
	}
	if e.t == nil {
		return 0, true
	}
	st := e.t.Stats()
	return st.BytesReadUsefulData.Int64(), true
}

// statsFrom reads counters that need no client lock: after a panic that
// closeClient or dropTorrent survived, anacrolix may still hold its lock.
func (c *Client) statsFrom(cl *torrent.Client) Stats {
	cs := cl.ConnStats()
	return Stats{
		BytesFromOrigin: c.fromOrigin.Load(),
		BytesFromPeers:  c.fromPeers.Load(),
		BytesSent:       cs.BytesWrittenData.Int64(),
		BytesWasted:     cs.BytesReadData.Int64() - cs.BytesReadUsefulData.Int64(),
		BadPieces:       cs.PiecesDirtiedBad.Int64(),
		PeersBanned:     c.bannedN.Load(),
		ConnsOpened:     c.connsOpened.Load(),
		ConnsClosed:     c.connsClosed.Load(),
	}
}

// peerInfos turns sources into anacrolix peers, skipping malformed addresses
// and this client's own.
func (c *Client) peerInfos(self string, src Sources) []torrent.PeerInfo {
	var out []torrent.PeerInfo
	add := func(addr string, trusted bool) {
		if addr == "" || addr == self {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			c.log.Debug("skip malformed peer address", zap.String("peer", addr), zap.Error(err))
			return
		}
		out = append(out, torrent.PeerInfo{
			Addr:    torrent.StringAddr(addr),
			Source:  torrent.PeerSourceDirect,
			Trusted: trusted,
		})
	}
	for _, a := range src.Origins {
		add(a, true)
	}
	for _, a := range src.Peers {
		add(a, false)
	}
	return out
}

// closeClient closes cl, surviving the same anacrolix accounting panic as
// dropTorrent when a torrent still registered is closed with it.
func closeClient(cl *torrent.Client, log *zap.Logger) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			log.Warn("anacrolix panicked while closing; ignored", zap.Any("panic", r))
			errs = nil
		}
	}()
	return cl.Close()
}
