package gossip

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

func TestMetaRoundTrip(t *testing.T) {
	key := newKey(t)
	ring := release.NewKeyring(key.Public())
	longest := strings.Repeat("a", maxTorrentAddr)
	tests := []struct {
		name    string
		role    Role
		torrent string
		env     string
		gen     uint64
	}{
		{"agent", RoleAgent, "10.0.0.1:6881", "", 1_733_000_000_123_456_789},
		{"seeder in prod", RoleSeeder, "[2001:db8::1]:6881", "prod", 1},
		{"longest torrent address", RoleAgent, longest, strings.Repeat("e", 32), ^uint64(0)},
		{"longest, signed seeder", RoleSeeder, longest, strings.Repeat("e", 32), ^uint64(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.Repeat("n", 128)
			var signer *release.PrivateKey
			if tt.role == RoleSeeder {
				signer = key
			}
			b, err := encodeMeta(name, tt.role, tt.torrent, tt.env, tt.gen, signer)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > metaLimit {
				t.Fatalf("meta is %d bytes, over %d", len(b), metaLimit)
			}
			w, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if w.Role != tt.role || w.Torrent != tt.torrent || w.Env != tt.env || w.Gen != tt.gen {
				t.Fatalf("round trip: got %+v", w)
			}
			err = verifyAnnouncement(name, w, ring)
			if signed := signer != nil; signed != (err == nil) {
				t.Fatalf("signed %v, verify = %v", signed, err)
			}
		})
	}
	// The default environment travels as nothing.
	b, _ := encodeMeta("n", RoleAgent, "", release.DefaultEnv, 0, nil)
	if w, _ := decodeMeta(b); w.Env != "" {
		t.Fatalf("default env encoded as %q", w.Env)
	}
}

// TestAppPartRoundTrip: an app state comes out of its part as it went in,
// but for what is cut to travel: progress to thousandths, rate to KiB/s and
// the error to 200 bytes of valid UTF-8.
func TestAppPartRoundTrip(t *testing.T) {
	id := release.IDOf([]byte("bundle"))
	tests := []struct {
		name    string
		in, out AppState
	}{
		{"empty", AppState{App: "w"}, AppState{App: "w"}},
		{"active", AppState{App: "web", Version: "1.2.3", ReleaseID: id, Phase: PhaseActive, Healthy: true, Progress: 1},
			AppState{App: "web", Version: "1.2.3", ReleaseID: id, Phase: PhaseActive, Healthy: true, Progress: 1}},
		{"downloading", AppState{App: "api", Version: "2.0.0-rc.1", ReleaseID: id, Phase: PhaseDownloading, Progress: 0.12345, Rate: 12<<20 + 100},
			AppState{App: "api", Version: "2.0.0-rc.1", ReleaseID: id, Phase: PhaseDownloading, Progress: 0.123, Rate: 12 << 20}},
		{"out of range", AppState{App: "x", Phase: PhaseStaged, Progress: 7, Rate: -5},
			AppState{App: "x", Phase: PhaseStaged, Progress: 1}},
		{"long error", AppState{App: "job", Phase: PhaseFailed, Error: strings.Repeat("é", 500)},
			AppState{App: "job", Phase: PhaseFailed, Error: strings.Repeat("é", 100)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newPart(7, 3, encodeAppContent(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if p.seq != 7 || p.app != tt.in.App {
				t.Fatalf("part %s at %d", p.app, p.seq)
			}
			if !reflect.DeepEqual(p.state, tt.out) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", p.state, tt.out)
			}
		})
	}
}

// bigApp is an app state as large as the rules allow but for the error.
func bigApp(i int, errMsg string) AppState {
	return AppState{
		App:       fmt.Sprintf("%s-%02d", strings.Repeat("a", 60), i),
		Version:   strings.Repeat("9", 48),
		ReleaseID: release.IDOf([]byte{byte(i)}),
		Phase:     PhaseDownloading,
		Progress:  0.5,
		Rate:      1 << 40,
		Error:     errMsg,

		RunningVersion:   strings.Repeat("8", 48),
		RunningReleaseID: release.IDOf([]byte{byte(i), 1}),
		Refused:          RefusedTooFewSignatures,
	}
}

func TestSetAppsLimits(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	n := startNode(t, testConfig("limits", ring))

	// A long error is cut to fit.
	long := []AppState{bigApp(0, strings.Repeat("é", 2000))}
	if err := n.SetApps(long); err != nil {
		t.Fatalf("SetApps with a long error: %v", err)
	}
	if e := n.Members()[0].Apps[0].Error; len(e) != maxAppError || !strings.HasPrefix(long[0].Error, e) {
		t.Fatalf("error gossiped as %d bytes %q", len(e), e)
	}

	// 32 of the largest apps are taken, and each part fits one packet even
	// with encryption.
	var most []AppState
	for i := range MaxApps {
		most = append(most, bigApp(i, strings.Repeat("x", maxAppError)))
	}
	if err := n.SetApps(most); err != nil {
		t.Fatalf("SetApps with %d apps: %v", len(most), err)
	}
	for _, m := range n.appQueue.Broadcasts(0, 1<<20) {
		if len(m) > maxBroadcast(true) {
			t.Errorf("app-state message of %d bytes, over one encrypted packet (%d)", len(m), maxBroadcast(true))
		}
	}
	if got := n.ownRecord(); len(got) != 1 || len(got[0]) > maxRecordBytes {
		t.Fatalf("own record: %d records, %d bytes (limit %d)", len(got), len(got[0]), maxRecordBytes)
	}

	// The 33rd is refused, naming the count and the limit, and changes
	// nothing.
	before := n.Members()[0].Apps
	n.self.mu.Lock()
	seq := n.self.seq
	n.self.mu.Unlock()
	err := n.SetApps(append(most, bigApp(99, "")))
	if !errors.Is(err, ErrTooManyApps) || !strings.Contains(err.Error(), "33 apps, the limit is 32") {
		t.Fatalf("SetApps with 33 apps = %v, want ErrTooManyApps naming 33 and 32", err)
	}
	if got := n.Members()[0].Apps; !reflect.DeepEqual(got, before) {
		t.Fatal("a refused update changed the gossiped state")
	}
	n.self.mu.Lock()
	if n.self.seq != seq {
		t.Errorf("a refused update moved the sequence from %d to %d", seq, n.self.seq)
	}
	n.self.mu.Unlock()

	// A lower MaxApps is the limit.
	cfg := testConfig("four", ring)
	cfg.MaxApps = 4
	four := startNode(t, cfg)
	if err := four.SetApps(most[:4]); err != nil {
		t.Fatal(err)
	}
	if err := four.SetApps(most[:5]); !errors.Is(err, ErrTooManyApps) || !strings.Contains(err.Error(), "5 apps, the limit is 4") {
		t.Fatalf("SetApps with 5 apps over MaxApps 4 = %v", err)
	}
}

func TestSetAppsValidates(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	n := startNode(t, testConfig("v", ring))
	tests := []struct {
		name string
		apps []AppState
	}{
		{"bad app name", []AppState{{App: "Web/../x"}}},
		{"twice", []AppState{{App: "web"}, {App: "web"}}},
		{"unknown phase", []AppState{{App: "web", Phase: "dancing"}}},
		{"bad release id", []AppState{{App: "web", ReleaseID: "md5:abc"}}},
		{"bad version", []AppState{{App: "web", Version: strings.Repeat("1", 49)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := n.SetApps(tt.apps); err == nil {
				t.Fatal("SetApps accepted it")
			}
		})
	}
}

// TestAnnouncementSignature: a seeder's signature covers its name, role,
// torrent address, environment and generation; changing any of them, or
// signing with a key the receiver does not pin, fails verification.
func TestAnnouncementSignature(t *testing.T) {
	key, stranger := newKey(t), newKey(t)
	ring := release.NewKeyring(key.Public())
	b, err := encodeMeta("seeder-1", RoleSeeder, "10.0.0.1:6881", "prod", 42, key)
	if err != nil {
		t.Fatal(err)
	}
	good, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyAnnouncement("seeder-1", good, ring); err != nil {
		t.Fatalf("genuine announcement refused: %v", err)
	}
	tests := []struct {
		name   string
		member string
		change func(*wireMeta)
		want   error
	}{
		{"other name", "seeder-2", func(*wireMeta) {}, release.ErrBadSignature},
		{"other torrent address", "seeder-1", func(w *wireMeta) { w.Torrent = "10.6.6.6:6881" }, release.ErrBadSignature},
		{"other env", "seeder-1", func(w *wireMeta) { w.Env = "" }, release.ErrBadSignature},
		{"other generation", "seeder-1", func(w *wireMeta) { w.Gen++ }, release.ErrBadSignature},
		{"other role", "seeder-1", func(w *wireMeta) { w.Role = "origin" }, release.ErrBadSignature},
		{"unsigned", "seeder-1", func(w *wireMeta) { w.Key, w.Sig = "", nil }, errUnsigned},
		{"untrusted key", "seeder-1", func(w *wireMeta) {
			w.Key, w.Sig = release.SignAnnouncement(announcement("seeder-1", *w), stranger)
		}, release.ErrUnknownKey},
		{"name runs into role", "seeder-1s", func(w *wireMeta) { w.Role = "eeder" }, release.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := good
			tt.change(&w)
			if err := verifyAnnouncement(tt.member, w, ring); !errors.Is(err, tt.want) {
				t.Fatalf("verify = %v, want %v", err, tt.want)
			}
		})
	}
}
