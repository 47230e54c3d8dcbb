package agent

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// staticView is a cluster whose members a test sets: no gossip, the same
// view on every agent that shares it.
type staticView struct {
	mu       sync.Mutex
	members  []gossip.NodeState
	progress func() float64
}

func (v *staticView) Desired(string) (release.DesiredState, release.SignedDesiredState, bool) {
	return release.DesiredState{}, release.SignedDesiredState{}, false
}

func (v *staticView) Members() []gossip.NodeState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]gossip.NodeState(nil), v.members...)
}

func (v *staticView) ReleaseProgress(release.ID) float64 { return v.progress() }

// TestBannedFeederIsReplaced: the corrupt-peer fault. An agent that fetched
// the release alone serves a bundle overwritten on disk (its pieces are
// complete in memory) and ranks first among four agents, so that with two
// feeders it holds share 0. The three others, each with a real torrent
// client, ban it at once; the one ranked next after the feeders takes its
// share from the origin, and everyone completes without the origin
// fallback, set to ten minutes here so that a stall cannot pass. The
// origin sends about one copy: each share once.
func TestBannedFeederIsReplaced(t *testing.T) {
	const size = 8 << 20
	originDir := t.TempDir()
	m := capBundle(t, originDir, size)
	data, err := os.ReadFile(swarm.BundlePath(originDir, m.ReleaseID))
	if err != nil {
		t.Fatal(err)
	}
	origin := startSwarm(t, swarm.Config{Dir: originDir, Origin: true})
	if err := origin.Seed(m); err != nil {
		t.Fatal(err)
	}
	bad := corruptSeeder(t, m, data)

	names := feederRank(m.ReleaseID, []string{"node-a", "node-b", "node-c", "node-d"})
	view := &staticView{members: []gossip.NodeState{
		{Name: "seeder", Role: gossip.RoleSeeder, TorrentAddr: origin.Addr(), Env: release.DefaultEnv},
		{Name: names[0], Role: gossip.RoleAgent, TorrentAddr: bad.Addr(), Env: release.DefaultEnv,
			Apps: []gossip.AppState{{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Phase: gossip.PhaseActive, Progress: 1}}},
	}}
	agents := make([]*Agent, len(names)-1)
	for i, name := range names[1:] {
		log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(name)
		c := startSwarm(t, swarm.Config{Dir: t.TempDir(), DisablePEX: true})
		agents[i] = &Agent{
			cfg: Config{Name: name, Env: release.DefaultEnv, OriginFeeders: 2, OriginFallback: 10 * time.Minute, MaxPeers: 20},
			log: log, view: view, torrent: c,
		}
		view.members = append(view.members, gossip.NodeState{Name: name, Role: gossip.RoleAgent, TorrentAddr: c.Addr(), Env: release.DefaultEnv,
			Apps: []gossip.AppState{{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Phase: gossip.PhaseDownloading}}})
	}
	// The swarm always looks busy: only the ban may end the wait.
	var calls float64
	var callsMu sync.Mutex
	view.progress = func() float64 {
		callsMu.Lock()
		defer callsMu.Unlock()
		calls++
		return 1 + calls
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(agents))
	for i, a := range agents {
		wg.Go(func() { errs[i] = a.torrent.FetchWith(ctx, m, a.sources(m), a.originUse(m, a.log)) })
	}
	wg.Wait()
	for i, a := range agents {
		if errs[i] != nil {
			t.Fatalf("%s (rank %d): %v", a.cfg.Name, i+1, errs[i])
		}
		got, err := os.ReadFile(a.torrent.BundlePath(m.ReleaseID))
		if err != nil || string(got) != string(data) {
			t.Fatalf("%s: bundle after the fetch: err %v, equal %v", a.cfg.Name, err, string(got) == string(data))
		}
		s := a.torrent.Stats()
		t.Logf("%s (rank %d): %d bytes from the origin, %d from peers, %d banned", a.cfg.Name, i+1, s.BytesFromOrigin, s.BytesFromPeers, s.PeersBanned)
		if i == 2 && s.BytesFromOrigin != 0 {
			t.Errorf("%s ranks after the feeder that replaced the banned one, but got %d bytes from the origin", a.cfg.Name, s.BytesFromOrigin)
		}
	}
	if s := agents[1].torrent.Stats(); s.BytesFromOrigin == 0 {
		t.Errorf("%s, next in rank after the feeders, took nothing from the origin: the banned feeder's share was not replaced", agents[1].cfg.Name)
	}
	sent := origin.Stats().BytesSent
	t.Logf("origin sent %.3f copies", float64(sent)/float64(size))
	// Each share once; endgame may send a block twice, and a request the
	// origin had read before the peer closed its connection still goes out.
	if limit := size + size/10; sent > int64(limit) {
		t.Errorf("origin sent %d bytes for a %d-byte bundle: more than 1.1 copies", sent, size)
	}
}

// corruptSeeder seeds data, m's bundle, from 127.0.0.2 (anacrolix bans an
// IP, not a port, and every other client is on 127.0.0.1), then overwrites
// its file in place: it keeps claiming every piece and serves pieces that
// fail their hashes.
func corruptSeeder(t *testing.T, m release.Manifest, data []byte) *swarm.Client {
	t.Helper()
	dir := t.TempDir()
	c, err := swarm.New(swarm.Config{Dir: dir, ListenAddr: "127.0.0.2:0", DisablePEX: true}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named("corrupt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := swarm.BundlePath(dir, m.ReleaseID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Seed(m); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, len(data))
	for i := range junk {
		junk[i] = data[i] ^ 0x5a
	}
	if err := os.WriteFile(p, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}
