package gossip

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// onMem moves a test node from 127.0.0.1 to network.
func onMem(network *MemNetwork) func(*Config) {
	return func(c *Config) {
		c.BindAddr = ""
		c.Network = network
	}
}

// TestMemNetworkCluster runs more nodes than memberlist's MockTransport
// survives, spreads a state and refuses an untrusted one, as on UDP.
func TestMemNetworkCluster(t *testing.T) {
	k, rogueKey := newKey(t), newKey(t)
	ring := trustOf(k.Public())
	network := NewMemNetwork()
	nodes := cluster(t, 30, ring, onMem(network))
	for _, n := range nodes {
		if a := n.Addr(); !strings.HasPrefix(a, "127.") || !strings.HasSuffix(a, ":7946") {
			t.Fatalf("%s: address %q is not an in-memory one", n.cfg.Name, a)
		}
	}

	rogueCfg := testConfig("rogue", trustOf(k.Public(), rogueKey.Public()))
	onMem(network)(&rogueCfg)
	rogue := startNode(t, rogueCfg)
	join(t, rogue, nodes[len(nodes)-1])
	if err := rogue.Publish(desired(t, rogueKey, "evil", 9)); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatal(err)
	}
	// Honest nodes do not pass the rogue state on: each hears it only in a
	// push/pull with the rogue itself, so wait for a few, not all.
	waitFor(t, "every node holds web seq 1 and three refused the rogue state", func() bool {
		refused := 0
		for _, n := range nodes {
			if n.HighestSeq("web@default") != 1 {
				return false
			}
			if n.Stats().RefusedUntrusted > 0 {
				refused++
			}
		}
		return refused >= 3
	})
	for _, n := range nodes {
		if _, _, ok := n.Desired("evil@default"); ok {
			t.Errorf("%s accepted the untrusted state", n.cfg.Name)
		}
	}
	if delivered, _ := network.Stats(); delivered == 0 {
		t.Error("no packet counted as delivered")
	}

	for _, n := range append(nodes, rogue) {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}
	left := 0
	network.nodes.Range(func(any, any) bool { left++; return true })
	if left != 0 {
		t.Errorf("%d transports still attached after every node closed", left)
	}
}

func TestMemNetworkRefusesAddresses(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	for _, tweak := range []func(*Config){
		func(c *Config) { c.BindAddr = "127.0.0.1:0" },
		func(c *Config) { c.BindAddr, c.AdvertiseAddr = "", "10.0.0.1" },
	} {
		cfg := testConfig("n", ring)
		cfg.Network = NewMemNetwork()
		tweak(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("bind %q advertise %q accepted with an in-memory network", cfg.BindAddr, cfg.AdvertiseAddr)
		}
	}
}

func attach(t *testing.T, network *MemNetwork) *memTransport {
	t.Helper()
	tr, err := network.attach()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func TestMemTransportPackets(t *testing.T) {
	network := NewMemNetwork()
	a, b := attach(t, network), attach(t, network)
	if a.addr == b.addr {
		t.Fatalf("two transports share address %s", a.addr)
	}
	ip, port, err := a.FinalAdvertiseAddr("", 0)
	if err != nil || net.JoinHostPort(ip.String(), "7946") != string(a.addr) || port != DefaultPort {
		t.Fatalf("FinalAdvertiseAddr = %v %d %v, want %s", ip, port, err, a.addr)
	}

	// The sender never waits: past the queue, packets are dropped.
	msg := []byte("ping")
	for range memPacketQueue + 10 {
		if _, err := a.WriteTo(msg, string(b.addr)); err != nil {
			t.Fatal(err)
		}
	}
	msg[0] = 'X' // the queued copies must not change
	if _, err := a.WriteTo(msg, "127.0.0.1:1"); err != nil {
		t.Fatalf("write to nobody: %v", err)
	}
	if d, x := network.Stats(); d != memPacketQueue || x != 11 {
		t.Fatalf("stats = %d delivered, %d dropped; want %d, 11", d, x, memPacketQueue)
	}
	p := <-b.PacketCh()
	if string(p.Buf) != "ping" || p.From.String() != string(a.addr) {
		t.Fatalf("packet %q from %s", p.Buf, p.From)
	}

	// After Shutdown the node is unreachable and cannot send.
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	b.Shutdown()
	if _, err := a.WriteTo(msg, string(b.addr)); err != nil {
		t.Fatalf("write to a closed node: %v", err)
	}
	if _, x := network.Stats(); x != 12 {
		t.Fatalf("dropped = %d, want 12", x)
	}
	if _, err := b.WriteTo(msg, string(a.addr)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write from a closed node: %v", err)
	}
	if _, err := a.DialTimeout(string(b.addr), time.Second); err == nil {
		t.Fatal("dialled a closed node")
	}
}

func TestMemTransportStreams(t *testing.T) {
	network := NewMemNetwork()
	a, b := attach(t, network), attach(t, network)

	c, err := a.DialAddressTimeout(memberlist.Address{Addr: string(b.addr), Name: "b"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := <-b.StreamCh()
	if c.RemoteAddr().String() != string(b.addr) || s.RemoteAddr().String() != string(a.addr) {
		t.Fatalf("addresses %s → %s", s.RemoteAddr(), c.RemoteAddr())
	}

	// Writes complete without a reader up to the window, like TCP.
	big := make([]byte, memWindow)
	for i := range big {
		big[i] = byte(i)
	}
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	// Past the window a writer waits; its deadline ends the wait.
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Write([]byte{1}); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the window: %d, %v", n, err)
	}
	c.SetWriteDeadline(time.Time{})

	// Both ends write a full window before reading: neither waits.
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := s.Write(big); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(s, got); err != nil || got[len(got)-1] != big[len(big)-1] {
		t.Fatalf("read %v", err)
	}
	s.Close()

	// The peer closed: c reads what it wrote, then EOF, and c's writes fail.
	back, err := io.ReadAll(c)
	if err != nil || len(back) != len(big) {
		t.Fatalf("read %d bytes, %v; want %d", len(back), err, len(big))
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("write to a closed peer succeeded")
	}

	// A read with a passed deadline fails at once; one in the future fails
	// when it passes.
	c2, err := a.DialTimeout(string(b.addr), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after deadline: %v", err)
	}
	c2.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read until deadline: %v", err)
	}
	c2.SetReadDeadline(time.Time{})

	// Shutdown of the receiver ends a read blocked on a stream it holds.
	errc := make(chan error, 1)
	go func() {
		_, err := c2.Read(make([]byte, 1))
		errc <- err
	}()
	b.Shutdown()
	select {
	case err := <-errc:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read after peer shutdown: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("read still blocked after the peer shut down")
	}
	a.Shutdown()
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after own shutdown: %v", err)
	}
}

// TestMemTransportDialWaitsForBacklog: a dial to a node that takes no
// streams fails after its timeout instead of hanging.
func TestMemTransportDialWaitsForBacklog(t *testing.T) {
	network := NewMemNetwork()
	a, b := attach(t, network), attach(t, network)
	for range memStreamQueue {
		if _, err := a.DialTimeout(string(b.addr), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := a.DialTimeout(string(b.addr), 30*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("dial past the backlog: %v", err)
	}
	if time.Since(start) > waitTimeout {
		t.Fatal("dial waited past its timeout")
	}
	a.mu.Lock()
	open := len(a.conns)
	a.mu.Unlock()
	if open != memStreamQueue {
		t.Fatalf("%d streams tracked, want %d (the failed dial's end must be closed)", open, memStreamQueue)
	}
}

func TestMemNetworkClose(t *testing.T) {
	network := NewMemNetwork()
	a, b := attach(t, network), attach(t, network)
	network.Close()
	if _, err := a.WriteTo([]byte("ping"), string(b.addr)); err != nil {
		t.Fatal(err)
	}
	if d, x := network.Stats(); d != 0 || x != 1 {
		t.Fatalf("stats after close = %d delivered, %d dropped; want 0, 1", d, x)
	}
	if _, err := a.DialTimeout(string(b.addr), time.Second); err == nil {
		t.Fatal("dialled across a closed network")
	}
	if _, err := network.attach(); !errors.Is(err, errNetworkClosed) {
		t.Fatalf("attach to a closed network: %v", err)
	}
}
