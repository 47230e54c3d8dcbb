package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

func TestConfigValidate(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	signer := newKey(t)
	ok := func() Config { return Config{Name: "a", Trust: ring} }
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"full", func(c *Config) {
			c.BindAddr, c.AdvertiseAddr, c.Role, c.SecretKeys = "127.0.0.1:0", "10.0.0.1:7946", RoleSeeder, [][]byte{make([]byte, 32), make([]byte, 16)}
			c.Trust = trustOf(signer.Public())
			c.SigningKey = signer
		}, ""},
		{"advertise without port", func(c *Config) { c.AdvertiseAddr = "10.0.0.1" }, ""},
		{"no name", func(c *Config) { c.Name = "" }, "name is required"},
		{"no keys", func(c *Config) { c.Trust = release.Trust{} }, "no release key pinned"},
		{"no rollout key", func(c *Config) { c.Trust.Rollout = nil }, "no rollout key pinned"},
		{"key in both roles", func(c *Config) {
			c.Trust = release.Trust{Release: c.Trust.Release, Rollout: c.Trust.Release}
		}, "one role"},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "bind address"},
		{"bind port not a number", func(c *Config) { c.BindAddr = "127.0.0.1:gossip" }, "bind address"},
		{"advertise hostname", func(c *Config) { c.AdvertiseAddr = "example.com:7946" }, "must be an IP"},
		{"bad role", func(c *Config) { c.Role = "leader" }, "unknown role"},
		{"bad secret", func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 10)} }, "gossip key 1 is 10 bytes"},
		{"repeated secret", func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 16), make([]byte, 16)} }, "gossip key 2 repeats key 1"},
		{"too many secrets", func(c *Config) {
			for i := range MaxKeys + 1 {
				c.SecretKeys = append(c.SecretKeys, append(make([]byte, 31), byte(i)))
			}
		}, "17 gossip keys, over 16"},
		{"signing key not pinned", func(c *Config) { c.SigningKey = newKey(t) }, "is not a pinned rollout key"},
		{"negative interval", func(c *Config) { c.ProbeInterval = -time.Second }, "probe interval is negative"},
		{"rumour off", func(c *Config) { c.RumourFanout = -1 }, ""},
		{"rumour fan-out too large", func(c *Config) { c.RumourFanout = 65 }, "rumour fan-out 65"},
		{"max apps 1", func(c *Config) { c.MaxApps = 1 }, ""},
		{"max apps over 32", func(c *Config) { c.MaxApps = 33 }, "max apps 33"},
		{"max apps negative", func(c *Config) { c.MaxApps = -1 }, "max apps -1"},
		{"torrent address too long", func(c *Config) { c.TorrentAddr = strings.Repeat("a", 257) }, "torrent address is 257 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				if _, err := New(c, zap.NewNop()); err != nil {
					t.Fatalf("New = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to mention %q", err, tt.want)
			}
			if _, err := New(c, zap.NewNop()); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestJoinRefusesMalformedAddress(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	n := startNode(t, testConfig("j", ring))
	for _, addr := range []string{"", "nohost", "127.0.0.1", ":7946", "127.0.0.1:x", "127.0.0.1:0", "127.0.0.1:70000", "[::1"} {
		t.Run(addr, func(t *testing.T) {
			err := n.Join(context.Background(), []string{addr})
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("Join(%q) = %v, want ErrBadAddress", addr, err)
			}
			if !strings.Contains(err.Error(), "host:port") {
				t.Fatalf("error does not say what is expected: %v", err)
			}
		})
	}
	if err := n.Join(context.Background(), nil); err == nil {
		t.Fatal("Join with no address succeeded")
	}
}

func TestJoinGivesUp(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	// A port nobody listens on: bind one, note it, close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	cfg := testConfig("j", ring)
	cfg.JoinAttempts = 3
	n := startNode(t, cfg)
	err = n.Join(context.Background(), []string{dead})
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("Join = %v, want it to give up after 3 attempts", err)
	}

	cfg.Name, cfg.JoinAttempts, cfg.JoinBackoff = "k", 1000, time.Hour
	m := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if err := m.Join(ctx, []string{dead}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Join = %v, want context.Canceled", err)
	}

	unstarted, _ := New(testConfig("u", ring), zap.NewNop())
	if err := unstarted.Join(context.Background(), []string{dead}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Join before Start = %v", err)
	}
}

func TestStartPortInUse(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	a := startNode(t, testConfig("a", ring))
	_, port, _ := net.SplitHostPort(a.Addr())

	cfg := testConfig("b", ring)
	cfg.BindAddr = "127.0.0.1:" + port
	b, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start = %v, want EADDRINUSE", err)
	}
	want := fmt.Sprintf("gossip listen 127.0.0.1:%s: address already in use; choose another --gossip port", port)
	if err.Error() != want {
		t.Fatalf("Start error %q, want %q", err, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAddrIsTheBoundPort(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	n, err := New(testConfig("a", ring), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if n.Addr() != "" {
		t.Fatalf("Addr before Start = %q", n.Addr())
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	host, port, err := net.SplitHostPort(n.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr = %q", n.Addr())
	}
	if err := n.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	never, _ := New(testConfig("never", ring), zap.NewNop())
	if err := never.Close(); err != nil {
		t.Fatal(err)
	}
	if err := never.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}

	nodes := cluster(t, 2, ring, nil)
	for range 2 {
		if err := nodes[1].Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[1].SetApps(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetApps after Close = %v", err)
	}
	if err := nodes[1].Join(context.Background(), []string{nodes[0].Addr()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close = %v", err)
	}
	waitFor(t, "the survivor sees the leave", func() bool { return len(nodes[0].Members()) == 1 })
}

func TestChangesOnAcceptAndMembership(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	a := startNode(t, testConfig("a", ring))
	drain := func() {
		for {
			select {
			case <-a.Changes():
			default:
				return
			}
		}
	}
	expect := func(what string) {
		t.Helper()
		select {
		case <-a.Changes():
		case <-time.After(waitTimeout):
			t.Fatalf("no change notified for %s", what)
		}
	}

	drain()
	if err := a.Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatal(err)
	}
	expect("an accepted state")

	drain()
	b := startNode(t, testConfig("b", ring))
	join(t, b, a)
	expect("a join")

	drain()
	if err := b.SetApps(appStateFor(3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b's apps", func() bool {
		for _, m := range a.Members() {
			if m.Name == "b" && reflect.DeepEqual(m.Apps, appStateFor(3)) {
				return true
			}
		}
		return false
	})
	expect("a member's update")
}
