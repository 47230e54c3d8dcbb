package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemNetwork connects gossip nodes in one process without sockets: for
// benchmarks and simulations of hundreds to thousands of nodes. Set it as
// Config.Network on every node; each node started on it gets its own
// address (127.1.x.y:7946, never dialled: no socket is opened).
//
// Packets behave like UDP: each node has a bounded queue and a packet that
// finds it full is dropped and counted, so a sender never waits for a
// receiver. Streams behave like TCP connections with a bounded window. A
// MemNetwork is safe for concurrent use and needs no closing: a node's
// Close detaches it.
type MemNetwork struct {
	// nodes maps "ip:port" to its *memTransport. Every packet looks its
	// destination up, from thousands of goroutines: a sync.Map keeps that
	// lock-free, where an RWMutex stalled them all whenever a node attached.
	nodes  sync.Map
	closed atomic.Bool

	mu   sync.Mutex // serialises attach
	next uint32     // addresses handed out so far

	delivered atomic.Uint64
	dropped   atomic.Uint64

	// cut, when set, says which links are down (from, to): their packets
	// are dropped and their dials refused. A test seam for partitions.
	cut atomic.Pointer[func(from, to string) bool]
}

// Sizes of the in-memory network's buffers.
const (
	// memPacketQueue is how many packets wait for a node before more are
	// dropped: about what a 2 MiB UDP receive buffer holds.
	memPacketQueue = 1024
	// memStreamQueue is how many dialled streams wait for a node to take
	// them, like a listen backlog.
	memStreamQueue = 64
	// memWindow is how many bytes a stream buffers in each direction
	// before Write waits for the reader, like a TCP window.
	memWindow = 256 << 10
	// memBase is the first address (127.1.0.0); node k gets memBase+k.
	memBase = 127<<24 | 1<<16
	// memMaxNodes keeps addresses within 127.1.0.1–127.255.255.254.
	memMaxNodes = 1<<24 - 1<<16 - 2
)

// Errors of attaching to a MemNetwork.
var (
	errNetworkFull   = errors.New("in-memory network has no address left")
	errNetworkClosed = errors.New("in-memory network closed")
)

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{}
}

// Stats returns how many packets were delivered to a node's queue and how
// many were dropped (queue full, or no node at the address), so a benchmark
// can report loss. Streams are not counted.
func (m *MemNetwork) Stats() (delivered, dropped uint64) {
	return m.delivered.Load(), m.dropped.Load()
}

// Close cuts every link at once: from then on packets are dropped, dials
// refused and no node can start on the network. Nodes still need closing,
// but then do not hear each other leave, which in a cluster of thousands
// sets off minutes of gossip about departures. For tearing down benchmarks.
func (m *MemNetwork) Close() {
	m.closed.Store(true)
}

// attach gives a node the next free address.
func (m *MemNetwork) attach() (*memTransport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, errNetworkClosed
	}
	if m.next >= memMaxNodes {
		return nil, errNetworkFull
	}
	m.next++
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, memBase+m.next)
	t := &memTransport{
		net:     m,
		ip:      ip,
		port:    DefaultPort,
		addr:    memAddr(net.JoinHostPort(ip.String(), strconv.Itoa(DefaultPort))),
		packets: make(chan *memberlist.Packet, memPacketQueue),
		streams: make(chan net.Conn, memStreamQueue),
		done:    make(chan struct{}),
		conns:   make(map[*memConn]struct{}),
	}
	m.nodes.Store(string(t.addr), t)
	return t, nil
}

// partition sets which links are down (nil: none), for tests.
func (m *MemNetwork) partition(cut func(from, to string) bool) {
	if cut == nil {
		m.cut.Store(nil)
		return
	}
	m.cut.Store(&cut)
}

// linked reports whether from can reach to.
func (m *MemNetwork) linked(from memAddr, to string) bool {
	cut := m.cut.Load()
	return cut == nil || !(*cut)(string(from), to)
}

func (m *MemNetwork) lookup(addr string) *memTransport {
	if m.closed.Load() {
		return nil
	}
	if t, ok := m.nodes.Load(addr); ok {
		return t.(*memTransport)
	}
	return nil
}

func (m *MemNetwork) detach(t *memTransport) {
	m.nodes.CompareAndDelete(string(t.addr), t)
}

// memAddr is an address on a MemNetwork, "ip:port".
type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// memTransport is one node's attachment to a MemNetwork: memberlist's
// Transport without sockets. It owns no goroutine: senders put packets
// straight into the receiver's queue (never waiting), and dialled streams
// are in-memory pipes handed to the receiver's stream queue.
type memTransport struct {
	net     *MemNetwork
	ip      net.IP
	port    int
	addr    memAddr
	packets chan *memberlist.Packet // never closed: senders may still hold it
	streams chan net.Conn           // never closed, for the same reason
	done    chan struct{}           // closed by Shutdown
	once    sync.Once

	mu     sync.Mutex // guards what follows
	closed bool
	conns  map[*memConn]struct{} // open stream ends, closed by Shutdown
}

var _ memberlist.NodeAwareTransport = (*memTransport)(nil)

// FinalAdvertiseAddr returns the address the network assigned: it is the
// only one other nodes can reach.
func (t *memTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.ip, t.port, nil
}

func (t *memTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress queues a copy of b at the destination, or drops it if the
// destination's queue is full or nobody is at the address, as UDP would.
func (t *memTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.isClosed() {
		return now, fmt.Errorf("write to %s: %w", a.Addr, net.ErrClosed)
	}
	dest := t.net.lookup(a.Addr)
	if dest == nil || !t.net.linked(t.addr, a.Addr) {
		t.net.dropped.Add(1)
		return now, nil
	}
	p := &memberlist.Packet{Buf: bytes.Clone(b), From: t.addr, Timestamp: now}
	select {
	case dest.packets <- p:
		t.net.delivered.Add(1)
	default:
		t.net.dropped.Add(1)
	}
	return now, nil
}

func (t *memTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *memTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *memTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout connects to the node at a.Addr. It waits only while
// the destination's stream queue is full, and at most timeout.
func (t *memTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dest := t.net.lookup(a.Addr)
	if dest == nil || !t.net.linked(t.addr, a.Addr) {
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(a.Addr), Err: syscall.ECONNREFUSED}
	}
	client, server := memPipe(t.addr, dest.addr)
	if !t.track(client) {
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(a.Addr), Err: net.ErrClosed}
	}
	if !dest.track(server) {
		client.Close()
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(a.Addr), Err: syscall.ECONNREFUSED}
	}
	var expire <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expire = timer.C
	}
	fail := func(err error) (net.Conn, error) {
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(a.Addr), Err: err}
	}
	select {
	case dest.streams <- server:
		return client, nil
	case <-dest.done:
		return fail(syscall.ECONNREFUSED)
	case <-t.done:
		return fail(net.ErrClosed)
	case <-expire:
		return fail(os.ErrDeadlineExceeded)
	}
}

// Shutdown detaches the node from the network and closes its open streams,
// which releases any memberlist goroutine blocked on one. Queued packets are
// left to the garbage collector. It is safe to call more than once.
func (t *memTransport) Shutdown() error {
	t.once.Do(func() {
		t.net.detach(t)
		close(t.done)
		t.mu.Lock()
		t.closed = true
		conns := make([]*memConn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return nil
}

func (t *memTransport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// track records an open stream end so Shutdown can close it; false once the
// transport is shut down.
func (t *memTransport) track(c *memConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	c.owner = t
	return true
}

func (t *memTransport) forget(c *memConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// memPipe returns the two ends of an in-memory stream. Unlike net.Pipe,
// each direction buffers up to memWindow bytes, so a writer does not wait
// for the reader until the window is full.
func memPipe(a, b memAddr) (*memConn, *memConn) {
	ab, ba := newMemBuffer(), newMemBuffer()
	ca := &memConn{local: a, remote: b, rx: ba, tx: ab, done: make(chan struct{}), rdl: newMemDeadline(), wdl: newMemDeadline()}
	cb := &memConn{local: b, remote: a, rx: ab, tx: ba, done: make(chan struct{}), rdl: newMemDeadline(), wdl: newMemDeadline()}
	return ca, cb
}

// memBuffer is one direction of a stream.
type memBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	eof    bool          // the writer closed: reads drain buf, then EOF
	broken bool          // the reader closed: writes fail
	wake   chan struct{} // closed and replaced on every change
}

func newMemBuffer() *memBuffer { return &memBuffer{wake: make(chan struct{})} }

func (b *memBuffer) changedLocked() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// memConn is one end of a memPipe.
type memConn struct {
	local, remote memAddr
	rx, tx        *memBuffer
	rdl, wdl      *memDeadline
	owner         *memTransport // set by track
	once          sync.Once
	done          chan struct{} // closed by Close
}

var _ net.Conn = (*memConn)(nil)

func (c *memConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, c.check(c.rdl)
	}
	for {
		if err := c.check(c.rdl); err != nil {
			return 0, err
		}
		b := c.rx
		b.mu.Lock()
		if b.buf.Len() > 0 {
			n, _ := b.buf.Read(p)
			b.changedLocked()
			b.mu.Unlock()
			return n, nil
		}
		if b.eof {
			b.mu.Unlock()
			return 0, io.EOF
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-c.done:
		case <-c.rdl.wait():
		}
	}
}

func (c *memConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if err := c.check(c.wdl); err != nil {
			return n, err
		}
		b := c.tx
		b.mu.Lock()
		if b.broken {
			b.mu.Unlock()
			return n, &net.OpError{Op: "write", Net: "mem", Addr: c.remote, Err: syscall.EPIPE}
		}
		if room := memWindow - b.buf.Len(); room > 0 {
			k := min(room, len(p)-n)
			b.buf.Write(p[n : n+k])
			n += k
			b.changedLocked()
			b.mu.Unlock()
			continue
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-c.done:
		case <-c.wdl.wait():
		}
	}
	return n, nil
}

// check reports a closed end or a passed deadline.
func (c *memConn) check(d *memDeadline) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	select {
	case <-d.wait():
		return os.ErrDeadlineExceeded
	default:
	}
	return nil
}

// Close ends both directions: the peer reads what was written, then EOF,
// and its writes fail. It is safe to call more than once.
func (c *memConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.rx.mu.Lock()
		c.rx.broken = true
		c.rx.buf = bytes.Buffer{} // nobody will read it
		c.rx.changedLocked()
		c.rx.mu.Unlock()
		c.tx.mu.Lock()
		c.tx.eof = true
		c.tx.changedLocked()
		c.tx.mu.Unlock()
		c.rdl.set(time.Time{})
		c.wdl.set(time.Time{})
		if c.owner != nil {
			c.owner.forget(c)
		}
	})
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

func (c *memConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

func (c *memConn) SetReadDeadline(t time.Time) error  { c.rdl.set(t); return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// memDeadline is a channel that closes when a deadline passes, as in the
// standard library's net.Pipe.
type memDeadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passes
}

func newMemDeadline() *memDeadline { return &memDeadline{cancel: make(chan struct{})} }

// set arms the deadline; the zero time disarms it.
func (d *memDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it has closed cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *memDeadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
