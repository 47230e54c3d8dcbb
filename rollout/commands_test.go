package rollout

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

func TestCommands(t *testing.T) {
	f := newFix(t)
	s0 := f.state(0, 1)
	s1 := f.state(1, 2)
	last := f.state(3, 20)
	paused := with(s1, func(w *release.DesiredState) {
		w.Paused, w.State, w.Reason = true, release.RolloutPaused, "paused by operator"
	})
	stalled := with(s1, func(w *release.DesiredState) {
		w.Paused, w.State, w.Reason = true, release.RolloutStalled, "step 2 of 4: …"
	})
	complete := with(last, func(w *release.DesiredState) { w.State = release.RolloutComplete })
	aborted := with(s1, func(w *release.DesiredState) {
		w.Paused, w.State, w.Reason = true, release.RolloutAborted, "aborted by operator"
	})
	rolledBack := f.rollbackState(s1, "r")
	bg := with(f.state(0, 0), func(w *release.DesiredState) { w.Plan = release.Plan{Strategy: release.StrategyBlueGreen} })
	unsettled := f.state(0, 0)
	nodes := f.fleet(s1)
	resumed := func(d release.DesiredState) release.DesiredState {
		return with(d, func(w *release.DesiredState) {
			w.Paused, w.State, w.Reason = false, release.RolloutProgressing, "resumed by operator"
		})
	}

	for _, c := range []struct {
		name string
		run  func() (release.DesiredState, error)
		want release.DesiredState
		err  error
		msg  string // in the error
	}{
		{name: "pause", run: func() (release.DesiredState, error) { return Pause(s1) }, want: paused},
		{name: "pause twice", run: func() (release.DesiredState, error) { return Pause(paused) }, err: ErrPaused, msg: "pause web in prod: rollout is paused already (paused)"},
		{name: "pause a complete rollout", run: func() (release.DesiredState, error) { return Pause(complete) }, err: ErrFinal, msg: "pause web in prod: rollout has ended (complete); publish a release to start a new one"},
		{name: "resume a paused rollout", run: func() (release.DesiredState, error) { return Resume(paused) }, want: resumed(s1)},
		{name: "resume a stalled rollout", run: func() (release.DesiredState, error) { return Resume(stalled) }, want: resumed(s1)},
		{name: "resume a running rollout", run: func() (release.DesiredState, error) { return Resume(s1) }, err: ErrNotPaused, msg: "resume web in prod: rollout is not paused (progressing)"},
		{name: "resume an aborted rollout", run: func() (release.DesiredState, error) { return Resume(aborted) }, err: ErrFinal},
		{
			name: "promote skips the bake", run: func() (release.DesiredState, error) { return Promote(s0, f.fleet(s0), &Memory{}) },
			want: with(s0, func(w *release.DesiredState) {
				w.Step, w.Admit, w.Reason = 1, Threshold(f.names, f.id2, 2), "promoted by operator: step 2 of 4: 2 of 20 nodes admitted"
			}),
		},
		{
			name: "promote the last step completes", run: func() (release.DesiredState, error) { return Promote(last, f.fleet(last), &Memory{}) },
			want: with(last, func(w *release.DesiredState) {
				w.State, w.Reason = release.RolloutComplete, "promoted by operator: complete: 20 of 20 nodes active and healthy"
			}),
		},
		{
			name: "promote before the first admission admits the canary", run: func() (release.DesiredState, error) { return Promote(unsettled, f.fleet(unsettled), &Memory{}) },
			want: with(unsettled, func(w *release.DesiredState) {
				w.Admit, w.Reason = Threshold(f.names, f.id2, 1), "promoted by operator: step 1 of 4: 1 of 20 nodes admitted"
			}),
		},
		{
			name: "promote flips blue-green", run: func() (release.DesiredState, error) { return Promote(bg, f.fleet(bg), &Memory{}) },
			want: with(bg, func(w *release.DesiredState) { w.Admit, w.Reason = 1, "promoted by operator: flipped: 20 of 20 staged" }),
		},
		{name: "promote a paused rollout", run: func() (release.DesiredState, error) { return Promote(paused, nodes, &Memory{}) }, err: ErrPaused, msg: "resume it first"},
		{name: "promote a rollback", run: func() (release.DesiredState, error) { return Promote(rolledBack, nodes, &Memory{}) }, err: ErrFinal, msg: "(rolled-back)"},
		{
			name: "abort", run: func() (release.DesiredState, error) { return Abort(s1) },
			want: aborted,
		},
		{name: "abort a paused rollout", run: func() (release.DesiredState, error) { return Abort(paused) }, want: with(aborted, func(w *release.DesiredState) {})},
		{name: "abort twice", run: func() (release.DesiredState, error) { return Abort(aborted) }, err: ErrFinal},
		{
			name: "rollback to previous", run: func() (release.DesiredState, error) { return Rollback(s1, nil, "") },
			want: f.rollbackState(s1, "rolled back by operator to 1.0.0"),
		},
		{
			name: "rollback after complete", run: func() (release.DesiredState, error) { return Rollback(complete, nil, "bad latency") },
			want: f.rollbackState(complete, "bad latency"),
		},
		{
			name: "rollback to a named bad release clears it", run: func() (release.DesiredState, error) {
				d := with(s1, func(w *release.DesiredState) { w.Bad = []release.ID{f.id3} })
				return Rollback(d, &f.v3, "")
			},
			want: with(f.rollbackState(s1, "rolled back by operator to 3.0.0"), func(w *release.DesiredState) { w.Target = f.v3 }),
		},
		{name: "rollback with no previous", run: func() (release.DesiredState, error) {
			return Rollback(with(s1, func(w *release.DesiredState) { w.Previous = nil }), nil, "")
		}, err: ErrNoPrevious, msg: "rollback web in prod: no previous release to roll back to"},
		{name: "rollback a rollback", run: func() (release.DesiredState, error) { return Rollback(rolledBack, nil, "") }, err: ErrFinal, msg: "name a release"},
		{name: "rollback to the target", run: func() (release.DesiredState, error) { return Rollback(s1, &f.v2, "") }, err: ErrSameTarget, msg: "2.0.0 release is already the target"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.run()
			if c.err != nil {
				if !errors.Is(err, c.err) || !strings.Contains(fmt4(err), c.msg) || strings.Contains(fmt4(err), "\n") {
					t.Fatalf("error %v, want %v with %q on one line", err, c.err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("\n got  %s\n want %s", show(&got), show(&c.want))
			}
			if err := validSigned(got); err != nil {
				t.Errorf("cannot be signed: %v", err)
			}
		})
	}
}

func fmt4(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A resumed budget stall stalls again on the failures still there, but not
// on those the operator forgave that have recovered.
func TestResumeAfterBudgetStall(t *testing.T) {
	f := newFix(t)
	d := f.state(1, 2)
	d.Plan.NoAutoRollback = true
	mem := &Memory{}
	got := Decide(t0, d, set(f.fleet(d), f.order[0], unhealthy), true, mem)
	if got.Next == nil || got.Next.State != release.RolloutStalled {
		t.Fatalf("want a stall: %+v", got)
	}
	r, err := Resume(*got.Next)
	if err != nil {
		t.Fatal(err)
	}
	mem.Forgive()
	if got := Decide(t0.Add(time.Second), r, f.fleet(d), true, mem); got.Next != nil {
		t.Fatalf("recovered node stalled the resumed rollout again: %s", show(got.Next))
	}
	if got := Decide(t0.Add(2*time.Second), r, set(f.fleet(d), f.order[0], failed), true, mem); got.Next == nil || got.Next.State != release.RolloutStalled {
		t.Fatalf("a node failing again must stall: %+v", got)
	}
}

func TestDescribe(t *testing.T) {
	f := newFix(t)
	s1 := f.state(1, 2)
	fleet := f.fleet(s1)
	done := &Memory{Target: f.id2, Published: 5, BakeStart: t0.Add(-20 * time.Second), BakeStep: 1, BakeAdmit: s1.Admit}
	rb := f.rollbackState(s1, "1 of 20 nodes failed, budget 0: x failed")
	rb.Sequence = 8
	for _, c := range []struct {
		name     string
		d        release.DesiredState
		nodes    []Node
		mem      *Memory
		state    release.RolloutState
		bakeLeft int
		failures int
		phases   map[string]int
	}{
		{name: "progressing", d: s1, nodes: set(fleet, f.order[1], installing), state: release.RolloutProgressing, phases: map[string]int{"active": 1, "installing": 1, "staged": 18}},
		{name: "baking", d: s1, nodes: fleet, mem: done, state: release.RolloutBaking, bakeLeft: 40, phases: map[string]int{"active": 2, "staged": 18}},
		{name: "baking after a restart", d: s1, nodes: fleet, state: release.RolloutBaking, bakeLeft: 60, phases: map[string]int{"active": 2, "staged": 18}},
		{name: "paused", d: with(s1, func(w *release.DesiredState) { w.Paused, w.State = true, release.RolloutPaused }), nodes: fleet, mem: done, state: release.RolloutPaused, phases: map[string]int{"active": 2, "staged": 18}},
		{name: "stalled", d: with(s1, func(w *release.DesiredState) { w.Paused, w.State = true, release.RolloutStalled }), nodes: fleet, state: release.RolloutStalled, phases: map[string]int{"active": 2, "staged": 18}},
		{
			name: "failures remembered and seen", d: s1,
			nodes: set(set(fleet, f.order[1], unhealthy), f.order[9], func(n *Node) { n.ReleaseID = f.id1; n.Phase = PhaseActive }),
			mem:   &Memory{Target: f.id2, Published: 5, Failures: []Failure{{Node: "gone", What: "failed"}, {Node: f.order[1], What: "unhealthy"}}},
			state: release.RolloutProgressing, failures: 2, phases: map[string]int{"active": 2, "staged": 17, "other": 1},
		},
		{
			name: "rolling back while a node still reports the bad release", d: rb, state: release.RolloutRollingBack,
			nodes:  set(agentsFollow(rb, f.names), f.order[0], func(n *Node) { n.ReleaseID, n.Phase = f.id2, PhaseActive }),
			phases: map[string]int{"active": 19, "other": 1},
		},
		{name: "rolled back", d: rb, nodes: agentsFollow(rb, f.names), state: release.RolloutRolledBack, phases: map[string]int{"active": 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := Describe(t0, c.d, c.nodes, c.mem)
			if st.State != c.state || st.BakeLeftS != c.bakeLeft || st.Failures != c.failures || !reflect.DeepEqual(st.Phases, c.phases) {
				t.Fatalf("state %s bake left %d failures %d phases %v, want %s %d %d %v", st.State, st.BakeLeftS, st.Failures, st.Phases, c.state, c.bakeLeft, c.failures, c.phases)
			}
		})
	}

	full := "disk full: need 65 MiB, 21 MiB free on /d (--min-free 0)"
	held := Describe(t0, s1, set(fleet, f.order[1], func(n *Node) { failed(n); n.HostFault = full }), nil)
	if held.Failures != 0 || held.HostFaults != 1 || held.HostFault != full {
		t.Fatalf("a node whose disk is full: failures %d host faults %d %q, want 0, 1, %q", held.Failures, held.HostFaults, held.HostFault, full)
	}

	st := Describe(t0, s1, fleet, done)
	want := Status{
		App: "web", Env: "prod", Version: "2.0.0", ReleaseID: f.id2, Strategy: release.StrategyWaves, State: release.RolloutBaking,
		Step: 2, Steps: 4, Admitted: 2, Failures: 0, Budget: 0, Reason: "before", Phases: map[string]int{"active": 2, "staged": 18},
		Sequence: 7, BakeLeftS: 40, Nodes: 20,
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("status\n got  %+v\n want %+v", st, want)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"admitted", "app", "bake_left_s", "budget", "env", "failures", "nodes", "paused", "phases", "reason", "release_id", "seq", "state", "step", "steps", "strategy", "version"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("JSON fields %v, want %v", keys, wantKeys)
	}
}
