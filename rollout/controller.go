package rollout

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// Phase is where a node stands with a release, as gossiped. The strings are
// those of the gossip package's phases; the seeder converts.
type Phase string

// Phases a node reports.
const (
	PhaseDownloading Phase = "downloading"
	PhaseStaged      Phase = "staged"
	PhaseInstalling  Phase = "installing"
	PhaseActive      Phase = "active"
	PhaseFailed      Phase = "failed"
	PhaseRolledBack  Phase = "rolled-back"
)

// Node is one agent of a rollout's environment as observed through gossip.
type Node struct {
	Name string
	// ReleaseID is the release Phase is about.
	ReleaseID release.ID
	Phase     Phase
	Healthy   bool
	// Suspect: gossip suspects the node is dead. It is neither failed nor
	// healthy.
	Suspect bool
	// HostFault is why the node's own host keeps it from the release
	// ("disk full: need …"), when its failure is that and not the
	// release's. It is not counted against the failure budget: one node's
	// full disk is no reason to roll a good release back off the fleet. It
	// is not done either, so a step that needs it waits (and stalls at its
	// deadline) until the operator frees the host and the node, retrying on
	// its own, goes active.
	HostFault string
	// Refused is why the node refused the app's newest desired state
	// ("untrusted key"), empty when it did not. A node that refuses never
	// takes the target; a step whose every waiting node refuses stalls
	// after Memory.RefusalGrace instead of waiting for ever.
	Refused string
}

// Failure is a node counted against a rollout's failure budget.
type Failure struct {
	Node string
	// What: "failed", "rolled-back" or "unhealthy".
	What string
	// At is when the controller first saw it.
	At time.Time
}

// Memory is what the controller remembers about one rollout between
// decisions: when the current step was first seen done (the bake clock) and
// which nodes it counted as failed. It is in-memory only. A restarted seeder
// starts with a zero Memory and reaches the same decisions from the signed
// state and what it observes: a running bake starts over (a step advances
// later, never sooner), and the failures are counted anew from the nodes'
// current phases. Memory resets itself when the rollout it is about (the
// target and the sequence that published it) changes.
type Memory struct {
	// Target and Published identify the rollout the memory is about.
	Target    release.ID
	Published uint64
	// Failures are the nodes counted as failed, in the order seen.
	Failures []Failure
	// BakeStart is when the step (BakeStep at threshold BakeAdmit) was
	// first seen done; zero while it is not done.
	BakeStart time.Time
	BakeStep  int
	BakeAdmit float64

	// RefusedSince is when every admitted node still waiting was first
	// seen refusing the state; zero while some is not.
	RefusedSince time.Time
	// RefusalGrace is how long those refusals may hold before the rollout
	// stalls; zero is DefaultRefusalGrace. It outlives a reset.
	RefusalGrace time.Duration

	failed map[string]bool // index of Failures by node
	// seen is when each node of the environment was last among the nodes
	// Decide was given (see RosterTTL).
	seen map[string]time.Time
}

// RosterTTL is how long a node that left the environment's member list
// still counts when the controller sets an admission threshold. A node
// whose membership flaps (a busy host, suspected then refuting) would
// otherwise be missing from the names the threshold is computed over and,
// back, be admitted beyond the step's count; one gone longer is replaced.
const RosterTTL = time.Minute

// roster notes nodes as seen at now, forgets those unseen for RosterTTL,
// and returns every name still remembered.
func (m *Memory) roster(now time.Time, nodes []Node) []string {
	if m.seen == nil {
		m.seen = make(map[string]time.Time, len(nodes))
	}
	for _, n := range nodes {
		m.seen[n.Name] = now
	}
	out := make([]string, 0, len(m.seen))
	for name, at := range m.seen {
		if now.Sub(at) > RosterTTL {
			delete(m.seen, name)
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// sync resets m when d is another rollout than the one m remembers.
func (m *Memory) sync(d *release.DesiredState, id release.ID) {
	if m.Target != id || m.Published != d.Published {
		*m = Memory{Target: id, Published: d.Published, RefusalGrace: m.RefusalGrace, seen: m.seen} // the roster outlives a rollout
	}
}

func (m *Memory) synced(d *release.DesiredState, id release.ID) bool {
	return m != nil && m.Target == id && m.Published == d.Published
}

func (m *Memory) hasFailed(name string) bool {
	if m.failed == nil || len(m.failed) != len(m.Failures) {
		m.failed = make(map[string]bool, len(m.Failures))
		for _, f := range m.Failures {
			m.failed[f.Node] = true
		}
	}
	return m.failed[name]
}

// count adds the nodes that fail the target now to the failures.
func (m *Memory) count(now time.Time, id release.ID, nodes []Node) {
	for _, n := range nodes {
		if what := failureOf(n, id); what != "" && !m.hasFailed(n.Name) {
			m.Failures = append(m.Failures, Failure{Node: n.Name, What: what, At: now})
			m.failed[n.Name] = true
		}
	}
}

// Forgive forgets the counted failures: an operator who resumes a rollout
// stalled on its budget accepts them. Nodes still failing count again.
func (m *Memory) Forgive() {
	m.Failures, m.failed = nil, nil
}

func (m *Memory) stopBake() { m.BakeStart = time.Time{} }

// DefaultRefusalGrace is how long every admitted node still waiting on a
// step may refuse the desired state before the rollout stalls
// (Memory.RefusalGrace). A refusal can be of a state the controller has
// since replaced, for the gossip round it takes the replacement to arrive,
// so one sighting is not enough.
const DefaultRefusalGrace = 30 * time.Second

func (m *Memory) refusalGrace() time.Duration {
	if m.RefusalGrace > 0 {
		return m.RefusalGrace
	}
	return DefaultRefusalGrace
}

// refusedFor reports whether every node in waiting refuses now, and for how
// long they all have; the clock restarts when some does not (or none waits).
func (m *Memory) refusedFor(now time.Time, waiting []Node) (time.Duration, bool) {
	all := len(waiting) > 0
	for _, n := range waiting {
		all = all && n.Refused != ""
	}
	if !all {
		m.RefusedSince = time.Time{}
		return 0, false
	}
	if m.RefusedSince.IsZero() {
		m.RefusedSince = now
	}
	return now.Sub(m.RefusedSince), true
}

// bakeSince starts the bake clock for d's step if it is not running, and
// returns when it started.
func (m *Memory) bakeSince(now time.Time, d *release.DesiredState) time.Time {
	if m.BakeStart.IsZero() || m.BakeStep != d.Step || m.BakeAdmit != d.Admit {
		m.BakeStart, m.BakeStep, m.BakeAdmit = now, d.Step, d.Admit
	}
	return m.BakeStart
}

// failureOf is what makes n a failure of release id, or "".
func failureOf(n Node, id release.ID) string {
	if n.Suspect || n.ReleaseID != id || n.HostFault != "" {
		return ""
	}
	switch {
	case n.Phase == PhaseFailed, n.Phase == PhaseRolledBack:
		return string(n.Phase)
	case n.Phase == PhaseActive && !n.Healthy:
		return "unhealthy"
	}
	return ""
}

// Decision is what the controller decided. Next, when set, is a new state
// for the seeder to sign and gossip: it sets Sequence, Issued and Expires,
// and Published when Next.Published is 0. Why says what the controller saw,
// for logs, whether or not it decided anything.
type Decision struct {
	Next *release.DesiredState
	Why  string
}

// maxReason is how long a signed Reason may be (release.DesiredState.Validate).
const maxReason = 200

// Decide is the controller's step for one rollout: from the signed state d,
// the environment's agents as observed now, whether that membership has
// settled (been unchanged for a while), and what mem remembers, it decides
// whether to sign a new state: admit the first step once membership
// settles, top a step up to its node count when nodes join or leave,
// advance a step that has baked, complete the rollout, flip a blue-green
// rollout once enough nodes have staged, roll back (or stall) when the
// failure budget is spent, and stall past the progress deadline. It updates
// mem and does nothing else.
func Decide(now time.Time, d release.DesiredState, nodes []Node, settled bool, mem *Memory) Decision {
	id, version, err := target(&d)
	if err != nil {
		return Decision{Why: err.Error()}
	}
	mem.sync(&d, id)
	nodes = sortNodes(nodes)
	mem.count(now, id, nodes)
	roster := mem.roster(now, nodes)
	switch {
	case d.Rollback:
		return Decision{Why: "rolled back to " + version}
	case d.State.Final():
		return Decision{Why: "rollout " + string(d.State)}
	case d.Paused || d.State == release.RolloutPaused || d.State == release.RolloutStalled:
		mem.stopBake()
		mem.RefusedSince = time.Time{} // a resume gives the nodes another grace
		return Decision{Why: "rollout paused"}
	}
	fleet := len(nodes)
	if fleet == 0 {
		mem.stopBake()
		return Decision{Why: "no nodes in environment " + d.EnvName()}
	}
	if budget := d.Plan.MaxFailures.Of(fleet); len(mem.Failures) > budget {
		return spent(d, fleet, budget, mem)
	}
	if d.Plan.Strat() == release.StrategyBlueGreen && d.Admit == 0 {
		mem.stopBake()
		return stage(now, d, id, nodes, settled)
	}
	o := observe(&d, id, nodes)
	want := d.Plan.StepAt(d.Step).Nodes(fleet)
	if settled && o.admitted < want && d.Plan.Strat() != release.StrategyBlueGreen {
		mem.stopBake()
		admit := max(d.Admit, Threshold(roster, id, want))
		if admit == d.Admit {
			// The step's count is met among the nodes seen lately; some of
			// them are away. Admitting more now would exceed it when they
			// come back.
			return Decision{Why: fmt.Sprintf("step %d of %d: %d of %d nodes admitted; waiting up to %v for %d absent nodes",
				d.Step+1, d.Plan.NumSteps(), o.admitted, want, RosterTTL, len(roster)-len(nodes))}
		}
		next := clone(d)
		next.Admit = admit
		next.State = release.RolloutProgressing
		next.Reason = fmt.Sprintf("step %d of %d: %d of %d nodes admitted", d.Step+1, d.Plan.NumSteps(), countAdmitted(next.Admit, id, nodes), fleet)
		return Decision{Next: &next, Why: next.Reason}
	}
	if !o.done() {
		mem.stopBake()
		if refused, all := mem.refusedFor(now, o.notDone); all {
			why := refusedReason(&d, o.notDone)
			if refused >= mem.refusalGrace() {
				return stall(d, why)
			}
			return Decision{Why: why}
		}
		if dl := d.Plan.ProgressDeadline; dl > 0 && now.Sub(d.Issued) > dl {
			return stall(d, o.waiting(&d, dl))
		}
		return Decision{Why: o.waiting(&d, 0)}
	}
	baked := now.Sub(mem.bakeSince(now, &d))
	if left := d.Plan.Bake - baked; left > 0 {
		return Decision{Why: fmt.Sprintf("step %d of %d baking: %s left", d.Step+1, d.Plan.NumSteps(), left)}
	}
	if d.Step+1 < d.Plan.NumSteps() && !settled {
		return Decision{Why: fmt.Sprintf("step %d of %d baked; waiting for membership to settle", d.Step+1, d.Plan.NumSteps())}
	}
	next := advance(d, id, nodes, "")
	mem.stopBake()
	return Decision{Next: &next, Why: next.Reason}
}

// advance moves d to its next step, or completes it at the last one.
// by, when set, names who did it ("by operator").
func advance(d release.DesiredState, id release.ID, nodes []Node, by string) release.DesiredState {
	next := clone(d)
	next.Paused = false
	if d.Step+1 < d.Plan.NumSteps() {
		next.Step = d.Step + 1
		next.Admit = max(d.Admit, Threshold(names(nodes), id, d.Plan.StepAt(next.Step).Nodes(len(nodes))))
		next.State = release.RolloutProgressing
		next.Reason = fmt.Sprintf("step %d of %d: %d of %d nodes admitted", next.Step+1, d.Plan.NumSteps(), countAdmitted(next.Admit, id, nodes), len(nodes))
	} else {
		next.Admit = 1
		next.State = release.RolloutComplete
		o := observe(&next, id, nodes)
		next.Reason = fmt.Sprintf("complete: %d of %d nodes active and healthy", o.healthy, len(nodes))
	}
	if by != "" {
		next.Reason = "promoted " + by + ": " + next.Reason
	}
	return next
}

// stage is the blue-green rollout before its flip: every node stages the
// target; once enough have, one signed state admits them all.
func stage(now time.Time, d release.DesiredState, id release.ID, nodes []Node, settled bool) Decision {
	staged, need := countStaged(id, nodes), stagedNeed(d.Plan, len(nodes))
	if settled && staged >= need {
		next := flip(d, staged, len(nodes))
		return Decision{Next: &next, Why: next.Reason}
	}
	why := fmt.Sprintf("staging: %d of %d nodes staged, %d needed", staged, len(nodes), need)
	if dl := d.Plan.ProgressDeadline; dl > 0 && now.Sub(d.Issued) > dl {
		return stall(d, fmt.Sprintf("%s after %s", why, dl))
	}
	return Decision{Why: why}
}

func flip(d release.DesiredState, staged, fleet int) release.DesiredState {
	next := clone(d)
	next.Admit, next.Paused, next.State = 1, false, release.RolloutProgressing
	next.Reason = fmt.Sprintf("flipped: %d of %d staged", staged, fleet)
	return next
}

func countStaged(id release.ID, nodes []Node) int {
	n := 0
	for _, nd := range nodes {
		if nd.Suspect || nd.ReleaseID != id {
			continue
		}
		switch nd.Phase {
		case PhaseStaged, PhaseInstalling, PhaseActive:
			n++
		}
	}
	return n
}

// stagedNeed is how many nodes must have staged before a blue-green flip:
// Plan.MinStaged of the fleet (every node when it is zero), at least one
// and at most the fleet.
func stagedNeed(p release.Plan, fleet int) int {
	need := fleet
	if !p.MinStaged.IsZero() {
		need = p.MinStaged.Of(fleet)
	}
	return min(max(need, 1), max(fleet, 1))
}

// spent is the decision once more nodes failed than the budget allows.
func spent(d release.DesiredState, fleet, budget int, mem *Memory) Decision {
	const maxListed = 5
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d nodes failed, budget %d:", len(mem.Failures), fleet, budget)
	for i, f := range mem.Failures {
		if i == maxListed {
			b.WriteString(" …")
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s %s", f.Node, f.What)
	}
	reason := b.String()
	switch {
	case d.Plan.NoAutoRollback:
		return stall(d, reason+"; automatic rollback is off")
	case d.Previous == nil:
		return stall(d, reason+"; no previous release to roll back to")
	}
	next := rollbackTo(d, *d.Previous, reason)
	return Decision{Next: &next, Why: "rolling back: " + next.Reason}
}

// rollbackTo is the state that returns every node to release to at once
// and marks d's target bad.
func rollbackTo(d release.DesiredState, to release.SignedManifest, reason string) release.DesiredState {
	next := clone(d)
	cur := d.Target
	next.Target, next.Previous = to, &cur
	next.Plan = release.Plan{Strategy: release.StrategyAllAtOnce}
	next.Step, next.Admit = 0, 1
	next.Paused, next.Rollback = false, true
	next.State = release.RolloutRolledBack
	next.Published = 0
	next.Reason = clip(reason)
	if id, _, err := target(&d); err == nil {
		next.MarkBad(id)
	}
	if m, err := to.Unverified(); err == nil {
		next.ClearBad(m.ReleaseID)
	}
	return next
}

func stall(d release.DesiredState, reason string) Decision {
	next := clone(d)
	next.Paused, next.State, next.Reason = true, release.RolloutStalled, clip(reason)
	return Decision{Next: &next, Why: "stalled: " + next.Reason}
}

// observation is where a step stands: its admitted nodes and which of them
// are not yet active and healthy on the target.
type observation struct {
	admitted int
	healthy  int    // nodes active and healthy on the target, admitted or not
	notDone  []Node // admitted nodes not active and healthy (or suspect)
}

func observe(d *release.DesiredState, id release.ID, nodes []Node) observation {
	var o observation
	for _, n := range nodes {
		ok := !n.Suspect && n.ReleaseID == id && n.Phase == PhaseActive && n.Healthy
		if ok {
			o.healthy++
		}
		if Bucket(n.Name, id) >= d.Admit {
			continue
		}
		o.admitted++
		if !ok {
			o.notDone = append(o.notDone, n)
		}
	}
	return o
}

// done: at least one node is admitted and every admitted node is active and
// healthy on the target (a suspect one is not).
func (o observation) done() bool { return o.admitted > 0 && len(o.notDone) == 0 }

// waiting says what the step waits for; after, when set, is the deadline
// it has passed.
func (o observation) waiting(d *release.DesiredState, after time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d of %d: ", d.Step+1, d.Plan.NumSteps())
	if o.admitted == 0 {
		b.WriteString("no node admitted yet")
	} else {
		fmt.Fprintf(&b, "%d of %d admitted nodes not active and healthy", len(o.notDone), o.admitted)
	}
	if after > 0 {
		fmt.Fprintf(&b, " after %s", after)
	}
	if len(o.notDone) > 0 {
		b.WriteString(": " + list(names(o.notDone), 5))
	}
	return b.String()
}

// refusedReason says why a step waits on nodes that all refused its
// desired state, reason by reason: "step 1 of 3: 3 nodes refused the
// desired state: untrusted key (a, b, c); fix their trust and resume".
func refusedReason(d *release.DesiredState, waiting []Node) string {
	byReason := map[string][]string{}
	for _, n := range waiting {
		byReason[n.Refused] = append(byReason[n.Refused], n.Name)
	}
	reasons := make([]string, 0, len(byReason))
	for r := range byReason {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		a, b := byReason[reasons[i]], byReason[reasons[j]]
		return len(a) > len(b) || len(a) == len(b) && reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s (%s)", r, list(byReason[r], 3))
	}
	return fmt.Sprintf("step %d of %d: %d %s refused the desired state: %s; fix their trust and resume",
		d.Step+1, d.Plan.NumSteps(), len(waiting), plural(len(waiting), "node", "nodes"), strings.Join(parts, "; "))
}

func countAdmitted(admit float64, id release.ID, nodes []Node) int {
	n := 0
	for _, nd := range nodes {
		if Bucket(nd.Name, id) < admit {
			n++
		}
	}
	return n
}

// target is d's target release id and version.
func target(d *release.DesiredState) (release.ID, string, error) {
	m, err := d.Target.Unverified()
	if err != nil || m.ReleaseID == "" {
		return "", "", fmt.Errorf("%w desired state for %s in %s: unreadable target manifest", release.ErrInvalid, d.App, d.EnvName())
	}
	return m.ReleaseID, m.Version, nil
}

// clone copies d deeply enough that changing the copy's slices and
// pointers leaves d alone.
func clone(d release.DesiredState) release.DesiredState {
	d.Bad = slices.Clone(d.Bad)
	d.Plan.Steps = slices.Clone(d.Plan.Steps)
	if d.Previous != nil {
		p := *d.Previous
		d.Previous = &p
	}
	return d
}

func sortNodes(nodes []Node) []Node {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func names(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// list joins up to n names, with "…" when there are more.
func list(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + ", …"
}

// clip shortens a reason to what a signed state may carry.
func clip(s string) string {
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason - len("…")
	for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}
