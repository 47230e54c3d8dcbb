package release

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Strategy is how a rollout moves nodes to its target.
type Strategy string

// Strategies. The zero value means StrategyWaves.
const (
	// StrategyWaves admits the plan's steps one after another, each after
	// the previous one has baked healthy.
	StrategyWaves Strategy = "waves"
	// StrategyAllAtOnce admits every node at once; bake and failure budget
	// still decide whether it completes or rolls back.
	StrategyAllAtOnce Strategy = "all-at-once"
	// StrategyBlueGreen has every node stage the release without
	// activating it; once Plan.MinStaged nodes are staged, one signed step
	// flips all of them.
	StrategyBlueGreen Strategy = "blue-green"
)

// ParseStrategy reads a --strategy value.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case StrategyWaves, StrategyAllAtOnce, StrategyBlueGreen:
		return st, nil
	case "":
		return StrategyWaves, nil
	}
	return "", fmt.Errorf("%w strategy %q: use waves, all-at-once or blue-green", ErrInvalid, s)
}

// Step is one wave of a rollout: a number of nodes, or a percentage of the
// environment's nodes. Exactly one of the two is set.
type Step struct {
	Count   int     `json:"n,omitempty"`
	Percent float64 `json:"pct,omitempty"`
}

// String is the step as --plan spells it: "5" or "10%".
func (s Step) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(s.Count)
}

// Nodes is how many of fleet nodes the step admits: a count as given (at
// most fleet), a percentage rounded up, so that 1% of 20 nodes is one node.
func (s Step) Nodes(fleet int) int {
	if fleet <= 0 {
		return 0
	}
	if s.Percent > 0 {
		n := int(math.Ceil(s.Percent / 100 * float64(fleet) * (1 - 1e-12)))
		return min(max(n, 1), fleet)
	}
	return min(s.Count, fleet)
}

func (s Step) validate() error {
	switch {
	case s.Count < 0:
		return fmt.Errorf("%w plan step %d: a count must be at least 1", ErrInvalid, s.Count)
	case s.Count > 0 && s.Percent != 0:
		return fmt.Errorf("%w plan step: give a count or a percentage, not both", ErrInvalid)
	case s.Count == 0 && !(s.Percent > 0 && s.Percent <= 100):
		return fmt.Errorf("%w plan step %v%%: a percentage must be above 0 and at most 100", ErrInvalid, s.Percent)
	}
	return nil
}

// ParseSteps reads --plan: comma-separated node counts and percentages,
// e.g. "1,10%,50%,100%". Counts must increase and percentages must
// increase; a plan that does not end at 100% gets a last step of 100%.
// Whether a count fits the fleet is checked when the rollout starts.
func ParseSteps(s string) ([]Step, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var steps []Step
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if n := len(steps); n > 0 && steps[n-1].Percent == 100 {
			// Nothing can follow every node: the step would admit no one,
			// and the 100% appended below would repeat one.
			return nil, fmt.Errorf("%w plan %q: %q comes after 100%%, which is every node", ErrInvalid, s, f)
		}
		var st Step
		if p, ok := strings.CutSuffix(f, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || math.IsNaN(v) {
				return nil, fmt.Errorf("%w plan %q: %q is not a percentage", ErrInvalid, s, f)
			}
			st.Percent = v
		} else {
			v, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("%w plan %q: %q is not a node count or a percentage", ErrInvalid, s, f)
			}
			if v <= 0 {
				return nil, fmt.Errorf("%w plan %q: a count must be at least 1", ErrInvalid, s)
			}
			st.Count = v
		}
		steps = append(steps, st)
	}
	if err := validateSteps(steps); err != nil {
		return nil, fmt.Errorf("plan %q: %w", s, err)
	}
	if last := steps[len(steps)-1]; last.Percent != 100 {
		// Every rollout ends with every node; a plan that stops short gets
		// a last step of 100%.
		steps = append(steps, Step{Percent: 100})
	}
	return steps, nil
}

// validateSteps checks each step and that counts and percentages each
// increase. A count after a percentage (or the other way round) is allowed;
// the controller never admits fewer nodes than the step before.
func validateSteps(steps []Step) error {
	lastCount, lastPct := 0, 0.0
	for i, st := range steps {
		if err := st.validate(); err != nil {
			return err
		}
		if st.Count > 0 {
			if st.Count <= lastCount {
				return fmt.Errorf("%w plan: step %d (%s) does not increase on %d", ErrInvalid, i+1, st, lastCount)
			}
			lastCount = st.Count
		} else {
			if st.Percent <= lastPct {
				return fmt.Errorf("%w plan: step %d (%s) does not increase on %v%%", ErrInvalid, i+1, st, lastPct)
			}
			lastPct = st.Percent
		}
	}
	return nil
}

// Budget is a number of nodes given as a count or as a ratio of the
// environment's nodes. The zero Budget is a count of 0.
type Budget struct {
	Count int     `json:"n,omitempty"`
	Ratio float64 `json:"ratio,omitempty"`
}

var budgetRE = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$`)

// ParseBudget reads --max-failures or --min-staged: "2" (nodes), "10%" or
// "0.1" (of the environment's nodes).
func ParseBudget(s string) (Budget, error) {
	m := budgetRE.FindStringSubmatch(s)
	if m == nil {
		return Budget{}, fmt.Errorf("%w %q is neither a node count nor a ratio (2, 10%%, 0.1)", ErrInvalid, s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return Budget{}, fmt.Errorf("%w %q: %w", ErrInvalid, s, err)
	}
	var b Budget
	switch {
	case m[2] == "%":
		b.Ratio = v / 100
	case strings.Contains(m[1], "."):
		b.Ratio = v
	default:
		// Parsed again as an integer: a float loses counts past 2^53,
		// and one past the int range would turn negative.
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return Budget{}, fmt.Errorf("%w %q: %w", ErrInvalid, s, err)
		}
		b.Count = n
	}
	if b.Ratio > 1 {
		return Budget{}, fmt.Errorf("%w %q: a ratio must be at most 100%%", ErrInvalid, s)
	}
	return b, b.validate()
}

func (b Budget) validate() error {
	if b.Count < 0 || b.Ratio < 0 || b.Ratio > 1 || math.IsNaN(b.Ratio) || (b.Count > 0 && b.Ratio > 0) {
		return fmt.Errorf("%w budget %+v: a count of at least 0 or a ratio in [0,1]", ErrInvalid, b)
	}
	return nil
}

// Of is the budget in nodes for a fleet of n: the count, or the ratio of n
// rounded down.
func (b Budget) Of(n int) int {
	if b.Ratio > 0 {
		return int(math.Floor(b.Ratio * float64(n) * (1 + 1e-12)))
	}
	return b.Count
}

// String is the budget as the flags spell it, in a form ParseBudget reads
// back to the same budget: a ratio as the shortest percentage that does
// (ratio*100 is often not one: 0.007 would print as 0.7000000000000001%),
// else as the ratio itself.
func (b Budget) String() string {
	if b.Ratio > 0 {
		for prec := 0; prec <= 17; prec++ {
			pct := strconv.FormatFloat(b.Ratio*100, 'f', prec, 64)
			if v, err := strconv.ParseFloat(pct, 64); err == nil && v/100 == b.Ratio {
				return pct + "%"
			}
		}
		return strconv.FormatFloat(b.Ratio, 'f', -1, 64)
	}
	return strconv.Itoa(b.Count)
}

// IsZero reports the zero budget (so that encoding/json's omitzero skips it).
func (b Budget) IsZero() bool { return b.Count == 0 && b.Ratio == 0 }

// Plan is how a rollout proceeds. It is signed inside the desired state, so
// every node and a restarted seeder see the same plan.
type Plan struct {
	// Strategy: waves (the default), all-at-once or blue-green.
	Strategy Strategy `json:"strategy,omitempty"`
	// Steps are the waves; empty means one step of every node.
	Steps []Step `json:"steps,omitempty"`
	// Bake is how long a step's admitted nodes must all be active and
	// healthy before the next step is admitted (or the rollout completes).
	Bake time.Duration `json:"bake,omitempty"`
	// MaxFailures is how many failed nodes the rollout tolerates; one more
	// spends the budget, and the rollout rolls back (or stalls, with
	// NoAutoRollback). Default 0: the first failure spends it.
	MaxFailures Budget `json:"max_failures,omitzero"`
	// ProgressDeadline is how long a step may take, from its admission to
	// its nodes being active and healthy, before the rollout is marked
	// stalled and paused. 0 = no deadline.
	ProgressDeadline time.Duration `json:"deadline,omitempty"`
	// NoAutoRollback turns the automatic rollback off: a spent budget then
	// stalls the rollout for an operator to decide.
	NoAutoRollback bool `json:"no_auto_rollback,omitempty"`
	// MinStaged is, for blue-green, how many nodes must have the release
	// staged before the flip. Zero means every node.
	MinStaged Budget `json:"min_staged,omitzero"`
}

// Strat is the plan's strategy with the default filled in.
func (p Plan) Strat() Strategy {
	if p.Strategy == "" {
		return StrategyWaves
	}
	return p.Strategy
}

// NumSteps is how many steps the rollout has: len(Steps), at least 1.
func (p Plan) NumSteps() int {
	if p.Strat() != StrategyWaves || len(p.Steps) == 0 {
		return 1
	}
	return len(p.Steps)
}

// StepAt is step i of the plan (every node for plans without steps and for
// the strategies that move every node together).
func (p Plan) StepAt(i int) Step {
	if p.Strat() != StrategyWaves || len(p.Steps) == 0 {
		return Step{Percent: 100}
	}
	return p.Steps[min(max(i, 0), len(p.Steps)-1)]
}

// Validate checks the plan's fields.
func (p Plan) Validate() error {
	if _, err := ParseStrategy(string(p.Strategy)); err != nil {
		return err
	}
	if err := validateSteps(p.Steps); err != nil {
		return err
	}
	if p.Strat() != StrategyWaves && len(p.Steps) > 1 {
		return fmt.Errorf("%w plan: strategy %s moves every node together; give no steps", ErrInvalid, p.Strategy)
	}
	if p.Bake < 0 || p.ProgressDeadline < 0 {
		return fmt.Errorf("%w plan: bake and progress deadline must not be negative", ErrInvalid)
	}
	if err := p.MaxFailures.validate(); err != nil {
		return fmt.Errorf("max failures: %w", err)
	}
	if err := p.MinStaged.validate(); err != nil {
		return fmt.Errorf("min staged: %w", err)
	}
	return nil
}

// String is the plan's steps as --plan spells them.
func (p Plan) String() string {
	if len(p.Steps) == 0 {
		return "100%"
	}
	parts := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}
