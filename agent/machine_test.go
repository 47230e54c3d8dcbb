package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
)

func TestNext(t *testing.T) {
	x, y := release.IDOf([]byte("x")), release.IDOf([]byte("y"))
	state := func(id release.ID, ph gossip.Phase, seq uint64) local {
		return local{known: true, st: appState{App: "web", ReleaseID: id, Phase: ph, Seq: seq}}
	}
	withBad := release.DesiredState{Published: 5, Sequence: 9}
	withBad.MarkBad(x)
	tests := []struct {
		name string
		d    release.DesiredState
		l    local
		want action
	}{
		{"nothing known", release.DesiredState{Published: 5, Sequence: 5}, local{}, actWork},
		{"worker on it", release.DesiredState{Published: 5, Sequence: 7}, local{working: x}, actNone},
		{"worker on another", release.DesiredState{Published: 5, Sequence: 7}, local{working: y}, actWork},
		{"active on it", release.DesiredState{Published: 5, Sequence: 7}, state(x, gossip.PhaseActive, 5), actNone},
		{"installed before a restart", release.DesiredState{Published: 5, Sequence: 7}, local{installed: true}, actActive},
		{"rollback to the running release", release.DesiredState{Published: 8, Sequence: 8, Rollback: true}, local{installed: true, working: y}, actActive},
		{"failed since published: a new step does not retry", release.DesiredState{Published: 5, Sequence: 9}, state(x, gossip.PhaseFailed, 5), actNone},
		{"health rolled back since published", release.DesiredState{Published: 5, Sequence: 9}, state(x, gossip.PhaseRolledBack, 6), actNone},
		{"disk full since published: retry", release.DesiredState{Published: 5, Sequence: 9}, local{known: true, st: appState{App: "web", ReleaseID: x, Phase: gossip.PhaseFailed, Seq: 5, Error: "disk full: need 65 MiB, 21 MiB free on /d (--min-free 0)"}}, actWork},
		{"failed before a new publish: retry", release.DesiredState{Published: 9, Sequence: 9}, state(x, gossip.PhaseFailed, 5), actWork},
		{"failed another release", release.DesiredState{Published: 5, Sequence: 9}, state(y, gossip.PhaseFailed, 5), actWork},
		{"bad target", withBad, local{}, actNone},
		{"bad target installed", withBad, local{installed: true}, actActive},
	}
	for _, tt := range tests {
		if got := next(tt.d, x, tt.l); got != tt.want {
			t.Errorf("%s: next = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fakeReleases is an installer in memory.
type fakeReleases struct {
	mu        sync.Mutex
	cur, prev *release.Manifest
	checkErr  error
	rollbacks int
	installs  int
}

func (f *fakeReleases) Install(_ context.Context, m release.Manifest, _ string) (installer.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installs++
	f.prev, f.cur = f.cur, &m
	return installer.Result{}, nil
}

func (f *fakeReleases) Rollback(_ context.Context, _ string) (release.Manifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prev == nil {
		return release.Manifest{}, installer.ErrNoPrevious
	}
	f.rollbacks++
	f.cur, f.prev = f.prev, f.cur
	return *f.cur, nil
}

func (f *fakeReleases) get(p **release.Manifest) (release.Manifest, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *p == nil {
		return release.Manifest{}, false, nil
	}
	return **p, true, nil
}

func (f *fakeReleases) Current(string) (release.Manifest, bool, error)  { return f.get(&f.cur) }
func (f *fakeReleases) Previous(string) (release.Manifest, bool, error) { return f.get(&f.prev) }
func (f *fakeReleases) HealthPending(string) (bool, error)              { return false, nil }
func (f *fakeReleases) Check(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkErr
}

// fakeCluster hands out one desired state.
type fakeCluster struct {
	mu sync.Mutex
	d  release.DesiredState
}

func (c *fakeCluster) Desired(string) (release.DesiredState, release.SignedDesiredState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.d, release.SignedDesiredState{}, c.d.App != ""
}
func (c *fakeCluster) Members() []gossip.NodeState        { return nil }
func (c *fakeCluster) ReleaseProgress(release.ID) float64 { return 0 }

func (c *fakeCluster) set(d release.DesiredState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.d = d
}

// testAgent is an agent with no network: a fake installer and cluster, a
// state file in a temp dir.
func testAgent(t *testing.T, inst releases, view cluster) *Agent {
	t.Helper()
	trust := release.Trust{Release: release.Keyring{}, Rollout: release.Keyring{}}
	for _, ring := range []release.Keyring{trust.Release, trust.Rollout} {
		k, err := release.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ring[k.ID()] = k.Public()
	}
	cfg := Config{DataDir: t.TempDir(), Name: "n1", Trust: trust, Tick: 5 * time.Millisecond}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &Agent{
		cfg: cfg, log: zap.NewNop(), inst: inst, view: view,
		state:   stateFile{path: filepath.Join(cfg.DataDir, "agent.json")},
		workers: map[string]*worker{}, wake: make(chan struct{}, 1),
	}
}

func signedManifest(t *testing.T, k *release.PrivateKey, version string) (release.SignedManifest, release.Manifest) {
	t.Helper()
	m := release.Manifest{
		App: "web", Version: version, ReleaseID: release.IDOf([]byte(version)), BundleSize: 10, UnpackedSize: 10,
		InfoHash: "0123456789abcdef0123456789abcdef01234567", PieceLength: 256 << 10, Created: time.Unix(1, 0).UTC(),
	}
	sm, err := release.SignManifest(m, k)
	if err != nil {
		t.Fatal(err)
	}
	return sm, m
}

// TestSwitchBackWaitsForAdmission: a node told to return to the release it
// ran before stages it at once (it is on disk), switches back only when
// admitted, and needs no download.
func TestSwitchBackWaitsForAdmission(t *testing.T) {
	k, _ := release.GenerateKey(rand.Reader)
	sm1, m1 := signedManifest(t, k, "1")
	_, m2 := signedManifest(t, k, "2")
	inst := &fakeReleases{cur: &m2, prev: &m1}
	view := &fakeCluster{}
	a := testAgent(t, inst, view)
	d := release.DesiredState{App: "web", Sequence: 3, Published: 3, Target: sm1, Admit: 0, Rollback: true}
	view.set(d)

	done := make(chan struct{})
	go func() {
		defer close(done)
		a.drive(t.Context(), d, m1)
	}()
	waitPhase(t, a, gossip.PhaseStaged)
	time.Sleep(50 * time.Millisecond) // ten ticks: it must still wait
	if ph, _, _ := a.AppPhase("web"); ph != gossip.PhaseStaged || inst.rollbacks != 0 {
		t.Fatalf("switched before admission: phase %s, %d rollbacks", ph, inst.rollbacks)
	}
	d.Admit = 1
	view.set(d)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drive did not finish after admission")
	}
	if ph, id, _ := a.AppPhase("web"); ph != gossip.PhaseActive || id != m1.ReleaseID {
		t.Errorf("after switch back: %s %s, want active on %s", ph, id.Short(), m1.ReleaseID.Short())
	}
	if inst.rollbacks != 1 || inst.installs != 0 {
		t.Errorf("%d rollbacks, %d installs; want 1 and 0", inst.rollbacks, inst.installs)
	}
}

func waitPhase(t *testing.T, a *Agent, want gossip.Phase) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ph, _, _ := a.AppPhase("web"); ph == want {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	ph, _, _ := a.AppPhase("web")
	t.Fatalf("phase %s, want %s", ph, want)
}

// TestHealthCounting: HealthFailures consecutive failed checks make the app
// unhealthy, fewer do not, one pass makes it healthy again, and a check of
// a release the app no longer runs changes nothing.
func TestHealthCounting(t *testing.T) {
	inst := &fakeReleases{}
	a := testAgent(t, inst, &fakeCluster{})
	x := release.IDOf([]byte("x"))
	a.setState(appState{App: "web", ReleaseID: x, Phase: gossip.PhaseActive, Healthy: true})
	healthy := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.apps["web"].Healthy
	}
	bad := errors.New("health check failed: exit 1")
	steps := []struct {
		err  error
		id   release.ID
		want bool
	}{
		{bad, x, true}, {bad, x, true}, {nil, x, true}, // a pass resets the count
		{bad, x, true}, {bad, x, true}, {bad, x, false}, // the third in a row
		{bad, x, false}, {nil, x, true}, // healthy again
		{bad, x, true}, {bad, x, true}, {bad, release.IDOf([]byte("other")), true}, // another release: ignored
	}
	for i, s := range steps {
		a.noteHealth("web", s.id, s.err)
		if got := healthy(); got != s.want {
			t.Fatalf("step %d: healthy = %v, want %v", i, got, s.want)
		}
	}
}
