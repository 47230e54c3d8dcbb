package seeder

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// waitTimeout bounds every poll: a deadline against hangs, not a speed
// assertion.
const waitTimeout = 20 * time.Second

// fastGossip cuts gossip timing to milliseconds.
func fastGossip() gossip.Config {
	return gossip.Config{
		GossipInterval: 20 * time.Millisecond, ProbeInterval: 200 * time.Millisecond,
		ProbeTimeout: 100 * time.Millisecond, PushPullInterval: time.Second,
	}
}

// startControlled starts a seeder whose controller runs every 20 ms and
// counts membership as settled after 100 ms.
func startControlled(t *testing.T, store string, key *release.PrivateKey) *fixture {
	t.Helper()
	if key == nil {
		var err error
		if key, err = release.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	return startSeederConfig(t, Config{
		StoreDir: store, Key: key, Gossip: fastGossip(),
		ControlInterval: 20 * time.Millisecond, Settle: 100 * time.Millisecond,
	})
}

// trust is what an agent of f's seeder pins.
func (f *fixture) trust() release.Trust {
	return release.Trust{Release: release.NewKeyring(f.rel.Public()), Rollout: release.NewKeyring(f.key.Public())}
}

// fakeAgent is a gossip member in the agent role that reports whatever a
// test tells it: the controller cannot tell it from a real agent.
type fakeAgent struct {
	name string
	n    *gossip.Node
}

// startAgents joins n fake agents of env to f's seeder and waits until the
// seeder sees them all.
func startAgents(t *testing.T, f *fixture, env string, n int) []*fakeAgent {
	t.Helper()
	var out []*fakeAgent
	for i := range n {
		cfg := fastGossip()
		cfg.Name, cfg.BindAddr, cfg.Env = fmt.Sprintf("%s-%02d", env, i), "127.0.0.1:0", env
		cfg.Trust, cfg.Role = f.trust(), gossip.RoleAgent
		g, err := gossip.New(cfg, zaptest.NewLogger(t).Named(cfg.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		if err := g.Join(context.Background(), []string{f.s.GossipAddr()}); err != nil {
			t.Fatal(err)
		}
		out = append(out, &fakeAgent{name: cfg.Name, n: g})
	}
	waitFor(t, fmt.Sprintf("%d agents in %s", n, env), func() bool { return len(f.s.agents(env)) == n })
	return out
}

// report makes a gossip what it runs of app.
func (a *fakeAgent) report(t *testing.T, app string, id release.ID, phase gossip.Phase, healthy bool) {
	t.Helper()
	if err := a.n.SetApps([]gossip.AppState{{App: app, Version: "x", ReleaseID: id, Phase: phase, Healthy: healthy, Progress: 1}}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// desiredIn is app's desired state in env as the seeder holds it.
func desiredIn(t *testing.T, f *fixture, app, env string) release.DesiredState {
	t.Helper()
	d, _, ok := f.s.gossip.Desired(release.StateKey(app, env))
	if !ok {
		t.Fatalf("no desired state for %s in %s", app, env)
	}
	return d
}

// waitRollout polls app's rollout in env until ok holds.
func waitRollout(t *testing.T, f *fixture, app, env, what string, ok func(rollout.Status) bool) rollout.Status {
	t.Helper()
	var st rollout.Status
	waitFor(t, what, func() bool {
		var err error
		st, err = f.c.Rollout(context.Background(), app, env)
		return err == nil && ok(st)
	})
	return st
}

// refused asserts err is an API refusal with code and a message holding want.
func refused(t *testing.T, err error, code int, want string) {
	t.Helper()
	var r *ErrRefused
	if !errors.As(err, &r) || r.Status != code || !strings.Contains(r.Message, want) || strings.Contains(r.Message, "\n") {
		t.Fatalf("got %v, want HTTP %d with %q on one line", err, code, want)
	}
}

func TestPublishRolloutRefusals(t *testing.T) {
	f := startControlled(t, t.TempDir(), nil)
	startAgents(t, f, "prod", 2)
	ctx := context.Background()
	b := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	before := storeListing(t, f.store)

	for _, c := range []struct {
		name string
		opts PublishOptions
		want string
	}{
		{"count step larger than the fleet", PublishOptions{Env: "prod", Plan: &release.Plan{Steps: []release.Step{{Count: 1}, {Count: 3}}}}, "invalid plan step 3 is more nodes than the 2 in environment prod"},
		{"plan not increasing", PublishOptions{Env: "prod", Plan: &release.Plan{Steps: []release.Step{{Percent: 50}, {Percent: 10}}}}, "step 2 (10%) does not increase"},
		{"percentage over 100", PublishOptions{Plan: &release.Plan{Steps: []release.Step{{Percent: 150}}}}, "a percentage must be above 0 and at most 100"},
		{"unknown strategy", PublishOptions{Plan: &release.Plan{Strategy: "yolo"}}, `strategy "yolo"`},
		{"bad environment", PublishOptions{Env: "Prod!"}, `environment "Prod!"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.c.PublishBundle(ctx, b, nil, c.opts)
			refused(t, err, http.StatusBadRequest, c.want)
			t.Log(err)
		})
	}
	if after := storeListing(t, f.store); !slices.Equal(before, after) {
		t.Errorf("refused publishes changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if got := f.s.gossip.DesiredAll(); len(got) != 0 {
		t.Errorf("refused publishes issued %d desired states", len(got))
	}

	// A malformed header is refused before anything is read.
	for _, h := range []string{"%%%", base64.StdEncoding.EncodeToString([]byte(`{"env": 5}`)), base64.StdEncoding.EncodeToString([]byte(`{"plan": {"stepz": []}}`))} {
		mb, _ := json.Marshal(b.Signed)
		req, _ := http.NewRequest(http.MethodPost, f.s.APIURL()+PathReleases, strings.NewReader("x"))
		req.Header.Set(ManifestHeader, base64.StdEncoding.EncodeToString(mb))
		req.Header.Set(RolloutHeader, h)
		resp := f.send(t, req)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte(RolloutHeader)) {
			t.Errorf("header %q: %d %s", h, resp.StatusCode, body)
		}
	}

	// The same plan within the fleet is taken.
	res, err := f.c.PublishBundle(ctx, b, nil, PublishOptions{Env: "prod", Plan: &release.Plan{Steps: []release.Step{{Count: 1}, {Count: 2}}}})
	if err != nil || res.Env != "prod" || res.Sequence != 1 {
		t.Fatalf("publish within the fleet: %+v %v", res, err)
	}
	if d := desiredIn(t, f, "web", "prod"); d.Plan.String() != "1,2" || d.State != release.RolloutProgressing {
		t.Errorf("plan %s state %s", d.Plan, d.State)
	}
}

func TestRolloutCommandsRoundTrip(t *testing.T) {
	f := startControlled(t, t.TempDir(), nil)
	startAgents(t, f, "prod", 3)
	ctx := context.Background()
	b := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(ctx, b, nil, PublishOptions{Env: "prod", Plan: &release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}}}); err != nil {
		t.Fatal(err)
	}

	_, err := f.c.Rollout(ctx, "web", "staging")
	refused(t, err, http.StatusNotFound, "no rollout for app web in environment staging")
	_, err = f.c.Rollout(ctx, "api", "prod")
	refused(t, err, http.StatusNotFound, "no rollout for app api in environment prod")
	_, err = f.c.RolloutCommand(ctx, "web", "prod", "explode")
	refused(t, err, http.StatusBadRequest, `rollout command "explode"`)

	st, err := f.c.RolloutCommand(ctx, "web", "prod", VerbPause)
	if err != nil || st.State != release.RolloutPaused || !st.Paused || st.Env != "prod" || st.Version != "1.0.0" {
		t.Fatalf("pause: %+v %v", st, err)
	}
	if d := desiredIn(t, f, "web", "prod"); !d.Paused || d.State != release.RolloutPaused || d.Reason != "paused by operator" {
		t.Fatalf("signed after pause: %+v", d)
	}
	_, err = f.c.RolloutCommand(ctx, "web", "prod", VerbPause)
	refused(t, err, http.StatusConflict, "rollout is paused already")
	_, err = f.c.RolloutCommand(ctx, "web", "prod", VerbPromote)
	refused(t, err, http.StatusConflict, "resume it first")

	st, err = f.c.RolloutCommand(ctx, "web", "prod", VerbResume)
	if err != nil || st.Paused || (st.State != release.RolloutProgressing && st.State != release.RolloutBaking) {
		t.Fatalf("resume: %+v %v", st, err)
	}
	_, err = f.c.RolloutCommand(ctx, "web", "prod", VerbResume)
	refused(t, err, http.StatusConflict, "rollout is not paused")

	st, err = f.c.RolloutCommand(ctx, "web", "prod", VerbAbort)
	if err != nil || st.State != release.RolloutAborted || !st.Paused {
		t.Fatalf("abort: %+v %v", st, err)
	}
	seq := desiredIn(t, f, "web", "prod").Sequence
	for _, verb := range []string{VerbPause, VerbResume, VerbPromote, VerbAbort} {
		_, err = f.c.RolloutCommand(ctx, "web", "prod", verb)
		refused(t, err, http.StatusConflict, "rollout has ended (aborted)")
	}
	if got := desiredIn(t, f, "web", "prod").Sequence; got != seq {
		t.Errorf("refused commands moved the sequence from %d to %d", seq, got)
	}

	// The first release has nothing to go back to.
	_, err = f.c.RolloutCommand(ctx, "web", "prod", VerbRollback)
	refused(t, err, http.StatusConflict, "no previous release to roll back to")
	_, err = f.c.RollbackTo(ctx, "web", "prod", "0.9.0")
	refused(t, err, http.StatusNotFound, "no version 0.9.0 of web in the seeder's store")

	all, err := f.c.Rollouts(ctx)
	if err != nil || len(all) != 1 || all[0].App != "web" || all[0].Env != "prod" {
		t.Fatalf("rollouts: %+v %v", all, err)
	}
	if st := f.s.Status(); len(st.Rollouts) != 1 || st.Rollouts[0].State != release.RolloutAborted {
		t.Errorf("status rollouts %+v", st.Rollouts)
	}
}

func TestRollbackCommand(t *testing.T) {
	f := startControlled(t, t.TempDir(), nil)
	ctx := context.Background()
	b1 := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	b2 := pack(t, f, appTree(t, "v2", 10<<10), "web", "2.0.0")
	b3 := pack(t, f, appTree(t, "v3", 10<<10), "web", "3.0.0")
	for _, b := range []*Bundle{b1, b2, b3} {
		if _, err := f.c.PublishBundle(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Back to a named version, at once, marking 3.0.0 bad.
	st, err := f.c.RollbackTo(ctx, "web", "", "1.0.0")
	if err != nil || st.Version != "1.0.0" || st.Strategy != release.StrategyAllAtOnce || st.Env != release.DefaultEnv {
		t.Fatalf("rollback to 1.0.0: %+v %v", st, err)
	}
	d := desiredIn(t, f, "web", "")
	pm, _ := d.Previous.Unverified()
	if !d.Rollback || d.Admit != 1 || !d.IsBad(b3.Manifest.ReleaseID) || pm.Version != "3.0.0" || d.Published != d.Sequence {
		t.Fatalf("rollback state %+v", d)
	}
	_, err = f.c.RolloutCommand(ctx, "web", "", VerbRollback)
	refused(t, err, http.StatusConflict, "name a release to go to")
	_, err = f.c.RollbackTo(ctx, "web", "", "1.0.0")
	refused(t, err, http.StatusConflict, "1.0.0 release is already the target")

	// Publishing 3.0.0 again is a replay: refused, nothing issued. Going
	// back to it is the operator's explicit rollback, which clears it from
	// the bad releases.
	seq := d.Sequence
	_, err = f.c.PublishBundle(ctx, b3, nil)
	refused(t, err, http.StatusConflict, "swarm rollout rollback web --env default --to 3.0.0")
	if d = desiredIn(t, f, "web", ""); d.Sequence != seq {
		t.Fatalf("refused republish issued seq %d", d.Sequence)
	}
	if _, err := f.c.RollbackTo(ctx, "web", "", "3.0.0"); err != nil {
		t.Fatal(err)
	}
	d = desiredIn(t, f, "web", "")
	if tm, _ := d.Target.Unverified(); d.IsBad(b3.Manifest.ReleaseID) || tm.Version != "3.0.0" {
		t.Fatalf("state after rollback to 3.0.0: %+v", d)
	}
}

func TestPromoteRelease(t *testing.T) {
	f := startControlled(t, t.TempDir(), nil)
	startAgents(t, f, "prod", 2)
	ctx := context.Background()
	b := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(ctx, b, nil, PublishOptions{Env: "staging"}); err != nil {
		t.Fatal(err)
	}
	_, err := f.c.PromoteRelease(ctx, "web", "qa", "prod", nil)
	refused(t, err, http.StatusNotFound, "no rollout for app web in environment qa")
	_, err = f.c.PromoteRelease(ctx, "web", "staging", "staging", nil)
	refused(t, err, http.StatusBadRequest, "from and to are both environment staging")
	_, err = f.c.PromoteRelease(ctx, "web", "staging", "prod", &release.Plan{Steps: []release.Step{{Count: 5}}})
	refused(t, err, http.StatusBadRequest, "invalid plan step 5 is more nodes than the 2 in environment prod")

	plan := &release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}, Bake: time.Minute}
	st, err := f.c.PromoteRelease(ctx, "web", "staging", "prod", plan)
	if err != nil || st.Env != "prod" || st.Version != "1.0.0" || st.Steps != 2 || st.Nodes != 2 {
		t.Fatalf("promote: %+v %v", st, err)
	}
	staging, prod := desiredIn(t, f, "web", "staging"), desiredIn(t, f, "web", "prod")
	if !bytes.Equal(staging.Target.Payload, prod.Target.Payload) || !bytes.Equal(staging.Target.Sig, prod.Target.Sig) || staging.Target.KeyID != prod.Target.KeyID {
		t.Fatal("prod's target is not staging's signed manifest")
	}
	if prod.Plan.String() != "1,100%" || prod.Plan.Bake != time.Minute || prod.Previous != nil {
		t.Errorf("prod state %+v", prod)
	}
	if n := len(f.s.store.list()); n != 1 {
		t.Errorf("store holds %d releases after a promotion, want 1", n)
	}
}

// The controller goroutine drives a wave rollout through its steps, and
// rolls back and marks bad a release that fails on its canary.
func TestControllerDrivesRollouts(t *testing.T) {
	f := startControlled(t, t.TempDir(), nil)
	agents := startAgents(t, f, "prod", 4)
	ctx := context.Background()

	// follow makes every fake agent do what the desired state says:
	// admitted ones run the target (failing it if fail says so), the
	// others stage it.
	follow := func(fail func(name string) bool) {
		d := desiredIn(t, f, "web", "prod")
		m, _ := d.Target.Unverified()
		for _, a := range agents {
			switch {
			case !rollout.Admitted(a.name, &d, m.ReleaseID):
				a.report(t, "web", m.ReleaseID, gossip.PhaseStaged, false)
			case fail(a.name):
				a.report(t, "web", m.ReleaseID, gossip.PhaseFailed, false)
			default:
				a.report(t, "web", m.ReleaseID, gossip.PhaseActive, true)
			}
		}
	}
	never := func(string) bool { return false }
	plan := &release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}, Bake: 100 * time.Millisecond}

	v1 := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(ctx, v1, nil, PublishOptions{Env: "prod"}); err != nil {
		t.Fatal(err)
	}
	follow(never)
	waitRollout(t, f, "web", "prod", "1.0.0 complete", func(st rollout.Status) bool { return st.State == release.RolloutComplete })

	v2 := pack(t, f, appTree(t, "v2", 10<<10), "web", "2.0.0")
	if _, err := f.c.PublishBundle(ctx, v2, nil, PublishOptions{Env: "prod", Plan: plan}); err != nil {
		t.Fatal(err)
	}
	st := waitRollout(t, f, "web", "prod", "2.0.0's canary admitted", func(st rollout.Status) bool { return st.Version == "2.0.0" && st.Admitted == 1 })
	if st.Step != 1 || st.Steps != 2 {
		t.Fatalf("canary step: %+v", st)
	}
	follow(never)
	waitRollout(t, f, "web", "prod", "2.0.0 step 2", func(st rollout.Status) bool { return st.Step == 2 && st.Admitted == 4 })
	follow(never)
	waitRollout(t, f, "web", "prod", "2.0.0 complete", func(st rollout.Status) bool { return st.State == release.RolloutComplete })

	v3 := pack(t, f, appTree(t, "v3", 10<<10), "web", "3.0.0")
	if _, err := f.c.PublishBundle(ctx, v3, nil, PublishOptions{Env: "prod", Plan: plan}); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, f, "web", "prod", "3.0.0's canary admitted", func(st rollout.Status) bool { return st.Version == "3.0.0" && st.Admitted == 1 })
	follow(func(string) bool { return true })
	st = waitRollout(t, f, "web", "prod", "3.0.0 rolled back", func(st rollout.Status) bool { return st.Version == "2.0.0" })
	d := desiredIn(t, f, "web", "prod")
	if !d.Rollback || d.State != release.RolloutRolledBack || !d.IsBad(v3.Manifest.ReleaseID) || d.Admit != 1 {
		t.Fatalf("rollback state %+v", d)
	}
	if !strings.HasPrefix(d.Reason, "1 of 4 nodes failed, budget 0: prod-") || !strings.HasSuffix(d.Reason, " failed") {
		t.Errorf("reason %q", d.Reason)
	}
	if st.State != release.RolloutRollingBack {
		t.Errorf("status while the canary still reports 3.0.0: %s", st.State)
	}
	follow(never)
	waitRollout(t, f, "web", "prod", "every node back on 2.0.0", func(st rollout.Status) bool { return st.State == release.RolloutRolledBack })
}

// A seeder restarted mid-rollout resumes it from the persisted state.
func TestControllerResumesAfterRestart(t *testing.T) {
	store := t.TempDir()
	key, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := startControlled(t, store, key)
	agents := startAgents(t, f, "prod", 3)
	ctx := context.Background()
	b := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	plan := &release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}, Bake: 100 * time.Millisecond}
	if _, err := f.c.PublishBundle(ctx, b, nil, PublishOptions{Env: "prod", Plan: plan}); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, f, "web", "prod", "canary admitted", func(st rollout.Status) bool { return st.Admitted == 1 })
	d := desiredIn(t, f, "web", "prod")
	f.cancel()
	waitFor(t, "the seeder to leave", func() bool {
		for _, m := range agents[0].n.Members() {
			if m.Name == "seeder" {
				return false
			}
		}
		return true
	})

	// While the seeder is away, the canary installs.
	for _, a := range agents {
		if rollout.Admitted(a.name, &d, b.Manifest.ReleaseID) {
			a.report(t, "web", b.Manifest.ReleaseID, gossip.PhaseActive, true)
		} else {
			a.report(t, "web", b.Manifest.ReleaseID, gossip.PhaseStaged, false)
		}
	}
	g := startControlled(t, store, key)
	for _, a := range agents {
		if err := a.n.Join(ctx, []string{g.s.GossipAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	st := waitRollout(t, g, "web", "prod", "step 2 after the restart", func(st rollout.Status) bool { return st.Step == 2 })
	if st.Admitted != 3 || st.Sequence != d.Sequence+1 {
		t.Fatalf("resumed rollout: %+v (was seq %d)", st, d.Sequence)
	}
}
