package swarm

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// A failed handshake from one address does not shut out the rest of its
// /24: anacrolix's accept rate limiter would refuse every peer in
// 127.0.0.0/24 (or a rack's subnet) for 15 minutes after one bad dial, such
// as a peer that connects before this node added the release.
func TestBadHandshakeDoesNotShutOutTheSubnet(t *testing.T) {
	b := newBundle(t, 1<<20)
	origin := newOrigin(t, b, Config{})

	conn, err := net.Dial("tcp", origin.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: swarm\r\n\r\n" + string(make([]byte, 64)))); err != nil {
		t.Fatal(err)
	}
	// The origin closes the connection once the handshake has failed.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("origin kept the bad connection: %v", err)
	}
	conn.Close()
	time.Sleep(100 * time.Millisecond) // let the origin note the bad accept

	c := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Fetch(ctx, b.m, Sources{Origins: []string{origin.Addr()}}); err != nil {
		t.Fatalf("fetch from the origin after a bad handshake from the same subnet: %v", err)
	}
	checkFetched(t, c, b)
}
