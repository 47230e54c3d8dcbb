package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every network wait; tests assert behaviour, not speed.
const testTimeout = 30 * time.Second

type bundle struct {
	m    release.Manifest
	data []byte
}

// newBundle returns size random bytes and their manifest, as swarm publish
// would make it.
func newBundle(t testing.TB, size int64) bundle {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	pl := release.PieceLengthFor(size)
	ih, err := Metainfo(bytes.NewReader(data), size, pl, InfoName("web", "1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	m := release.Manifest{
		App:          "web",
		Version:      "1.0.0",
		ReleaseID:    release.IDOf(data),
		BundleSize:   size,
		UnpackedSize: size,
		InfoHash:     ih,
		PieceLength:  pl,
		Created:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return bundle{m: m, data: data}
}

// store writes b where a client with dir expects it.
func store(t testing.TB, dir string, b bundle) {
	t.Helper()
	p := BundlePath(dir, b.m.ReleaseID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.data, 0o644); err != nil {
		t.Fatal(err)
	}
}

var debugLog = flag.Bool("swarm.debug", false, "log at debug level, anacrolix's chatter included")

func testLogger(t testing.TB) *zap.Logger {
	level := zap.InfoLevel
	if _, bench := t.(*testing.B); bench {
		level = zap.WarnLevel // benchmarks print every log line
	}
	if *debugLog {
		level = zap.DebugLevel
	}
	return zaptest.NewLogger(t, zaptest.Level(level))
}

// newClient starts a client on 127.0.0.1 with an OS-chosen port, its own
// directory (unless cfg has one) and closes it when the test ends.
func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	return newClientLogging(t, cfg, testLogger(t))
}

// newWatchedClient is newClient with its warnings and errors recorded.
func newWatchedClient(t testing.TB, cfg Config) (*Client, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	return newClientLogging(t, cfg, zap.New(core)), logs
}

func newClientLogging(t testing.TB, cfg Config, log *zap.Logger) *Client {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	c, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// newOrigin starts an origin client seeding b.
func newOrigin(t testing.TB, b bundle, cfg Config) *Client {
	t.Helper()
	cfg.Origin = true
	cfg.Dir = t.TempDir()
	store(t, cfg.Dir, b)
	o := newClient(t, cfg)
	if err := o.Seed(b.m); err != nil {
		t.Fatal(err)
	}
	return o
}

func fetch(t testing.TB, c *Client, m release.Manifest, src Sources) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Fetch(ctx, m, src); err != nil {
		t.Fatal(err)
	}
}

func checkFetched(t testing.TB, c *Client, b bundle) {
	t.Helper()
	got, err := os.ReadFile(BundlePath(c.cfg.Dir, b.m.ReleaseID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.data) {
		t.Fatal("fetched bundle differs from the original")
	}
	have, total, ok := c.Progress(b.m.ReleaseID)
	if !ok || have != b.m.BundleSize || total != b.m.BundleSize {
		t.Fatalf("Progress = %d, %d, %v; want %d, %[4]d, true", have, total, ok, b.m.BundleSize)
	}
}

func TestFetchFromOriginThenFromPeer(t *testing.T) {
	b := newBundle(t, 6<<20)
	// No peer exchange: B must get everything from A, never learn of the origin.
	cfg := Config{DisablePEX: true}
	origin := newOrigin(t, b, cfg)
	a := newClient(t, cfg)
	bb := newClient(t, cfg)

	fetch(t, a, b.m, Sources{Origins: []string{origin.Addr()}})
	checkFetched(t, a, b)
	fetch(t, bb, b.m, Sources{Peers: []string{a.Addr()}})
	checkFetched(t, bb, b)

	size := b.m.BundleSize
	if s := a.Stats(); s.BytesFromOrigin != size || s.BytesFromPeers != 0 {
		t.Errorf("A stats %+v: want %d bytes from origin, 0 from peers", s, size)
	}
	if s := bb.Stats(); s.BytesFromPeers != size || s.BytesFromOrigin != 0 {
		t.Errorf("B stats %+v: want %d bytes from peers, 0 from origin", s, size)
	}
	if s := origin.Stats(); s.BytesSent < size {
		t.Errorf("origin sent %d bytes, want at least %d", s.BytesSent, size)
	}
	if s := a.Stats(); s.BytesSent < size {
		t.Errorf("A sent %d bytes, want at least %d", s.BytesSent, size)
	}
}

func TestFetchManyLeechers(t *testing.T) {
	b := newBundle(t, 6<<20)
	// A slow origin makes the leechers trade pieces; the test does not
	// time anything.
	origin := newOrigin(t, b, Config{UploadRate: 4 << 20})
	const n = 4
	leechers := make([]*Client, n)
	addrs := make([]string, n)
	for i := range leechers {
		leechers[i] = newClient(t, Config{})
		addrs[i] = leechers[i].Addr()
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i, l := range leechers {
		wg.Go(func() {
			errs[i] = l.Fetch(ctx, b.m, Sources{Origins: []string{origin.Addr()}, Peers: addrs})
		})
	}
	wg.Wait()
	var fromPeers, fromOrigin int64
	for i, l := range leechers {
		if errs[i] != nil {
			t.Fatalf("leecher %d: %v", i, errs[i])
		}
		checkFetched(t, l, b)
		s := l.Stats()
		if s.BytesFromOrigin+s.BytesFromPeers != b.m.BundleSize {
			t.Errorf("leecher %d stats %+v: origin + peers should be %d", i, s, b.m.BundleSize)
		}
		fromPeers += s.BytesFromPeers
		fromOrigin += s.BytesFromOrigin
	}
	if fromPeers == 0 {
		t.Errorf("leechers got nothing from each other")
	}
	t.Logf("size %d: origin sent %d, leechers got %d from origin and %d from peers",
		b.m.BundleSize, origin.Stats().BytesSent, fromOrigin, fromPeers)
}

func TestFetchIDMismatchRemovesBundle(t *testing.T) {
	b := newBundle(t, 1<<20)
	origin := newOrigin(t, b, Config{})
	l := newClient(t, Config{})

	// Signed by mistake: the right torrent, the wrong release id.
	bad := b.m
	bad.ReleaseID = release.IDOf([]byte("something else"))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := l.Fetch(ctx, bad, Sources{Origins: []string{origin.Addr()}})
	if !errors.Is(err, release.ErrIDMismatch) {
		t.Fatalf("Fetch = %v, want release.ErrIDMismatch", err)
	}
	p := BundlePath(l.cfg.Dir, bad.ReleaseID)
	for _, name := range []string{p, p + partSuffix, filepath.Dir(p)} {
		if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after a failed verification (stat: %v)", name, err)
		}
	}
	if _, _, ok := l.Progress(bad.ReleaseID); ok {
		t.Error("client still knows the failed release")
	}
}

func TestSeedRefusesMismatch(t *testing.T) {
	b := newBundle(t, 1<<20)
	other := newBundle(t, 1<<20)
	tests := []struct {
		name  string
		m     func() release.Manifest
		store bool
		want  error
	}{
		{"wrong infohash", func() release.Manifest { m := b.m; m.InfoHash = other.m.InfoHash; return m }, true, ErrInfoHashMismatch},
		{"wrong piece length", func() release.Manifest { m := b.m; m.PieceLength *= 2; return m }, true, ErrInfoHashMismatch},
		{"wrong size", func() release.Manifest { m := b.m; m.BundleSize--; return m }, true, ErrInfoHashMismatch},
		{"wrong release id", func() release.Manifest { m := b.m; m.ReleaseID = other.m.ReleaseID; return m }, true, release.ErrIDMismatch},
		{"missing file", func() release.Manifest { return b.m }, false, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, Config{Origin: true})
			m := tt.m()
			if tt.store {
				store(t, c.cfg.Dir, bundle{m: m, data: b.data})
			}
			err := c.Seed(m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Seed = %v, want %v", err, tt.want)
			}
			if _, _, ok := c.Progress(m.ReleaseID); ok {
				t.Error("refused release is served")
			}
		})
	}
}

func TestSeedIdempotentAndDrop(t *testing.T) {
	b := newBundle(t, 1<<20)
	o := newOrigin(t, b, Config{})
	if err := o.Seed(b.m); err != nil {
		t.Fatalf("second Seed: %v", err)
	}
	if have, total, ok := o.Progress(b.m.ReleaseID); !ok || have != total {
		t.Fatalf("Progress = %d, %d, %v", have, total, ok)
	}
	o.Drop(b.m.ReleaseID)
	if _, _, ok := o.Progress(b.m.ReleaseID); ok {
		t.Fatal("dropped release still known")
	}
	if _, err := os.Stat(BundlePath(o.cfg.Dir, b.m.ReleaseID)); err != nil {
		t.Fatalf("Drop removed the bundle: %v", err)
	}
	if err := o.Seed(b.m); err != nil {
		t.Fatalf("Seed after Drop: %v", err)
	}
}

func TestFetchAlreadyOnDisk(t *testing.T) {
	b := newBundle(t, 1<<20)
	c := newClient(t, Config{})
	store(t, c.cfg.Dir, b)
	fetch(t, c, b.m, Sources{}) // no sources: only the disk can satisfy it
	checkFetched(t, c, b)
	// And it seeds it.
	l := newClient(t, Config{})
	fetch(t, l, b.m, Sources{Peers: []string{c.Addr()}})
	checkFetched(t, l, b)
}

func TestFetchRepairsCorruptBundle(t *testing.T) {
	b := newBundle(t, 2<<20)
	origin := newOrigin(t, b, Config{})
	c := newClient(t, Config{})
	corrupt := bundle{m: b.m, data: bytes.Clone(b.data)}
	corrupt.data[len(corrupt.data)/2] ^= 0xff
	store(t, c.cfg.Dir, corrupt)

	fetch(t, c, b.m, Sources{Origins: []string{origin.Addr()}})
	checkFetched(t, c, b)
	// Only the bad piece needed fetching.
	if got := c.Stats().BytesFromOrigin; got != b.m.PieceLength {
		t.Errorf("fetched %d bytes, want one piece (%d)", got, b.m.PieceLength)
	}
}

func TestFetchContextEnds(t *testing.T) {
	b := newBundle(t, 1<<20)
	c := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.Fetch(ctx, b.m, Sources{Peers: []string{"127.0.0.1:1"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch = %v, want context.DeadlineExceeded", err)
	}
	if _, _, ok := c.Progress(b.m.ReleaseID); ok {
		t.Error("abandoned fetch still registered")
	}
}

func TestFetchSharedAndAddSources(t *testing.T) {
	b := newBundle(t, 2<<20)
	origin := newOrigin(t, b, Config{})
	c := newClient(t, Config{})

	// Two Fetch calls share one download that has no source yet.
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithTimeout(context.Background(), testTimeout)
	defer cancel2()
	err1, err2 := make(chan error, 1), make(chan error, 1)
	go func() { err1 <- c.Fetch(ctx1, b.m, Sources{}) }()
	go func() { err2 <- c.Fetch(ctx2, b.m, Sources{}) }()
	waitFor(t, "both Fetch calls to wait", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		e := c.entries[b.m.ReleaseID]
		return e != nil && e.waiters == 2
	})

	// One gives up; the download goes on for the other.
	cancel1()
	if err := <-err1; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Fetch = %v, want context.Canceled", err)
	}
	if _, _, ok := c.Progress(b.m.ReleaseID); !ok {
		t.Fatal("download stopped while a Fetch still waits on it")
	}

	// Gossip brings a source.
	c.AddSources(b.m.ReleaseID, Sources{Origins: []string{origin.Addr()}})
	if err := <-err2; err != nil {
		t.Fatalf("remaining Fetch = %v", err)
	}
	checkFetched(t, c, b)
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFetchDropped(t *testing.T) {
	b := newBundle(t, 1<<20)
	c := newClient(t, Config{})
	errc := make(chan error, 1)
	go func() { errc <- c.Fetch(context.Background(), b.m, Sources{}) }()
	waitFor(t, "the fetch to start", func() bool {
		_, _, ok := c.Progress(b.m.ReleaseID)
		return ok
	})
	c.Drop(b.m.ReleaseID)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrDropped) {
			t.Fatalf("Fetch = %v, want ErrDropped", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Fetch did not return after Drop")
	}
}

func TestStartPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	c, err := New(Config{Dir: t.TempDir(), ListenAddr: addr}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Start()
	if err == nil {
		t.Fatal("Start succeeded on a port in use")
	}
	if !strings.Contains(err.Error(), "listen "+addr+": address already in use") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start = %q; want it to name %s and wrap EADDRINUSE", err, addr)
	}
}

func TestClientLifecycle(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir(), ListenAddr: "127.0.0.1:0"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newBundle(t, 1<<20)
	if err := c.Seed(b.m); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Seed before Start = %v, want ErrNotStarted", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, port, err := net.SplitHostPort(c.Addr()); err != nil || port == "0" {
		t.Errorf("Addr = %q, want the real port", c.Addr())
	}
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if err := c.Fetch(context.Background(), b.m, Sources{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Fetch after Close = %v, want ErrClosed", err)
	}

	unstarted, err := New(Config{Dir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := unstarted.Close(); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{Dir: "d"}, ""},
		{"no dir", Config{}, "dir is required"},
		{"no port", Config{Dir: "d", ListenAddr: "127.0.0.1"}, "listen addr"},
		{"bad port", Config{Dir: "d", ListenAddr: "127.0.0.1:70000"}, "port must be"},
		{"host name", Config{Dir: "d", ListenAddr: "localhost:0"}, "host must be an IP address"},
		{"negative rate", Config{Dir: "d", UploadRate: -1}, "rates must be"},
		{"negative conns", Config{Dir: "d", MaxConnsPerTorrent: -1}, "max conns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.ListenAddr != DefaultListenAddr || tt.cfg.MaxConnsPerTorrent != DefaultMaxConnsPerTorrent {
					t.Errorf("defaults not applied: %+v", tt.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMetainfo(t *testing.T) {
	b := newBundle(t, 3<<20+12345) // a short last piece
	name := InfoName(b.m.App, b.m.Version)
	again, err := Metainfo(bytes.NewReader(b.data), b.m.BundleSize, b.m.PieceLength, name)
	if err != nil {
		t.Fatal(err)
	}
	if again != b.m.InfoHash {
		t.Fatalf("Metainfo not deterministic: %s then %s", b.m.InfoHash, again)
	}
	if len(again) != 40 || strings.ToLower(again) != again {
		t.Fatalf("infohash %q is not 40 lower-case hex digits", again)
	}

	// anacrolix's own builder agrees.
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b.data, 0o644); err != nil {
		t.Fatal(err)
	}
	info := metainfo.Info{PieceLength: b.m.PieceLength}
	if err := info.BuildFromFilePath(p); err != nil {
		t.Fatal(err)
	}
	ib, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if want := metainfo.HashBytes(ib).HexString(); want != b.m.InfoHash {
		t.Fatalf("Metainfo = %s, anacrolix says %s", b.m.InfoHash, want)
	}

	if other, _ := Metainfo(bytes.NewReader(b.data), b.m.BundleSize, b.m.PieceLength, "other.tar.zst"); other == b.m.InfoHash {
		t.Error("the name does not change the infohash")
	}
	for _, tt := range []struct {
		name string
		data []byte
		size int64
		pl   int64
	}{
		{"short", b.data[:100], b.m.BundleSize, b.m.PieceLength},
		{"long", b.data, b.m.BundleSize - 1, b.m.PieceLength},
		{"zero size", nil, 0, b.m.PieceLength},
		{"piece length not a power of two", b.data, b.m.BundleSize, 3 << 10},
	} {
		if _, err := Metainfo(bytes.NewReader(tt.data), tt.size, tt.pl, name); err == nil {
			t.Errorf("%s: Metainfo succeeded", tt.name)
		}
	}
}

func TestMagnetURI(t *testing.T) {
	m := release.Manifest{App: "web", Version: "1.2.3+build.4", InfoHash: "0123456789abcdef0123456789abcdef01234567"}
	got := MagnetURI(m, "10.0.0.1:6881", "[::1]:6881")
	want := "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567" +
		"&dn=web-1.2.3%2Bbuild.4.tar.zst&x.pe=10.0.0.1:6881&x.pe=[::1]:6881"
	if got != want {
		t.Fatalf("MagnetURI =\n %s\nwant\n %s", got, want)
	}
	mag, err := metainfo.ParseMagnetUri(got)
	if err != nil {
		t.Fatal(err)
	}
	if mag.InfoHash.HexString() != m.InfoHash || mag.DisplayName != "web-1.2.3+build.4.tar.zst" {
		t.Errorf("parsed back as %+v", mag)
	}
	if pe := mag.Params["x.pe"]; len(pe) != 2 || pe[0] != "10.0.0.1:6881" || pe[1] != "[::1]:6881" {
		t.Errorf("peers parsed back as %q", pe)
	}
	if got := MagnetURI(m); strings.Contains(got, "x.pe") {
		t.Errorf("MagnetURI without peers = %s", got)
	}
}

func BenchmarkFetchLoopback(b *testing.B) {
	bun := newBundle(b, 32<<20)
	origin := newOrigin(b, bun, Config{})
	b.SetBytes(bun.m.BundleSize)
	b.ResetTimer()
	for range b.N {
		l := newClient(b, Config{})
		fetch(b, l, bun.m, Sources{Origins: []string{origin.Addr()}})
		b.StopTimer()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
