package seeder

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
)

type fixture struct {
	s *Seeder
	c *Client
	// key is the seeder's rollout key; rel the release key that signs the
	// manifests the tests publish.
	key, rel *release.PrivateKey
	store    string
	token    string // the API token c sends
	cancel   context.CancelFunc
}

// releaseKeyOf is the release key that goes with a test's rollout key:
// derived from it, so that a seeder restarted with the same key trusts the
// same release key.
func releaseKeyOf(rollout *release.PrivateKey) *release.PrivateKey {
	seed := sha256.Sum256([]byte("release key of " + rollout.ID()))
	k, err := release.GenerateKey(bytes.NewReader(seed[:]))
	if err != nil {
		panic(err) // it reads 32 bytes of seed
	}
	return k
}

// send sends req to f's seeder with its API token.
func (f *fixture) send(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func startSeeder(t *testing.T, store string) *fixture {
	t.Helper()
	key, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return startSeederWithKey(t, store, key)
}

func startSeederWithKey(t *testing.T, store string, key *release.PrivateKey) *fixture {
	t.Helper()
	return startSeederConfig(t, Config{StoreDir: store, Key: key})
}

// startSeederConfig starts a seeder from cfg with its name and addresses
// filled in for a test, and an API token unless cfg has one or InsecureAPI.
func startSeederConfig(t *testing.T, cfg Config) *fixture {
	t.Helper()
	return startSeederTuned(t, cfg, nil)
}

// startSeederTuned is startSeederConfig with tune, when set, called
// between New and Start.
func startSeederTuned(t *testing.T, cfg Config, tune func(*Seeder)) *fixture {
	t.Helper()
	key, store := cfg.Key, cfg.StoreDir
	rel := releaseKeyOf(key)
	if cfg.Trust.Release == nil {
		cfg.Trust.Release = release.NewKeyring(rel.Public())
	}
	cfg.Name, cfg.GossipAddr, cfg.TorrentAddr, cfg.APIAddr = "seeder", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.APIToken == "" && !cfg.InsecureAPI {
		cfg.APIToken = testToken(t)
	}
	s, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("seeder run: %v", err)
		}
	})
	c, err := NewClient(s.APIURL(), ClientOptions{Token: cfg.APIToken})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, c: c, key: key, rel: rel, store: store, token: cfg.APIToken, cancel: cancel}
}

func testToken(t *testing.T) string {
	t.Helper()
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func appTree(t *testing.T, content string, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if size > 0 {
		b := make([]byte, size)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "blob"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func pack(t *testing.T, f *fixture, src, app, version string) *Bundle {
	t.Helper()
	b, err := Pack(PackOptions{Source: src, App: app, Version: version, Key: f.rel, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// storeListing is every path under the store except desired.json, which a
// refused publish must not change either (checked separately), and
// peers.json, the gossip addresses the seeder knows, which change as members
// come and go.
func storeListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "peers.json") || strings.HasPrefix(rel, ".tmp-peers.json") {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

func TestPublishStoresSeedsAndIssues(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	ctx := context.Background()
	b1 := pack(t, f, appTree(t, "v1", 300<<10), "web", "1.0.0")
	res, err := f.c.PublishBundle(ctx, b1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReleaseID != b1.Manifest.ReleaseID || res.Sequence != 1 || res.Existed {
		t.Fatalf("first publish: %+v", res)
	}
	if !strings.HasPrefix(res.Magnet, "magnet:?xt=urn:btih:"+b1.Manifest.InfoHash) {
		t.Errorf("magnet %q", res.Magnet)
	}
	// The same bytes again: stored already, the target does not move.
	res, err = f.c.PublishBundle(ctx, b1, nil)
	if err != nil || !res.Existed || res.Sequence != 1 {
		t.Fatalf("republish: %+v %v", res, err)
	}
	// v2 moves the target and remembers v1 as previous.
	b2 := pack(t, f, appTree(t, "v2", 0), "web", "2.0.0")
	res, err = f.c.PublishBundle(ctx, b2, nil)
	if err != nil || res.Sequence != 2 {
		t.Fatalf("v2: %+v %v", res, err)
	}
	d, _, ok := f.s.gossip.Desired("web@default")
	if !ok || d.Previous == nil {
		t.Fatalf("desired state after v2: ok=%v previous=%v", ok, d.Previous)
	}
	if pm, _ := d.Previous.Unverified(); pm.ReleaseID != b1.Manifest.ReleaseID {
		t.Errorf("previous = %s, want v1 %s", pm.ReleaseID, b1.Manifest.ReleaseID)
	}
	st := f.s.Status()
	if len(st.Desired) != 1 || st.Desired[0].Version != "2.0.0" || len(st.Seeders) != 1 || len(st.Nodes) != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestStoreSurvivesRestart(t *testing.T) {
	store := t.TempDir()
	key, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := startSeederWithKey(t, store, key)
	b := pack(t, f, appTree(t, "v1", 100<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(context.Background(), b, nil); err != nil {
		t.Fatal(err)
	}
	f.cancel()
	// Wait for the first seeder to let go of its ports' state by starting
	// a second one on the same store; it must find the release and seq.
	time.Sleep(100 * time.Millisecond)
	g := startSeederWithKey(t, store, key)
	if _, ok := g.s.store.get(b.Manifest.ReleaseID); !ok {
		t.Fatal("release lost across restart")
	}
	b2 := pack(t, g, appTree(t, "v2", 0), "web", "2.0.0")
	res, err := g.c.PublishBundle(context.Background(), b2, nil)
	if err != nil || res.Sequence != 2 {
		t.Fatalf("publish after restart: %+v %v (want seq 2)", res, err)
	}
}

func TestPublishRefusals(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	ctx := context.Background()
	good := pack(t, f, appTree(t, "v1", 200<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(ctx, good, nil); err != nil {
		t.Fatal(err)
	}
	before := storeListing(t, f.store)
	desiredBefore := readFile(t, filepath.Join(f.store, "desired.json"))
	bundle, err := os.ReadFile(good.Path)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other := pack(t, f, appTree(t, "v1 but different", 0), "web", "1.0.0")
	otherBytes, err := os.ReadFile(other.Path)
	if err != nil {
		t.Fatal(err)
	}

	resign := func(m release.Manifest, k *release.PrivateKey) release.SignedManifest {
		sm, err := release.SignManifest(m, k)
		if err != nil {
			t.Fatal(err)
		}
		return sm
	}
	fresh := pack(t, f, appTree(t, "v3", 100<<10), "web", "3.0.0")
	freshBytes, err := os.ReadFile(fresh.Path)
	if err != nil {
		t.Fatal(err)
	}
	v2 := fresh.Manifest
	alias := good.Manifest
	alias.Version = "2.0.0"
	wrongHash := v2
	wrongHash.ReleaseID = release.IDOf([]byte("not these bytes"))
	wrongInfo := v2
	wrongInfo.InfoHash = strings.Repeat("ab", 20)
	short := v2

	cases := []struct {
		name string
		sm   release.SignedManifest
		body []byte
		code int
	}{
		{"untrusted key", resign(v2, stranger), freshBytes, http.StatusForbidden},
		{"same bytes under another version", resign(alias, f.rel), bundle, http.StatusConflict},
		{"version conflict", other.Signed, otherBytes, http.StatusConflict},
		{"bytes do not hash to the release id", resign(wrongHash, f.rel), freshBytes, http.StatusBadRequest},
		{"infohash does not match", resign(wrongInfo, f.rel), freshBytes, http.StatusBadRequest},
		{"truncated upload", resign(short, f.rel), freshBytes[:len(freshBytes)/2], http.StatusBadRequest},
		{"too many bytes", resign(short, f.rel), append(slices.Clone(freshBytes), 1, 2, 3), http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.Publish(ctx, tc.sm, bytes.NewReader(tc.body), int64(len(tc.body)))
			var refused *ErrRefused
			if !errors.As(err, &refused) || refused.Status != tc.code {
				t.Fatalf("got %v, want HTTP %d", err, tc.code)
			}
			t.Logf("%d: %s", refused.Status, refused.Message)
		})
	}
	if after := storeListing(t, f.store); !slices.Equal(before, after) {
		t.Errorf("refused publishes changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if after := readFile(t, filepath.Join(f.store, "desired.json")); !bytes.Equal(desiredBefore, after) {
		t.Errorf("refused publishes changed the desired state")
	}
}

func TestPublishMalformedRequest(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	for _, hdr := range []string{"", "%%%", "bm90IGpzb24="} {
		req, _ := http.NewRequest(http.MethodPost, f.s.APIURL()+PathReleases, strings.NewReader("x"))
		if hdr != "" {
			req.Header.Set(ManifestHeader, hdr)
		}
		resp := f.send(t, req)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("header %q: status %d, want 400", hdr, resp.StatusCode)
		}
	}
	if err := f.c.Ping(context.Background(), time.Second); err != nil {
		t.Errorf("healthz: %v", err)
	}
}

// A full disk refuses the publish with 507 and leaves the store as it was.
// It needs root to mount a small tmpfs; elsewhere it is skipped.
func TestPublishFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	store := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "swarm-test", store).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		// The seeder's torrent files close a moment after it does (the swarm
		// package's closeGrace): retry while the mount is busy.
		for range 50 {
			if exec.Command("umount", store).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	f := startSeeder(t, store)
	small := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(context.Background(), small, nil); err != nil {
		t.Fatal(err)
	}
	before := storeListing(t, store)
	big := pack(t, f, appTree(t, "v2", 3<<20), "web", "2.0.0")
	_, err := f.c.PublishBundle(context.Background(), big, nil)
	var refused *ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusInsufficientStorage {
		t.Fatalf("publish onto a full disk: %v, want HTTP 507", err)
	}
	t.Logf("%d: %s", refused.Status, refused.Message)
	if after := storeListing(t, store); !slices.Equal(before, after) {
		t.Errorf("full-disk publish changed the store:\nbefore %v\nafter  %v", before, after)
	}
}

func TestConfigValidate(t *testing.T) {
	key, _ := release.GenerateKey(rand.Reader)
	tok := testToken(t)
	rel := release.Trust{Release: release.NewKeyring(releaseKeyOf(key).Public())}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{Key: key}, "--store"},
		{"no key", Config{StoreDir: "x"}, "--key"},
		{"no release key", Config{StoreDir: "x", Key: key}, "--trust-release"},
		{"rollout key as release key", Config{StoreDir: "x", Key: key, Trust: release.Trust{Release: release.NewKeyring(key.Public())}}, "one role"},
		{"threshold above keys", Config{StoreDir: "x", Key: key, Trust: release.Trust{Release: rel.Release, ReleaseThreshold: 2}}, "cannot be met"},
		{"bad api", Config{StoreDir: "x", Key: key, Trust: rel, APIAddr: "nope"}, "--api"},
		{"bad port", Config{StoreDir: "x", Key: key, Trust: rel, GossipAddr: "1.2.3.4:99999"}, "--gossip"},
		{"negative rate", Config{StoreDir: "x", Key: key, Trust: rel, UploadRate: -1}, "negative"},
		{"no authentication", Config{StoreDir: "x", Key: key, Trust: rel}, "--api-token-file"},
		{"short token", Config{StoreDir: "x", Key: key, Trust: rel, APIToken: "secret"}, "swarm api-token generate"},
		{"client CA without TLS", Config{StoreDir: "x", Key: key, Trust: rel, APIClientCAs: x509.NewCertPool()}, "--tls-cert"},
		{"every interface without TLS", Config{StoreDir: "x", Key: key, Trust: rel, APIToken: tok, APIAddr: "0.0.0.0:7700"}, "--tls-cert and --tls-key"},
		{"no host without TLS", Config{StoreDir: "x", Key: key, Trust: rel, APIToken: tok, APIAddr: ":7700"}, "not a loopback address"},
		{"a name without TLS", Config{StoreDir: "x", Key: key, Trust: rel, APIToken: tok, APIAddr: "seeder.example:7700"}, "--insecure-api"},
		{"negative bundle size", Config{StoreDir: "x", Key: key, Trust: rel, APIToken: tok, MaxBundleSize: -1}, "--max-bundle-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

// What the API accepts: a token or a client CA, and TLS off loopback,
// unless InsecureAPI.
func TestConfigValidateAPISecurity(t *testing.T) {
	key, _ := release.GenerateKey(rand.Reader)
	tok, cert := testToken(t), &tls.Certificate{}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"token on loopback", Config{APIToken: tok, APIAddr: "127.0.0.1:7700"}},
		{"token on localhost", Config{APIToken: tok, APIAddr: "localhost:0"}},
		{"token on IPv6 loopback", Config{APIToken: tok, APIAddr: "[::1]:7700"}},
		{"token with TLS everywhere", Config{APIToken: tok, APICert: cert, APIAddr: "0.0.0.0:7700"}},
		{"client CA with TLS", Config{APICert: cert, APIClientCAs: x509.NewCertPool(), APIAddr: "0.0.0.0:7700"}},
		{"insecure, open", Config{InsecureAPI: true}},
		{"insecure, token in clear", Config{InsecureAPI: true, APIToken: tok, APIAddr: "0.0.0.0:7700"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.StoreDir, tc.cfg.Key = "x", key
			tc.cfg.Trust = release.Trust{Release: release.NewKeyring(releaseKeyOf(key).Public())}
			if err := tc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if tc.cfg.MaxBundleSize != DefaultMaxBundleSize {
				t.Errorf("max bundle size %d, want the default", tc.cfg.MaxBundleSize)
			}
		})
	}
}
