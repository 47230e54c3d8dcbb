package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
)

func gossipKey(t testing.TB) []byte {
	t.Helper()
	s, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != KeySize {
		t.Fatalf("GenerateKey gave %q (%v)", s, err)
	}
	return k
}

func keyLines(keys ...[]byte) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	return b.String()
}

func TestParseKeys(t *testing.T) {
	a, b := gossipKey(t), gossipKey(t)
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name string
		in   string
		want [][]byte
		err  string
	}{
		{"one", keyLines(a), [][]byte{a}, ""},
		{"primary first, comments and blanks", "# rotated 2026-12\n\n  " + keyLines(b) + "\r\n" + keyLines(a), [][]byte{b, a}, ""},
		{"aes-128", short + "\n", [][]byte{make([]byte, 16)}, ""},
		{"empty", "\n# nothing\n", nil, "no gossip key"},
		{"not base64", "not a key!\n", nil, "line 1 is not a base64 key"},
		{"wrong size", keyLines(a) + base64.StdEncoding.EncodeToString(make([]byte, 20)), nil, "line 2 is not a base64 key of 16, 24 or 32 bytes"},
		{"repeated", keyLines(a, b, a), nil, "gossip key 3 repeats key 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeys([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseKeys = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Fatalf("key %d differs", i)
				}
			}
		})
	}
}

// TestLoadKeyFile: a key file open to group or others is refused with the
// fix, as a private key is; a missing one names the command that makes it.
func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	k := gossipKey(t)
	good := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(good, []byte(keyLines(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := LoadKeyFile(good); err != nil || len(keys) != 1 || !bytes.Equal(keys[0], k) {
		t.Fatalf("LoadKeyFile = %v, %v", keys, err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		open := filepath.Join(dir, "open-"+strconv.FormatUint(uint64(mode), 8))
		if err := os.WriteFile(open, []byte(keyLines(k)), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		_, err := LoadKeyFile(open)
		if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "chmod 600 "+open) {
			t.Errorf("mode %04o: LoadKeyFile = %v, want a refusal saying chmod 600", mode, err)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "none")); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "swarm gossip-key generate") {
		t.Errorf("missing file: %v", err)
	}
}

// encrypted starts size nodes holding keys, node-00 a signed seeder, joined.
func encrypted(t *testing.T, size int, ring release.Trust, keys ...[]byte) []*Node {
	t.Helper()
	return cluster(t, size, ring, func(c *Config) { c.SecretKeys = keys })
}

// TestOutsiderLearnsNothing: against an encrypted cluster, a node without
// the key or with another key cannot join, is not listed by any member,
// and hears nothing: no member, no desired state, even after the cluster
// has spread a new state to everyone.
func TestOutsiderLearnsNothing(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	nodes := encrypted(t, 3, ring, gossipKey(t))
	if err := nodes[0].Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every node holds web seq 1", func() bool { return allHold(nodes, "web", 1) })

	for i, tc := range []struct {
		name string
		keys [][]byte
	}{{"no key", nil}, {"wrong key", [][]byte{gossipKey(t)}}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("outsider-"+strings.ReplaceAll(tc.name, " ", "-"), ring)
			cfg.SecretKeys, cfg.JoinAttempts = tc.keys, 1
			out := startNode(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if err := out.Join(ctx, []string{nodes[0].Addr(), nodes[1].Addr()}); err == nil {
				t.Fatal("joined an encrypted cluster")
			}
			// The cluster moves on; had anything leaked, this would too.
			seq := uint64(2 + i)
			if err := nodes[1].Publish(desired(t, k, "web", seq)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "every member holds the new state", func() bool { return allHold(nodes, "web", seq) })
			if ms := out.Members(); len(ms) != 1 || ms[0].Name != cfg.Name {
				t.Fatalf("the outsider lists %v", ms)
			}
			if ds := out.DesiredAll(); len(ds) != 0 {
				t.Fatalf("the outsider holds %d desired states", len(ds))
			}
			for _, n := range nodes {
				if _, ok := n.member(cfg.Name); ok || len(n.Members()) != 3 {
					t.Fatalf("%s lists the outsider, or lost a member: %v", n.cfg.Name, n.Members())
				}
			}
		})
	}
}

// connected checks that every node reaches every other one directly, both
// ways: a UDP ping acknowledged, and a push/pull over TCP. Both are
// encrypted: they succeed only if the receiver holds the sender's primary.
func connected(t *testing.T, step string, nodes []*Node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			host, port, err := net.SplitHostPort(b.Addr())
			if err != nil {
				t.Fatal(err)
			}
			p, _ := strconv.Atoi(port)
			to := &net.UDPAddr{IP: net.ParseIP(host), Port: p}
			// A ping may be lost on a loaded machine; a wrong key loses all.
			waitFor(t, fmt.Sprintf("%s: %s pings %s", step, a.cfg.Name, b.cfg.Name), func() bool {
				_, err := a.ml.Load().Ping(b.cfg.Name, to)
				return err == nil
			})
			if _, err := a.ml.Load().Join([]string{b.Addr()}); err != nil {
				t.Fatalf("%s: push/pull from %s to %s: %v", step, a.cfg.Name, b.cfg.Name, err)
			}
		}
	}
	for _, n := range nodes {
		if got := n.NumMembers(); got != len(nodes) {
			t.Fatalf("%s: %s knows %d members, want %d", step, n.cfg.Name, got, len(nodes))
		}
	}
}

// TestKeyRotation rotates the key of a running three-node cluster, node by
// node, with no restart: the new key accepted everywhere, then used
// everywhere, then the old one removed. Every node reaches every other at
// every step and desired states keep spreading; afterwards a node with only
// the old key cannot join, and one with the new key can.
func TestKeyRotation(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	oldK, newK := gossipKey(t), gossipKey(t)
	nodes := encrypted(t, 3, ring, oldK)
	connected(t, "start", nodes)
	seq := uint64(0)
	for _, step := range []struct {
		name string
		keys [][]byte
	}{
		{"new key accepted", [][]byte{oldK, newK}},
		{"new key used", [][]byte{newK, oldK}},
		{"old key removed", [][]byte{newK}},
	} {
		for i, n := range nodes {
			if err := n.SetKeys(step.keys); err != nil {
				t.Fatalf("%s on %s: %v", step.name, n.cfg.Name, err)
			}
			if got := n.Keys(); !sameKeys(got, step.keys) {
				t.Fatalf("%s on %s: holds %v, want %v", step.name, n.cfg.Name, keyIDs(got), keyIDs(step.keys))
			}
			at := fmt.Sprintf("%s, %d of %d nodes", step.name, i+1, len(nodes))
			connected(t, at, nodes)
			seq++
			if err := nodes[(i+1)%len(nodes)].Publish(desired(t, k, "web", seq)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, at+": every node holds the new state", func() bool { return allHold(nodes, "web", seq) })
		}
	}

	join := func(name string, keys [][]byte) error {
		cfg := testConfig(name, ring)
		cfg.SecretKeys, cfg.JoinAttempts = keys, 1
		n := startNode(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		return n.Join(ctx, []string{nodes[0].Addr()})
	}
	if err := join("old-key-only", [][]byte{oldK}); err == nil {
		t.Fatal("a node with only the removed key joined")
	}
	if err := join("new-key", [][]byte{newK}); err != nil {
		t.Fatalf("a node with the new key cannot join: %v", err)
	}
}

// TestSetKeysRefusals: bad keys change nothing; a node started in the clear
// cannot be switched to encryption while it runs.
func TestSetKeysRefusals(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	a := gossipKey(t)
	cfg := testConfig("keyed", ring)
	cfg.SecretKeys = [][]byte{a}
	n := startNode(t, cfg)
	for _, bad := range [][][]byte{nil, {make([]byte, 7)}, {a, a}} {
		if err := n.SetKeys(bad); err == nil {
			t.Errorf("SetKeys(%d keys) accepted", len(bad))
		}
	}
	if got := n.Keys(); !sameKeys(got, [][]byte{a}) {
		t.Fatalf("refused keys changed the keyring: %v", keyIDs(got))
	}
	// Any order of removals, the primary moving and staying.
	b, c, d := gossipKey(t), gossipKey(t), gossipKey(t)
	for _, keys := range [][][]byte{{a, b, c, d}, {a, c}, {d, a, b}, {b}, {c, b, a}, {a, b}} {
		if err := n.SetKeys(keys); err != nil {
			t.Fatal(err)
		}
		if got := n.Keys(); !sameKeys(got, keys) {
			t.Fatalf("SetKeys(%v) left %v", keyIDs(keys), keyIDs(got))
		}
	}
	plain := startNode(t, testConfig("clear", ring))
	if err := plain.SetKeys([][]byte{a}); !errors.Is(err, ErrUnencrypted) {
		t.Fatalf("SetKeys on an unencrypted node = %v, want ErrUnencrypted", err)
	}
}

// TestKeyFileReload: a KeyFile installs what its file says, on Reload and
// by itself while it runs; a file made readable by others is refused and
// the keys in use stay.
func TestKeyFileReload(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	a, b := gossipKey(t), gossipKey(t)
	path := filepath.Join(t.TempDir(), "gossip.key")
	write := func(mode os.FileMode, keys ...[]byte) {
		t.Helper()
		if err := os.WriteFile(path, []byte(keyLines(keys...)), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(0o600, a)
	keys, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("watched", ring)
	cfg.SecretKeys = keys
	n := startNode(t, cfg)
	kf := NewKeyFile(path, n, zaptest.NewLogger(t))

	if changed, err := kf.Reload(); err != nil || changed {
		t.Fatalf("unchanged file: Reload = %v, %v", changed, err)
	}
	write(0o600, a, b)
	if changed, err := kf.Reload(); err != nil || !changed || !sameKeys(n.Keys(), [][]byte{a, b}) {
		t.Fatalf("added key: Reload = %v, %v; holds %v", changed, err, keyIDs(n.Keys()))
	}
	write(0o644, b)
	if _, err := kf.Reload(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("open file: Reload = %v", err)
	}
	if !sameKeys(n.Keys(), [][]byte{a, b}) {
		t.Fatalf("a refused file changed the keys: %v", keyIDs(n.Keys()))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		kf.Run(ctx, 10*time.Millisecond)
	}()
	t.Cleanup(func() { cancel(); <-done })
	write(0o600, b)
	waitFor(t, "the running watcher installs the file's keys", func() bool { return sameKeys(n.Keys(), [][]byte{b}) })
}

// TestFakeSeeders: a member whose announcement claims the seeder role is
// listed as a seeder only if a pinned key signed it; unsigned, or signed by
// a key the receiver does not pin, it is listed as an agent and counted
// once. The claimant still sees itself as a seeder.
func TestFakeSeeders(t *testing.T) {
	rollout, stranger := newKey(t), newKey(t)
	ring := trustOf(rollout.Public())
	start := func(name string, role Role, sign *release.PrivateKey) *Node {
		cfg := testConfig(name, ring)
		cfg.Role, cfg.SigningKey = role, sign
		if sign == stranger {
			cfg.Trust = trustOf(stranger.Public())
		}
		return startNode(t, cfg)
	}
	genuine := start("seeder", RoleSeeder, rollout)
	unsigned := start("fake-unsigned", RoleSeeder, nil)
	untrusted := start("fake-untrusted", RoleSeeder, stranger)
	agent := start("agent", RoleAgent, nil)
	for _, n := range []*Node{unsigned, untrusted, agent} {
		join(t, n, genuine)
	}
	waitFor(t, "the agent knows every member", func() bool { return agent.NumMembers() == 4 })
	want := map[string]Role{"seeder": RoleSeeder, "fake-unsigned": RoleAgent, "fake-untrusted": RoleAgent, "agent": RoleAgent}
	for _, n := range []*Node{agent, genuine} {
		for _, m := range n.Members() {
			if m.Role != want[m.Name] {
				t.Errorf("%s sees %s as %q, want %q", n.cfg.Name, m.Name, m.Role, want[m.Name])
			}
		}
		if got := n.Stats().RefusedSeeders; got != 2 {
			t.Errorf("%s counted %d fake seeders, want 2", n.cfg.Name, got)
		}
	}
	if m, _ := unsigned.member("fake-unsigned"); m.Role != RoleSeeder {
		t.Errorf("a node sees itself as %q", m.Role)
	}
	// Updates of the same members (a new app-state record, a push/pull)
	// count nothing more.
	connected(t, "after", []*Node{agent, genuine, unsigned, untrusted})
	if got := agent.Stats().RefusedSeeders; got != 2 {
		t.Errorf("counted %d after updates, want still 2", got)
	}
}

// BenchmarkPing is one acknowledged UDP ping between two nodes on
// 127.0.0.1, in the clear and encrypted: the cost encryption adds to each
// packet's round trip (seal and open, both ways).
func BenchmarkPing(b *testing.B) {
	ring := trustOf(newKey(b).Public())
	for _, bc := range []struct {
		name string
		keys [][]byte
	}{{"clear", nil}, {"aes256", [][]byte{gossipKey(b)}}} {
		b.Run(bc.name, func(b *testing.B) {
			quiet := func(name string) Config {
				c := testConfig(name, ring)
				c.SecretKeys = bc.keys
				c.GossipInterval, c.ProbeInterval, c.PushPullInterval = time.Hour, time.Hour, time.Hour
				c.ProbeTimeout = time.Second
				return c
			}
			a, z := startNode(b, quiet("a")), startNode(b, quiet("z"))
			join(b, a, z)
			host, port, _ := net.SplitHostPort(z.Addr())
			p, _ := strconv.Atoi(port)
			to := &net.UDPAddr{IP: net.ParseIP(host), Port: p}
			ml := a.ml.Load()
			b.ResetTimer()
			for b.Loop() {
				if _, err := ml.Ping("z", to); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyAnnouncement is what a node spends on each update of a
// member that claims the seeder role: one ed25519 verification.
func BenchmarkVerifyAnnouncement(b *testing.B) {
	key := newKey(b)
	ring := trustOf(key.Public())
	m, err := encodeMeta("seeder", RoleSeeder, "10.0.0.1:6881", "prod", 1, key)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		w, _ := decodeMeta(m)
		if err := verifyAnnouncement("seeder", w, ring.Rollout); err != nil {
			b.Fatal(err)
		}
	}
}
