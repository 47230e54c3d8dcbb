package rollout

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// t0 is the fake clock's start; every test moves time by hand.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fix is a fleet of 20 nodes rolling web from v1 to v2 in prod.
type fix struct {
	v1, v2, v3    release.SignedManifest
	id1, id2, id3 release.ID
	names         []string // n00..n19
	order         []string // names by bucket for v2: order[:k] is what k admits
}

func newFix(t *testing.T) *fix {
	t.Helper()
	key, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(version string) (release.SignedManifest, release.ID) {
		m := release.Manifest{
			App: "web", Version: version, ReleaseID: release.IDOf([]byte("web@" + version)),
			BundleSize: 1000, UnpackedSize: 2000, InfoHash: strings.Repeat("ab", 20), PieceLength: 256 << 10,
			Created: t0,
		}
		sm, err := release.SignManifest(m, key)
		if err != nil {
			t.Fatal(err)
		}
		return sm, m.ReleaseID
	}
	f := &fix{}
	f.v1, f.id1 = sign("1.0.0")
	f.v2, f.id2 = sign("2.0.0")
	f.v3, f.id3 = sign("3.0.0")
	for i := range 20 {
		f.names = append(f.names, fmt.Sprintf("n%02d", i))
	}
	f.order = slices.Clone(f.names)
	slices.SortFunc(f.order, func(a, b string) int {
		if Bucket(a, f.id2) < Bucket(b, f.id2) {
			return -1
		}
		return 1
	})
	return f
}

// plan is 1, 10%, 50%, 100% with a minute of bake, no failure tolerated
// and a ten-minute deadline.
func (f *fix) plan() release.Plan {
	return release.Plan{
		Steps: []release.Step{{Count: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}},
		Bake:  time.Minute, ProgressDeadline: 10 * time.Minute,
	}
}

// state is v2 at step (0-based) with n nodes admitted, issued at t0.
func (f *fix) state(step, n int) release.DesiredState {
	prev := f.v1
	return release.DesiredState{
		App: "web", Env: "prod", Sequence: 7, Published: 5, Target: f.v2, Previous: &prev,
		Plan: f.plan(), Step: step, Admit: Threshold(f.names, f.id2, n),
		State: release.RolloutProgressing, Reason: "before", Issued: t0, Expires: t0.Add(time.Hour),
	}
}

// fleet is every node on v2: the admitted ones active and healthy, the
// others staged.
func (f *fix) fleet(d release.DesiredState) []Node {
	var out []Node
	for _, name := range f.names {
		n := Node{Name: name, ReleaseID: f.id2, Phase: PhaseStaged}
		if Bucket(name, f.id2) < d.Admit {
			n.Phase, n.Healthy = PhaseActive, true
		}
		out = append(out, n)
	}
	return out
}

// set changes the named node.
func set(nodes []Node, name string, change func(*Node)) []Node {
	out := slices.Clone(nodes)
	for i := range out {
		if out[i].Name == name {
			change(&out[i])
			return out
		}
	}
	panic("no node " + name)
}

func without(nodes []Node, name string) []Node {
	return slices.DeleteFunc(slices.Clone(nodes), func(n Node) bool { return n.Name == name })
}

func with(d release.DesiredState, change func(*release.DesiredState)) release.DesiredState {
	d = clone(d)
	change(&d)
	return d
}

func failed(n *Node)    { n.Phase, n.Healthy = PhaseFailed, false }
func unhealthy(n *Node) { n.Phase, n.Healthy = PhaseActive, false }
func installing(n *Node) {
	n.Phase, n.Healthy = PhaseInstalling, false
}
func suspect(n *Node) { n.Suspect = true }

// rollbackState is the automatic rollback from f.state to v1.
func (f *fix) rollbackState(d release.DesiredState, reason string) release.DesiredState {
	return with(d, func(w *release.DesiredState) {
		cur := f.v2
		w.Target, w.Previous = f.v1, &cur
		w.Plan = release.Plan{Strategy: release.StrategyAllAtOnce}
		w.Step, w.Admit, w.Paused, w.Rollback = 0, 1, false, true
		w.State, w.Published, w.Bad, w.Reason = release.RolloutRolledBack, 0, []release.ID{f.id2}, reason
	})
}

func TestDecide(t *testing.T) {
	f := newFix(t)
	canary, second, third := f.order[0], f.order[1], f.order[2]
	s0 := f.state(0, 1) // the canary admitted
	s1 := f.state(1, 2) // 10% of 20
	last := f.state(3, 20)
	stalled := func(d release.DesiredState, reason string) release.DesiredState {
		return with(d, func(w *release.DesiredState) { w.Paused, w.State, w.Reason = true, release.RolloutStalled, reason })
	}
	baking := func(since time.Duration, d release.DesiredState) func() *Memory {
		return func() *Memory {
			return &Memory{Target: f.id2, Published: d.Published, BakeStart: t0.Add(-since), BakeStep: d.Step, BakeAdmit: d.Admit}
		}
	}
	type tc struct {
		name    string
		d       release.DesiredState
		nodes   []Node
		settled bool
		now     time.Time
		mem     func() *Memory // nil: zero Memory
		want    *release.DesiredState
		why     string // contained in Why
		fails   int    // len(mem.Failures) after
	}
	ptr := func(d release.DesiredState) *release.DesiredState { return &d }
	unsettled := f.state(0, 0)
	cases := []tc{
		{
			name: "first step admits exactly one node once settled", d: unsettled, nodes: f.fleet(unsettled), settled: true, now: t0,
			want: ptr(with(unsettled, func(w *release.DesiredState) {
				w.Admit = Threshold(f.names, f.id2, 1)
				w.Reason = "step 1 of 4: 1 of 20 nodes admitted"
			})),
		},
		{
			name: "first step waits for membership to settle", d: unsettled, nodes: f.fleet(unsettled), now: t0,
			why: "step 1 of 4: no node admitted yet",
		},
		{
			name: "step not done while the canary installs", d: s0, settled: true, now: t0.Add(time.Minute),
			nodes: set(f.fleet(s0), canary, installing),
			why:   "step 1 of 4: 1 of 1 admitted nodes not active and healthy: " + canary,
		},
		{
			name: "bake starts when the step is done", d: s0, nodes: f.fleet(s0), settled: true, now: t0,
			why: "step 1 of 4 baking: 1m0s left",
		},
		{
			name: "bake not yet met", d: s0, nodes: f.fleet(s0), settled: true, now: t0, mem: baking(59*time.Second, s0),
			why: "step 1 of 4 baking: 1s left",
		},
		{
			name: "advance after the bake", d: s0, nodes: f.fleet(s0), settled: true, now: t0, mem: baking(time.Minute, s0),
			want: ptr(with(s0, func(w *release.DesiredState) {
				w.Step, w.Admit = 1, Threshold(f.names, f.id2, 2)
				w.Reason = "step 2 of 4: 2 of 20 nodes admitted"
			})),
		},
		{
			name: "baked step waits for membership to settle", d: s0, nodes: f.fleet(s0), now: t0, mem: baking(time.Hour, s0),
			why: "step 1 of 4 baked; waiting for membership to settle",
		},
		{
			name: "bake clock of another step does not count", d: s1, nodes: f.fleet(s1), settled: true, now: t0, mem: baking(time.Hour, s0),
			why: "step 2 of 4 baking: 1m0s left",
		},
		{
			name: "last step completes after the bake, unsettled or not", d: last, nodes: f.fleet(last), now: t0, mem: baking(time.Minute, last),
			want: ptr(with(last, func(w *release.DesiredState) {
				w.State, w.Admit, w.Reason = release.RolloutComplete, 1, "complete: 20 of 20 nodes active and healthy"
			})),
		},
		{
			name: "stall past the progress deadline", d: s1, settled: true, now: t0.Add(10*time.Minute + time.Second),
			nodes: set(f.fleet(s1), second, installing),
			want:  ptr(stalled(s1, "step 2 of 4: 1 of 2 admitted nodes not active and healthy after 10m0s: "+second)),
		},
		{
			name: "no stall at the deadline itself", d: s1, settled: true, now: t0.Add(10 * time.Minute),
			nodes: set(f.fleet(s1), second, installing),
			why:   "step 2 of 4: 1 of 2 admitted nodes not active and healthy: " + second,
		},
		{
			name: "budget spent rolls back", d: s1, settled: true, now: t0,
			nodes: set(set(f.fleet(s1), second, failed), canary, unhealthy),
			want:  ptr(f.rollbackState(s1, "2 of 20 nodes failed, budget 0: "+byName(canary+" unhealthy", second+" failed"))),
			fails: 2,
		},
		{
			name: "a node rolled back by its hook is a failure", d: s0, settled: true, now: t0,
			nodes: set(f.fleet(s0), canary, func(n *Node) { n.Phase = PhaseRolledBack }),
			want:  ptr(f.rollbackState(s0, "1 of 20 nodes failed, budget 0: "+canary+" rolled-back")),
			fails: 1,
		},
		{
			name: "a node failing to stage before admission is a failure", d: s0, settled: true, now: t0,
			nodes: set(f.fleet(s0), third, failed),
			want:  ptr(f.rollbackState(s0, "1 of 20 nodes failed, budget 0: "+third+" failed")),
			fails: 1,
		},
		{
			name: "budget spent without previous stalls", d: with(s0, func(w *release.DesiredState) { w.Previous = nil }), settled: true, now: t0,
			nodes: set(f.fleet(s0), canary, failed),
			want: ptr(stalled(with(s0, func(w *release.DesiredState) { w.Previous = nil }),
				"1 of 20 nodes failed, budget 0: "+canary+" failed; no previous release to roll back to")),
			fails: 1,
		},
		{
			name: "budget spent without auto rollback stalls", d: with(s0, func(w *release.DesiredState) { w.Plan.NoAutoRollback = true }), settled: true, now: t0,
			nodes: set(f.fleet(s0), canary, failed),
			want: ptr(stalled(with(s0, func(w *release.DesiredState) { w.Plan.NoAutoRollback = true }),
				"1 of 20 nodes failed, budget 0: "+canary+" failed; automatic rollback is off")),
			fails: 1,
		},
		{
			name: "failures within the budget", d: with(s1, func(w *release.DesiredState) { w.Plan.MaxFailures = release.Budget{Ratio: 0.1} }), settled: true, now: t0,
			nodes: set(set(f.fleet(s1), second, failed), third, failed),
			why:   "step 2 of 4: 1 of 2 admitted nodes not active and healthy: " + second, fails: 2,
		},
		{
			name: "a node whose disk is full is not a failure and holds the step", d: s0, settled: true, now: t0,
			nodes: set(f.fleet(s0), canary, func(n *Node) { failed(n); n.HostFault = "disk full: need 65 MiB, 21 MiB free on /d (--min-free 0)" }),
			why:   "step 1 of 4: 1 of 1 admitted nodes not active and healthy: " + canary,
		},
		{
			name: "a suspect node is not a failure and holds the step", d: s0, settled: true, now: t0,
			nodes: set(set(f.fleet(s0), canary, unhealthy), canary, suspect),
			why:   "step 1 of 4: 1 of 1 admitted nodes not active and healthy: " + canary,
		},
		{
			name: "a failure on another release does not count", d: s0, settled: true, now: t0,
			nodes: set(f.fleet(s0), third, func(n *Node) { n.ReleaseID, n.Phase = f.id1, PhaseFailed }),
			why:   "step 1 of 4 baking",
		},
		{
			name: "an admitted node that left is topped up", d: s1, settled: true, now: t0,
			nodes: without(f.fleet(s1), second),
			want: ptr(with(s1, func(w *release.DesiredState) {
				var rest []string
				for _, n := range f.names {
					if n != second {
						rest = append(rest, n)
					}
				}
				w.Admit = max(s1.Admit, Threshold(rest, f.id2, 2))
				w.Reason = "step 2 of 4: 2 of 19 nodes admitted"
			})),
		},
		{
			name: "a node leaving during the bake is no failure and the bake goes on", d: s0, now: t0, mem: baking(30*time.Second, s0),
			nodes: without(f.fleet(s0), third), why: "step 1 of 4 baking: 30s left",
		},
		{name: "paused", d: with(s0, func(w *release.DesiredState) { w.Paused, w.State = true, release.RolloutPaused }), nodes: f.fleet(s0), settled: true, now: t0, mem: baking(time.Hour, s0), why: "paused"},
		{name: "stalled", d: stalled(s0, "x"), nodes: f.fleet(s0), settled: true, now: t0.Add(time.Hour), why: "paused"},
		{name: "complete", d: with(last, func(w *release.DesiredState) { w.State = release.RolloutComplete }), nodes: set(f.fleet(last), canary, failed), settled: true, now: t0, why: "rollout complete", fails: 1},
		{name: "aborted", d: with(s0, func(w *release.DesiredState) { w.State, w.Paused = release.RolloutAborted, true }), nodes: f.fleet(s0), settled: true, now: t0, why: "rollout aborted"},
		{name: "a rollback is final", d: f.rollbackState(s0, "r"), nodes: f.fleet(s0), settled: true, now: t0.Add(time.Hour), why: "rolled back to 1.0.0"},
		{name: "no nodes", d: s0, settled: true, now: t0.Add(time.Hour), why: "no nodes in environment prod"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := &Memory{}
			if c.mem != nil {
				mem = c.mem()
			}
			before := clone(c.d)
			got := Decide(c.now, c.d, c.nodes, c.settled, mem)
			if !reflect.DeepEqual(got.Next, c.want) {
				t.Fatalf("Next:\n got  %s\n want %s\nwhy %q", show(got.Next), show(c.want), got.Why)
			}
			if c.want != nil {
				if err := validSigned(*got.Next); err != nil {
					t.Errorf("Next cannot be signed: %v", err)
				}
			} else if !strings.Contains(got.Why, c.why) {
				t.Errorf("Why = %q, want it to contain %q", got.Why, c.why)
			}
			if len(mem.Failures) != c.fails {
				t.Errorf("failures %v, want %d", mem.Failures, c.fails)
			}
			if !reflect.DeepEqual(before, c.d) {
				t.Error("Decide changed its input state")
			}
		})
	}
}

// validSigned checks that the seeder could sign s once it numbers it.
func validSigned(s release.DesiredState) error {
	s.Sequence = 100
	if s.Published == 0 {
		s.Published = 100
	}
	return s.Validate()
}

func TestDecideFlappingNodeCountsOnce(t *testing.T) {
	f := newFix(t)
	d := f.state(1, 2)
	d.Plan.MaxFailures = release.Budget{Count: 1}
	a, b := f.order[0], f.order[1]
	mem := &Memory{}
	now := t0
	for i, nodes := range [][]Node{
		set(f.fleet(d), a, unhealthy), f.fleet(d), set(f.fleet(d), a, unhealthy), f.fleet(d), set(f.fleet(d), a, failed),
	} {
		if got := Decide(now, d, nodes, true, mem); got.Next != nil {
			t.Fatalf("tick %d: a flapping node spent a budget of 1: %+v", i, got.Next)
		}
		now = now.Add(time.Second)
	}
	if want := []Failure{{Node: a, What: "unhealthy", At: t0}}; !reflect.DeepEqual(mem.Failures, want) {
		t.Fatalf("failures %+v, want %+v", mem.Failures, want)
	}
	got := Decide(now, d, set(f.fleet(d), b, unhealthy), true, mem)
	want := f.rollbackState(d, fmt.Sprintf("2 of 20 nodes failed, budget 1: %s unhealthy, %s unhealthy", a, b))
	if got.Next == nil || !reflect.DeepEqual(*got.Next, want) {
		t.Fatalf("second failed node: %+v, want rollback %+v", got.Next, want)
	}
}

func TestDecideMemoryResetsWithTheRollout(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 1)
	mem := &Memory{}
	Decide(t0, d, set(f.fleet(d), f.order[5], failed), true, mem)
	if len(mem.Failures) != 1 {
		t.Fatalf("failures %v", mem.Failures)
	}
	// The same target published anew (after a rollback) is a new rollout.
	d.Published = 9
	if got := Decide(t0, d, f.fleet(d), true, mem); got.Next != nil || len(mem.Failures) != 0 {
		t.Fatalf("memory kept across a new publish: %+v %v", got.Next, mem.Failures)
	}
}

func TestDecideAllAtOnce(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 20)
	d.Plan = release.Plan{Strategy: release.StrategyAllAtOnce, Bake: time.Minute, ProgressDeadline: 5 * time.Minute}
	mem := &Memory{}
	if got := Decide(t0, d, set(f.fleet(d), f.order[3], installing), true, mem); got.Next != nil {
		t.Fatalf("not done: %+v", got.Next)
	}
	if got := Decide(t0.Add(30*time.Second), d, f.fleet(d), true, mem); got.Next != nil || !strings.Contains(got.Why, "1m0s left") {
		t.Fatalf("bake starts: %+v %q", got.Next, got.Why)
	}
	got := Decide(t0.Add(90*time.Second), d, f.fleet(d), false, mem)
	want := with(d, func(w *release.DesiredState) {
		w.State, w.Reason = release.RolloutComplete, "complete: 20 of 20 nodes active and healthy"
	})
	if got.Next == nil || !reflect.DeepEqual(*got.Next, want) {
		t.Fatalf("complete: %+v", got.Next)
	}
	got = Decide(t0.Add(6*time.Minute), d, set(f.fleet(d), f.order[3], installing), true, &Memory{})
	want = with(d, func(w *release.DesiredState) {
		w.Paused, w.State = true, release.RolloutStalled
		w.Reason = "step 1 of 1: 1 of 20 admitted nodes not active and healthy after 5m0s: " + f.order[3]
	})
	if got.Next == nil || !reflect.DeepEqual(*got.Next, want) {
		t.Fatalf("deadline: %+v", got.Next)
	}
}

func TestDecideBlueGreen(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 0)
	d.Plan = release.Plan{Strategy: release.StrategyBlueGreen, Bake: time.Minute, ProgressDeadline: 10 * time.Minute}
	staging := func(staged int) []Node {
		var out []Node
		for i, name := range f.names {
			n := Node{Name: name, ReleaseID: f.id2, Phase: PhaseDownloading}
			if i < staged {
				n.Phase = PhaseStaged
			}
			out = append(out, n)
		}
		return out
	}
	flipped := func(d release.DesiredState, reason string) *release.DesiredState {
		w := with(d, func(w *release.DesiredState) { w.Admit, w.Reason = 1, reason })
		return &w
	}
	minStaged := with(d, func(w *release.DesiredState) { w.Plan.MinStaged = release.Budget{Ratio: 0.9} })
	after := with(d, func(w *release.DesiredState) { w.Admit = 1 })
	for _, c := range []struct {
		name    string
		d       release.DesiredState
		nodes   []Node
		settled bool
		now     time.Time
		mem     *Memory
		want    *release.DesiredState
		why     string
	}{
		{name: "every node must stage by default", d: d, nodes: staging(19), settled: true, now: t0, why: "staging: 19 of 20 nodes staged, 20 needed"},
		{name: "flip once all staged", d: d, nodes: staging(20), settled: true, now: t0, want: flipped(d, "flipped: 20 of 20 staged")},
		{name: "flip waits for membership to settle", d: d, nodes: staging(20), now: t0, why: "staging: 20 of 20"},
		{name: "min staged 90%", d: minStaged, nodes: staging(18), settled: true, now: t0, want: flipped(minStaged, "flipped: 18 of 20 staged")},
		{name: "suspect nodes are not staged", d: minStaged, nodes: set(staging(18), f.names[0], suspect), settled: true, now: t0, why: "staging: 17 of 20 nodes staged, 18 needed"},
		{
			name: "the deadline covers staging", d: d, nodes: staging(12), settled: true, now: t0.Add(11 * time.Minute),
			want: func() *release.DesiredState {
				w := with(d, func(w *release.DesiredState) {
					w.Paused, w.State, w.Reason = true, release.RolloutStalled, "staging: 12 of 20 nodes staged, 20 needed after 10m0s"
				})
				return &w
			}(),
		},
		{
			name: "a node failing to stage spends the budget", d: d, nodes: set(staging(12), f.names[15], failed), settled: true, now: t0,
			want: func() *release.DesiredState {
				w := f.rollbackState(d, "1 of 20 nodes failed, budget 0: n15 failed")
				return &w
			}(),
		},
		{name: "after the flip the nodes bake", d: after, nodes: f.fleet(after), settled: true, now: t0, why: "step 1 of 1 baking: 1m0s left"},
		{
			name: "then it completes", d: after, nodes: f.fleet(after), now: t0, settled: true,
			mem: &Memory{Target: f.id2, Published: 5, BakeStart: t0.Add(-time.Minute), BakeAdmit: 1},
			want: func() *release.DesiredState {
				w := with(after, func(w *release.DesiredState) {
					w.State, w.Reason = release.RolloutComplete, "complete: 20 of 20 nodes active and healthy"
				})
				return &w
			}(),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := c.mem
			if mem == nil {
				mem = &Memory{}
			}
			got := Decide(c.now, c.d, c.nodes, c.settled, mem)
			if !reflect.DeepEqual(got.Next, c.want) {
				t.Fatalf("Next:\n got  %s\n want %s\nwhy %q", show(got.Next), show(c.want), got.Why)
			}
			if c.want == nil && !strings.Contains(got.Why, c.why) {
				t.Errorf("Why = %q, want %q", got.Why, c.why)
			}
		})
	}
}

// agentsFollow is a fake fleet: every admitted node of d is active and
// healthy on the target, the others have it staged.
func agentsFollow(d release.DesiredState, names []string) []Node {
	m, _ := d.Target.Unverified()
	var out []Node
	for _, name := range names {
		n := Node{Name: name, ReleaseID: m.ReleaseID, Phase: PhaseStaged}
		if Admitted(name, &d, m.ReleaseID) {
			n.Phase, n.Healthy = PhaseActive, true
		}
		out = append(out, n)
	}
	return out
}

type signed struct {
	at    time.Time
	step  int
	admit int // admitted nodes
	state release.RolloutState
}

// drive runs the controller every 10 s of fake time until the rollout
// ends, numbering each new state as the seeder does. restartAt, when
// positive, replaces the memory with a zero one at that tick.
func drive(t *testing.T, d release.DesiredState, names []string, restartAt int) []signed {
	t.Helper()
	m, _ := d.Target.Unverified()
	mem := &Memory{}
	var out []signed
	now := t0
	for tick := range 500 {
		if tick == restartAt {
			mem = &Memory{}
		}
		got := Decide(now, d, agentsFollow(d, names), true, mem)
		if got.Next != nil {
			n := *got.Next
			n.Sequence, n.Issued = d.Sequence+1, now
			d = n
			out = append(out, signed{now, d.Step, countAdmitted(d.Admit, m.ReleaseID, agentsFollow(d, names)), d.State})
			if d.State.Final() {
				return out
			}
		}
		now = now.Add(10 * time.Second)
	}
	t.Fatalf("rollout did not end: %+v", out)
	return nil
}

func TestDecideAdmitsEachStepsCount(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 0)
	got := drive(t, d, f.names, -1)
	want := []struct {
		step, admit int
		state       release.RolloutState
	}{{0, 1, release.RolloutProgressing}, {1, 2, release.RolloutProgressing}, {2, 10, release.RolloutProgressing}, {3, 20, release.RolloutProgressing}, {3, 20, release.RolloutComplete}}
	if len(got) != len(want) {
		t.Fatalf("signed %+v", got)
	}
	for i, w := range want {
		if got[i].step != w.step || got[i].admit != w.admit || got[i].state != w.state {
			t.Errorf("state %d: step %d admits %d (%s), want step %d admitting %d (%s)", i, got[i].step, got[i].admit, got[i].state, w.step, w.admit, w.state)
		}
		if i > 0 && got[i].at.Sub(got[i-1].at) < d.Plan.Bake {
			t.Errorf("state %d signed %s after the one before: shorter than the bake", i, got[i].at.Sub(got[i-1].at))
		}
	}
}

func TestDecideRestartReachesTheSameDecisions(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 0)
	straight := drive(t, d, f.names, -1)
	for _, at := range []int{3, 9, 14} {
		restarted := drive(t, d, f.names, at)
		if len(restarted) != len(straight) {
			t.Fatalf("restart at tick %d: %+v, want %+v", at, restarted, straight)
		}
		for i := range straight {
			s, r := straight[i], restarted[i]
			if s.step != r.step || s.admit != r.admit || s.state != r.state || r.at.Before(s.at) {
				t.Errorf("restart at tick %d, state %d: %+v, without restart %+v", at, i, r, s)
			}
		}
	}

	// A restarted controller counts the failures it sees and rolls back
	// just as the one that saw them happen.
	s1 := f.state(1, 2)
	nodes := set(f.fleet(s1), f.order[1], failed)
	long := &Memory{}
	Decide(t0, s1, f.fleet(s1), true, long)
	a := Decide(t0.Add(time.Second), s1, nodes, true, long)
	b := Decide(t0.Add(time.Second), s1, nodes, true, &Memory{})
	if a.Next == nil || !reflect.DeepEqual(a.Next, b.Next) {
		t.Fatalf("rollback differs after restart:\n%+v\n%+v", a.Next, b.Next)
	}
}

func TestStart(t *testing.T) {
	f := newFix(t)
	plan := f.plan()
	bad := []release.ID{f.id3, f.id2}
	got, err := Start("prod", plan, f.v2, &f.v1, bad, f.names, true)
	if err != nil {
		t.Fatal(err)
	}
	prev := f.v1
	want := release.DesiredState{
		App: "web", Env: "prod", Target: f.v2, Previous: &prev, Plan: plan, Admit: Threshold(f.names, f.id2, 1),
		State: release.RolloutProgressing, Bad: []release.ID{f.id3}, Reason: "published 2.0.0: step 1 of 4",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Start:\n got  %+v\n want %+v", got, want)
	}
	for _, c := range []struct {
		name    string
		plan    release.Plan
		settled bool
		admit   float64
	}{
		{"waves before membership settles", plan, false, 0},
		{"all at once", release.Plan{Strategy: release.StrategyAllAtOnce}, false, 1},
		{"blue-green stages first", release.Plan{Strategy: release.StrategyBlueGreen}, true, 0},
		{"no steps: every node", release.Plan{}, true, 1},
		{"a first step of 100% needs no settling", release.Plan{Steps: []release.Step{{Percent: 100}}}, false, 1},
	} {
		got, err := Start(release.DefaultEnv, c.plan, f.v2, nil, nil, f.names, c.settled)
		if err != nil || got.Admit != c.admit || got.Env != "" {
			t.Errorf("%s: admit %v env %q err %v, want admit %v in the default env", c.name, got.Admit, got.Env, err, c.admit)
		}
	}
	if _, err := Start("prod", release.Plan{Steps: []release.Step{{Count: 5}, {Count: 2}}}, f.v2, nil, nil, f.names, true); err == nil {
		t.Error("Start took a decreasing plan")
	}
}

func TestValidateAgainstFleet(t *testing.T) {
	for _, c := range []struct {
		plan  release.Plan
		fleet int
		want  string
	}{
		{release.Plan{Steps: []release.Step{{Count: 1}, {Count: 30}}}, 20, "invalid plan step 30 is more nodes than the 20 in environment prod"},
		{release.Plan{Steps: []release.Step{{Count: 1}, {Count: 20}}}, 20, ""},
		{release.Plan{Steps: []release.Step{{Percent: 50}}}, 0, ""},
		{release.Plan{Strategy: release.StrategyBlueGreen, MinStaged: release.Budget{Count: 21}}, 20, "invalid min staged 21 is more nodes than the 20 in environment prod"},
	} {
		err := ValidateAgainstFleet(c.plan, "prod", c.fleet)
		if got := fmt.Sprint(err); (c.want == "" && err != nil) || (c.want != "" && got != c.want) {
			t.Errorf("%s of %d: %v, want %q", c.plan, c.fleet, err, c.want)
		}
	}
}

func TestPreviousFor(t *testing.T) {
	f := newFix(t)
	id := func(sm *release.SignedManifest) release.ID {
		if sm == nil {
			return ""
		}
		m, _ := sm.Unverified()
		return m.ReleaseID
	}
	s := f.state(1, 2) // v2 under way over v1
	for _, c := range []struct {
		name  string
		cur   *release.DesiredState
		next  release.ID
		want  release.ID
		nodes []Node
	}{
		{"first rollout", nil, f.id2, "", nil},
		{"over a rollout under way: what most nodes run", &s, f.id3, f.id1, nil},
		{"over a complete rollout: its target", ptrTo(with(s, func(w *release.DesiredState) { w.State = release.RolloutComplete })), f.id3, f.id2, nil},
		{"over a rollback: its target", ptrTo(f.rollbackState(s, "r")), f.id2, f.id1, nil},
		{"never the new target", &s, f.id1, f.id2, nil},
		{"under way with no previous", ptrTo(with(s, func(w *release.DesiredState) { w.Previous = nil })), f.id3, f.id2, nil},
		{"under way, every node on its target: its target", &s, f.id3, f.id2, []Node{
			{Name: "a", ReleaseID: f.id2, Phase: PhaseActive, Healthy: true}, {Name: "b", ReleaseID: f.id2, Phase: PhaseActive, Healthy: true}}},
		{"under way, most nodes still on its previous", &s, f.id3, f.id1, []Node{
			{Name: "a", ReleaseID: f.id2, Phase: PhaseActive, Healthy: true}, {Name: "b", ReleaseID: f.id1, Phase: PhaseActive, Healthy: true},
			{Name: "c", ReleaseID: f.id1, Phase: PhaseActive, Healthy: true}}},
	} {
		if got := id(PreviousFor(c.cur, c.next, c.nodes)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// byName joins "node what" items sorted by node, as failures seen in one
// tick are listed.
func byName(items ...string) string {
	slices.Sort(items)
	return strings.Join(items, ", ")
}

// show is a state without its envelopes' bytes, for failure messages.
func show(d *release.DesiredState) string {
	if d == nil {
		return "<nil>"
	}
	version := func(sm *release.SignedManifest) string {
		if sm == nil {
			return "-"
		}
		m, _ := sm.Unverified()
		return m.Version
	}
	c := *d
	c.Target, c.Previous = release.SignedManifest{}, nil
	return fmt.Sprintf("target %s previous %s %+v", version(&d.Target), version(d.Previous), c)
}

func ptrTo[T any](v T) *T { return &v }

// A count step after a larger percentage step admits no fewer nodes: the
// controller never takes admission back.
func TestDecideNeverShrinksAdmission(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 10)
	d.Plan.Steps = []release.Step{{Percent: 50}, {Count: 5}, {Percent: 100}}
	mem := &Memory{Target: f.id2, Published: 5, BakeStart: t0.Add(-time.Hour), BakeAdmit: d.Admit}
	got := Decide(t0, d, f.fleet(d), true, mem)
	want := with(d, func(w *release.DesiredState) { w.Step, w.Reason = 1, "step 2 of 3: 10 of 20 nodes admitted" })
	if got.Next == nil || !reflect.DeepEqual(*got.Next, want) {
		t.Fatalf("\n got  %s\n want %s", show(got.Next), show(&want))
	}
}

// A node away from the member list when a step's threshold is set (its
// host busy, suspected) still counts for the threshold: back, it does not
// make the step admit more than its count. One away longer than RosterTTL
// is replaced.
func TestDecideAdmitsCountDespiteAnAbsentNode(t *testing.T) {
	f := newFix(t)
	d := f.state(0, 1) // step 1 of 1,2,50%,100%: one node admitted
	d.Step = 1         // now step 2: two nodes
	mem := &Memory{}
	all := f.fleet(d)
	// Seen whole once, then the node first in bucket order for the next
	// admission goes away.
	Decide(t0, d, all, true, mem)
	away := f.order[1]
	var present []Node
	for _, n := range all {
		if n.Name != away {
			present = append(present, n)
		}
	}
	dec := Decide(t0.Add(time.Second), d, present, true, mem)
	if dec.Next != nil {
		// It may only raise the threshold so far that away, back, makes it
		// exactly two.
		if got := countAdmitted(dec.Next.Admit, f.id2, all); got != 2 {
			t.Fatalf("with %s away, the threshold admits %d of the whole fleet, want 2", away, got)
		}
	} else if !strings.Contains(dec.Why, "absent") {
		t.Fatalf("with %s away: %q, want a wait for it", away, dec.Why)
	}
	// Gone past RosterTTL: replaced by the next node in bucket order.
	later := t0.Add(RosterTTL + 2*time.Second)
	dec = Decide(later, d, present, true, mem)
	if dec.Next == nil {
		t.Fatalf("%s gone for %v: %q, want the step topped up", away, RosterTTL, dec.Why)
	}
	if got := countAdmitted(dec.Next.Admit, f.id2, present); got != 2 {
		t.Fatalf("after %s left for good, %d present nodes admitted, want 2", away, got)
	}
}

// A step whose every waiting node refused the desired state (a key the
// agents do not trust) stalls once the refusals have held for
// DefaultRefusalGrace, saying why, instead of waiting for ever; one node still
// on its way keeps the step waiting, and a resume gives the nodes another
// grace.
func TestDecideStallsWhenEveryWaitingNodeRefuses(t *testing.T) {
	f := newFix(t)
	d := f.state(1, 2)
	d.Plan.ProgressDeadline = 0 // without refusals, this step would wait for ever
	a, b := f.order[0], f.order[1]
	refuses := func(n *Node) { n.ReleaseID, n.Phase, n.Healthy, n.Refused = f.id1, PhaseActive, true, "untrusted key" }
	downloading := func(n *Node) { n.Phase, n.Healthy = PhaseDownloading, false }
	bothRefuse := set(set(f.fleet(d), a, refuses), b, refuses)
	mem := &Memory{}

	// One refuses, one still downloads: the step waits, however long.
	for _, after := range []time.Duration{0, DefaultRefusalGrace, time.Hour} {
		got := Decide(t0.Add(after), d, set(set(f.fleet(d), a, refuses), b, downloading), true, mem)
		if got.Next != nil || strings.Contains(got.Why, "refused") {
			t.Fatalf("after %v with one node still downloading: %+v %q", after, got.Next, got.Why)
		}
	}
	// Both refuse: the grace starts now, not when the first one did.
	now := t0.Add(2 * time.Hour)
	got := Decide(now, d, bothRefuse, true, mem)
	want := fmt.Sprintf("step 2 of 4: 2 nodes refused the desired state: untrusted key (%s); fix their trust and resume", strings.Join(sortedPair(a, b), ", "))
	if got.Next != nil || got.Why != want {
		t.Fatalf("first sight of the refusals: %+v %q, want no decision and %q", got.Next, got.Why, want)
	}
	if got := Decide(now.Add(DefaultRefusalGrace-time.Second), d, bothRefuse, true, mem); got.Next != nil {
		t.Fatalf("stalled before the grace ran out: %+v", got.Next)
	}
	got = Decide(now.Add(DefaultRefusalGrace), d, bothRefuse, true, mem)
	if got.Next == nil || got.Next.State != release.RolloutStalled || !got.Next.Paused || got.Next.Reason != want {
		t.Fatalf("after the grace: %+v %q, want stalled with %q", got.Next, got.Why, want)
	}
	if err := validSigned(*got.Next); err != nil {
		t.Fatalf("the stalled state cannot be signed: %v", err)
	}
	if len(mem.Failures) != 0 {
		t.Fatalf("refusing nodes counted as failures: %v", mem.Failures)
	}

	// Paused, then resumed while the nodes still refuse: another full grace.
	stalledState := *got.Next
	Decide(now.Add(DefaultRefusalGrace+time.Second), stalledState, bothRefuse, true, mem)
	later := now.Add(time.Hour)
	if got := Decide(later, d, bothRefuse, true, mem); got.Next != nil {
		t.Fatalf("a resumed rollout stalled at once: %+v", got.Next)
	}
	if got := Decide(later.Add(DefaultRefusalGrace), d, bothRefuse, true, mem); got.Next == nil || got.Next.State != release.RolloutStalled {
		t.Fatalf("a resumed rollout whose nodes still refuse did not stall again: %+v", got.Next)
	}
}

func sortedPair(a, b string) []string {
	if b < a {
		a, b = b, a
	}
	return []string{a, b}
}
