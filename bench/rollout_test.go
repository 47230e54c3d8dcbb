package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/seeder"
)

// The rollout tests run one in-process cluster of rolloutAgents agents (the
// default environment), a few staging agents and a few "checked" agents, and
// roll a different app in each subtest, so that every rollout starts from a
// fleet that runs v1.
//
// Only the checked agents run the periodic health check often (the subtest
// of a release that turns sick during its bake needs it): every check
// starts a hook shim, and 23 agents checking every app every 2 s started
// about 100 a second by the later subtests, which starved the race-built
// test until memberlist's probes failed and the package ran 20 minutes.
// The default environment has 12 agents, not the 20 it had: enough for three
// distinct waves, and the race-built process of 20 (with the other packages'
// tests beside it in make test) was starved into missed probes.
const (
	rolloutAgents = 12
	checkedAgents = 4
	checkedEnv    = "checked"
)

// rolloutHook logs every run as "<release dir> <verb>" and fails installs of
// versions starting with "bad".
const rolloutHook = `#!/bin/sh
echo "$SWARM_RELEASE_DIR $1" >> %[1]s
case "$1:$SWARM_VERSION" in
install:bad*) echo "refusing $SWARM_VERSION"; exit 3 ;;
esac
exit 0
`

// rolloutHealth passes for every version but those starting with "sick",
// which pass their first check (at activation) and fail every later one.
const rolloutHealth = `#!/bin/sh
case "$SWARM_VERSION" in
sick*)
	n=$(cat "$SWARM_RELEASE_DIR/.checks" 2>/dev/null || echo 0)
	n=$((n+1))
	echo $n > "$SWARM_RELEASE_DIR/.checks"
	[ "$n" -le 1 ] || { echo "sick"; exit 1; }
	;;
esac
exit 0
`

type rolloutFixture struct {
	t       *testing.T
	c       *Cluster
	hookLog string
	prod    []*Node
	staging []*Node
	checked []*Node
}

func newRolloutFixture(t *testing.T) *rolloutFixture {
	t.Helper()
	dir := t.TempDir()
	hookLog := filepath.Join(dir, "hook.log")
	hook := filepath.Join(dir, "hook.sh")
	health := filepath.Join(dir, "health.sh")
	if err := os.WriteFile(hook, []byte(fmt.Sprintf(rolloutHook, hookLog)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(health, []byte(rolloutHealth), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := NewCluster(ctx, ClusterConfig{
		Dir: filepath.Join(dir, "cluster"), Agents: rolloutAgents, Hook: hook, HealthCheck: health,
		Shim: testShim(t), SharedStorage: true, HealthInterval: -1, HealthFailures: 2, // periodic checks: the checked agents only
		ControlInterval: 50 * time.Millisecond, Settle: 300 * time.Millisecond,
		// Probes at memberlist's LAN pace: FastGossip's 100 ms probe timeout,
		// across 28 members of one race-built process on a host that also
		// runs other packages' tests, had members declared dead and
		// rejoining all the time, and membership that never settles holds
		// a step's admission (a canary admitted 60 s late).
		Gossip: gossip.Config{
			GossipInterval: 50 * time.Millisecond, ProbeInterval: time.Second,
			ProbeTimeout: 500 * time.Millisecond, PushPullInterval: 2 * time.Second,
		},
	}, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f := &rolloutFixture{t: t, c: c, hookLog: hookLog, prod: c.Agents()}
	for i := range 3 {
		n, err := c.AddAgent(fmt.Sprintf("stage-%d", i+1), AgentOptions{Env: "staging"})
		if err != nil {
			t.Fatal(err)
		}
		f.staging = append(f.staging, n)
	}
	for i := range checkedAgents {
		n, err := c.AddAgent(fmt.Sprintf("checked-%d", i+1), AgentOptions{Env: checkedEnv, HealthInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		f.checked = append(f.checked, n)
	}
	f.waitFleet(release.DefaultEnv, rolloutAgents)
	f.waitFleet("staging", 3)
	f.waitFleet(checkedEnv, checkedAgents)
	return f
}

// waitFleet waits until the seeder sees n agents in env.
func (f *rolloutFixture) waitFleet(env string, n int) {
	f.t.Helper()
	f.eventually(fmt.Sprintf("the seeder sees %d agents in %s", n, env), 60*time.Second, func() bool {
		st, err := f.c.Client.Status(context.Background())
		if err != nil {
			return false
		}
		got := 0
		for _, node := range st.Nodes {
			if node.Env == env {
				got++
			}
		}
		return got >= n
	})
}

func (f *rolloutFixture) eventually(what string, d time.Duration, ok func() bool) {
	f.t.Helper()
	eventually(f.t, what, d, ok)
}

// publish publishes app at version (a tiny release) to env under plan.
func (f *rolloutFixture) publish(app, version, env string, plan release.Plan) seeder.PublishResult {
	f.t.Helper()
	src := makeApp(f.t, version, 4<<10)
	res, err := f.c.PublishWith(context.Background(), src, app, version, seeder.PublishOptions{Env: env, Plan: &plan})
	if err != nil {
		f.t.Fatalf("publish %s %s: %v", app, version, err)
	}
	return res
}

// status is the rollout of app in env.
func (f *rolloutFixture) status(app, env string) rollout.Status {
	f.t.Helper()
	st, err := f.c.Client.Rollout(context.Background(), app, env)
	if err != nil {
		f.t.Fatalf("rollout status %s: %v", app, err)
	}
	return st
}

// waitState waits for app's rollout to reach state; on timeout it says
// where the rollout was and why (the fixture logs only warnings).
func (f *rolloutFixture) waitState(app, env string, want release.RolloutState, d time.Duration) rollout.Status {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := f.status(app, env)
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %v waiting until %s in %q is %s: %s at step %d of %d, %d admitted, phases %v: %s",
				d, app, env, want, st.State, st.Step, st.Steps, st.Admitted, st.Phases, st.Reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running lists the nodes whose current release of app is id.
func running(nodes []*Node, app string, id release.ID) []string {
	var out []string
	for _, n := range nodes {
		if m, ok, err := n.Current(app); err == nil && ok && m.ReleaseID == id {
			out = append(out, n.Name())
		}
	}
	return out
}

// hookRuns lists the nodes that ran the hook with verb for app's version.
func (f *rolloutFixture) hookRuns(app, version, verb string) []string {
	b, _ := os.ReadFile(f.hookLog)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		dir, v, ok := strings.Cut(line, " ")
		if !ok || v != verb || !strings.Contains(dir, "/releases/"+app+"/"+version+"-") {
			continue
		}
		// .../cluster/<node>/releases/<app>/<version>-<id>
		node := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(dir))))
		if !slices.Contains(out, node) {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

// v1 rolls app's v1 out to every node of env at once.
func (f *rolloutFixture) v1(app, env string, nodes []*Node) seeder.PublishResult {
	f.t.Helper()
	res := f.publish(app, "1.0.0", env, release.Plan{Strategy: release.StrategyAllAtOnce})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.c.WaitActive(ctx, app, res.ReleaseID, nodes); err != nil {
		f.t.Fatal(err)
	}
	f.waitState(app, env, release.RolloutComplete, 30*time.Second)
	return res
}

func TestRollouts(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster of 19 agents")
	}
	f := newRolloutFixture(t)
	steps, err := release.ParseSteps("1,25%,100%")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("canary waves admit exactly the step's nodes", func(t *testing.T) {
		f.t = t
		f.v1("web", "", f.prod)
		v2 := f.publish("web", "2.0.0", "", release.Plan{Steps: steps, Bake: 400 * time.Millisecond})
		wantAdmitted := []int{1, 3, 12} // 1, 25%, 100% of 12
		seen := map[int]int{}           // step → admitted
		f.eventually("web 2.0.0 completes", 90*time.Second, func() bool {
			before := f.status("web", "")
			moved := running(f.prod, "web", v2.ReleaseID)
			after := f.status("web", "")
			if before.Step == after.Step && before.State != release.RolloutComplete {
				seen[before.Step] = before.Admitted
				if len(moved) > wantAdmitted[before.Step-1] {
					t.Fatalf("step %d admits %d nodes but %d run 2.0.0: %v", before.Step, wantAdmitted[before.Step-1], len(moved), moved)
				}
			}
			return after.State == release.RolloutComplete
		})
		for step, n := range seen {
			if n != wantAdmitted[step-1] {
				t.Errorf("step %d admitted %d nodes, want %d", step, n, wantAdmitted[step-1])
			}
		}
		if len(seen) < 2 {
			t.Errorf("observed only steps %v", seen)
		}
		if got := running(f.prod, "web", v2.ReleaseID); len(got) != rolloutAgents {
			t.Errorf("%d of %d nodes run 2.0.0 after completion", len(got), rolloutAgents)
		}
		if got := f.hookRuns("web", "2.0.0", "install"); len(got) != rolloutAgents {
			t.Errorf("install hook ran on %d nodes, want %d", len(got), rolloutAgents)
		}
	})

	t.Run("a hook failing on the canaries rolls back", func(t *testing.T) {
		f.t = t
		v1 := f.v1("api", "", f.prod)
		bad := f.publish("api", "bad-2", "", release.Plan{Steps: []release.Step{{Count: 2}, {Percent: 100}}})
		st := f.waitState("api", "", release.RolloutRolledBack, 60*time.Second)
		if st.ReleaseID != v1.ReleaseID {
			t.Errorf("rolled back to %s, want %s", st.ReleaseID, v1.ReleaseID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.c.WaitActive(ctx, "api", v1.ReleaseID, f.prod); err != nil {
			t.Fatal(err)
		}
		tried := f.hookRuns("api", "bad-2", "install")
		if len(tried) == 0 || len(tried) > 2 {
			t.Errorf("the bad release's hook ran on %v; want only the 2 canaries", tried)
		}
		d, ok := f.c.Seeder.Desired("api", "")
		if !ok || !d.IsBad(bad.ReleaseID) || !d.Rollback {
			t.Errorf("rollback state: ok %v, bad %v, rollback %v", ok, d.Bad, d.Rollback)
		}
		// Nobody tries the bad release again.
		time.Sleep(time.Second)
		if again := f.hookRuns("api", "bad-2", "install"); len(again) != len(tried) {
			t.Errorf("the bad release was tried again: %v, then %v", tried, again)
		}
		if got := running(f.prod, "api", bad.ReleaseID); len(got) != 0 {
			t.Errorf("%v run the bad release", got)
		}
	})

	t.Run("a health check failing during the bake rolls back", func(t *testing.T) {
		f.t = t
		v1 := f.v1("db", checkedEnv, f.checked)
		sick := f.publish("db", "sick-2", checkedEnv, release.Plan{Steps: []release.Step{{Count: 2}, {Percent: 100}}, Bake: time.Hour})
		f.waitState("db", checkedEnv, release.RolloutRolledBack, 60*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.c.WaitActive(ctx, "db", v1.ReleaseID, f.checked); err != nil {
			t.Fatal(err)
		}
		if got := f.hookRuns("db", "sick-2", "install"); len(got) > 2 {
			t.Errorf("sick release installed on %v, beyond the 2 canaries", got)
		}
		if got := f.hookRuns("db", "1.0.0", "rollback"); len(got) == 0 {
			t.Error("no node ran the hook as rollback")
		}
		if got := running(f.checked, "db", sick.ReleaseID); len(got) != 0 {
			t.Errorf("%v still run the sick release", got)
		}
	})

	t.Run("pause holds the rollout and resume finishes it", func(t *testing.T) {
		f.t = t
		f.v1("pr", "", f.prod)
		v2 := f.publish("pr", "2.0.0", "", release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}})
		if _, err := f.c.Client.RolloutCommand(context.Background(), "pr", "", seeder.VerbPause); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		st := f.status("pr", "")
		if st.State != release.RolloutPaused || st.Step != 1 {
			t.Fatalf("after pause: %s at step %d", st.State, st.Step)
		}
		if got := running(f.prod, "pr", v2.ReleaseID); len(got) > 1 {
			t.Fatalf("paused at a 1-node step, yet %v run 2.0.0", got)
		}
		if _, err := f.c.Client.RolloutCommand(context.Background(), "pr", "", seeder.VerbResume); err != nil {
			t.Fatal(err)
		}
		f.waitState("pr", "", release.RolloutComplete, 60*time.Second)
		if got := running(f.prod, "pr", v2.ReleaseID); len(got) != rolloutAgents {
			t.Errorf("%d nodes run 2.0.0 after resume", len(got))
		}
	})

	t.Run("promote skips the bake", func(t *testing.T) {
		f.t = t
		f.v1("pm", "", f.prod)
		v2 := f.publish("pm", "2.0.0", "", release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}, Bake: time.Hour})
		f.waitState("pm", "", release.RolloutBaking, 60*time.Second)
		st, err := f.c.Client.RolloutCommand(context.Background(), "pm", "", seeder.VerbPromote)
		if err != nil {
			t.Fatal(err)
		}
		if st.Step != 2 {
			t.Errorf("promote answered step %d, want 2", st.Step)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := f.c.WaitActive(ctx, "pm", v2.ReleaseID, f.prod); err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.Client.RolloutCommand(context.Background(), "pm", "", seeder.VerbPromote); err != nil {
			t.Fatal(err)
		}
		f.waitState("pm", "", release.RolloutComplete, 10*time.Second)
	})

	t.Run("blue-green flips every node at once", func(t *testing.T) {
		f.t = t
		f.v1("bg", "", f.prod)
		v2 := f.publish("bg", "2.0.0", "", release.Plan{Strategy: release.StrategyBlueGreen})
		f.eventually("bg 2.0.0 flips", 60*time.Second, func() bool {
			d, _ := f.c.Seeder.Desired("bg", "")
			if d.Admit == 0 {
				if got := running(f.prod, "bg", v2.ReleaseID); len(got) > 0 {
					t.Fatalf("%v activated 2.0.0 before the flip", got)
				}
				return false
			}
			return true
		})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := f.c.WaitActive(ctx, "bg", v2.ReleaseID, f.prod); err != nil {
			t.Fatal(err)
		}
		f.waitState("bg", "", release.RolloutComplete, 30*time.Second)
	})

	t.Run("environments and apps roll independently; promote-release", func(t *testing.T) {
		f.t = t
		st1 := f.v1("svc", "staging", f.staging)
		other := f.v1("jobs", "", f.prod)
		for _, n := range f.prod {
			if _, ok, _ := n.Current("svc"); ok {
				t.Fatalf("%s (default) installed staging's svc", n.Name())
			}
		}
		for _, n := range f.staging {
			if _, ok, _ := n.Current("jobs"); ok {
				t.Fatalf("%s (staging) installed default's jobs", n.Name())
			}
		}
		plan := release.Plan{Strategy: release.StrategyAllAtOnce}
		st, err := f.c.Client.PromoteRelease(context.Background(), "svc", "staging", release.DefaultEnv, &plan)
		if err != nil {
			t.Fatal(err)
		}
		if st.ReleaseID != st1.ReleaseID || st.Env != release.DefaultEnv {
			t.Errorf("promote-release: %s in %s, want %s in default", st.ReleaseID, st.Env, st1.ReleaseID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := f.c.WaitActive(ctx, "svc", st1.ReleaseID, f.prod); err != nil {
			t.Fatal(err)
		}
		if got := running(f.prod, "jobs", other.ReleaseID); len(got) != rolloutAgents {
			t.Errorf("jobs moved: %d nodes on it", len(got))
		}
	})

	t.Run("a seeder restarted mid-rollout resumes it", func(t *testing.T) {
		f.t = t
		f.v1("rs", "", f.prod)
		v2 := f.publish("rs", "2.0.0", "", release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 100}}, Bake: 2 * time.Second})
		f.waitState("rs", "", release.RolloutBaking, 60*time.Second)
		if err := f.c.RestartSeeder(); err != nil {
			t.Fatal(err)
		}
		f.waitFleet(release.DefaultEnv, rolloutAgents)
		f.waitState("rs", "", release.RolloutComplete, 90*time.Second)
		if got := running(f.prod, "rs", v2.ReleaseID); len(got) != rolloutAgents {
			t.Errorf("%d nodes run 2.0.0 after the restart", len(got))
		}
	})

	t.Run("32 apps on one node are all reported", func(t *testing.T) {
		f.t = t
		// No health check: this is about reporting, and 32 apps checked
		// every 100 ms start 320 hook shims a second.
		noCheck := ""
		n, err := f.c.AddAgent("many-1", AgentOptions{Env: "many", HealthCheck: &noCheck})
		if err != nil {
			t.Fatal(err)
		}
		f.waitFleet("many", 1)
		want := map[string]release.ID{}
		for i := range 32 {
			app := fmt.Sprintf("app-%02d", i)
			res := f.publish(app, "1.0.0", "many", release.Plan{Strategy: release.StrategyAllAtOnce})
			want[app] = res.ReleaseID
		}
		f.eventually("the seeder sees all 32 apps active on many-1", 3*time.Minute, func() bool {
			st, err := f.c.Client.Status(context.Background())
			if err != nil {
				return false
			}
			for _, node := range st.Nodes {
				if node.Name != n.Name() {
					continue
				}
				active := 0
				for _, a := range node.Apps {
					if id, ok := want[a.App]; ok && a.ReleaseID == id && a.Phase == "active" {
						active++
					}
				}
				return active == len(want)
			}
			return false
		})
	})
}
