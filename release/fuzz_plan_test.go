package release

import (
	"errors"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/swarmdeploy/swarm/internal/fuzzcorpus"
)

var stepsSeeds = map[string]string{
	"canary":            "1,10%,50%,100%",
	"counts":            "1, 5, 20",
	"fraction":          "2.5%,100%",
	"empty":             "",
	"count-after-all":   "100%,5",
	"decreasing":        "50%,10%",
	"over-100":          "10%,150%",
	"nan":               "NaN%",
	"hex-float":         "0x1p-2%,100%",
	"exponent":          "1e1%,1e2%",
	"empty-field":       "1,,2",
	"huge-count":        "99999999999999999999",
	"tiny-percent":      "5e-324%",
	"spaces-and-signs":  " +3 , +50% ",
	"underscore-number": "1_0,100%",
}

var budgetSeeds = map[string]string{
	"count":         "2",
	"percent":       "10%",
	"ratio":         "0.1",
	"awkward-ratio": "0.07",
	"all":           "100%",
	"over":          "150%",
	"negative":      "-1",
	"huge-count":    "9223372036854775807",
	"spaces":        " 5 % ",
	"fraction-only": ".5",
	"word":          "ten",
}

// stringSeeds turns named strings into corpus seeds, in name order.
func stringSeeds(in map[string]string) []fuzzcorpus.Seed {
	var out []fuzzcorpus.Seed
	for _, name := range slices.Sorted(maps.Keys(in)) {
		out = append(out, fuzzcorpus.Seed{Name: name, Args: []any{in[name]}})
	}
	return out
}

// fuzzFleets are fleet sizes the plan targets evaluate steps and budgets on.
var fuzzFleets = []int{1, 2, 3, 7, 10, 99, 100, 5000, 1 << 20}

// FuzzParseSteps parses arbitrary --plan values. Errors wrap ErrInvalid. An
// accepted plan is one the seeder signs (Plan.Validate accepts it), every
// step is a count of at least 1 or a percentage in (0,100], counts increase
// and percentages increase, the last step is 100% and admits every node of
// any fleet, and printing the plan and parsing it again gives the same
// steps.
func FuzzParseSteps(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		steps, err := ParseSteps(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSteps(%q): error without ErrInvalid: %v", s, err)
			}
			return
		}
		p := Plan{Steps: steps}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParseSteps(%q) = %v, which Plan.Validate refuses: %v", s, steps, err)
		}
		if len(steps) == 0 {
			return // no plan: one step of every node
		}
		lastCount, lastPct := 0, 0.0
		for i, st := range steps {
			switch {
			case st.Count > 0 && st.Percent == 0:
				if st.Count <= lastCount {
					t.Fatalf("ParseSteps(%q): step %d count %d after %d", s, i, st.Count, lastCount)
				}
				lastCount = st.Count
			case st.Count == 0 && st.Percent > 0 && st.Percent <= 100:
				if st.Percent <= lastPct {
					t.Fatalf("ParseSteps(%q): step %d %v%% after %v%%", s, i, st.Percent, lastPct)
				}
				lastPct = st.Percent
			default:
				t.Fatalf("ParseSteps(%q): step %d is %+v", s, i, st)
			}
		}
		if last := steps[len(steps)-1]; last.Percent != 100 {
			t.Fatalf("ParseSteps(%q) ends at %s, not 100%%", s, last)
		}
		for _, n := range fuzzFleets {
			if got := p.StepAt(len(steps) - 1).Nodes(n); got != n {
				t.Fatalf("ParseSteps(%q): last step admits %d of %d nodes", s, got, n)
			}
			for i := range steps {
				if got := p.StepAt(i).Nodes(n); got < 1 || got > n {
					t.Fatalf("ParseSteps(%q): step %d admits %d of %d nodes", s, i, got, n)
				}
			}
		}
		again, err := ParseSteps(p.String())
		if err != nil || !slices.Equal(again, steps) {
			t.Fatalf("ParseSteps(%q) = %s, which parses as %v, %v", s, p, again, err)
		}
	})
}

// FuzzParseBudget parses arbitrary --max-failures and --min-staged values.
// Errors wrap ErrInvalid. An accepted budget passes Plan.Validate in both
// places, is a count of at least 0 or a ratio in [0,1] (not both), is at
// most the fleet when it is a ratio, and printing it and parsing it again
// gives the same budget.
func FuzzParseBudget(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBudget(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseBudget(%q): error without ErrInvalid: %v", s, err)
			}
			return
		}
		if err := (Plan{MaxFailures: b, MinStaged: b}).Validate(); err != nil {
			t.Fatalf("ParseBudget(%q) = %+v, which Plan.Validate refuses: %v", s, b, err)
		}
		if b.Count < 0 || !(b.Ratio >= 0 && b.Ratio <= 1) || (b.Count > 0 && b.Ratio > 0) || math.IsNaN(b.Ratio) {
			t.Fatalf("ParseBudget(%q) = %+v", s, b)
		}
		for _, n := range fuzzFleets {
			if got := b.Of(n); got < 0 || (b.Ratio > 0 && got > n) {
				t.Fatalf("ParseBudget(%q) = %+v: %d of %d nodes", s, b, got, n)
			}
		}
		again, err := ParseBudget(b.String())
		if err != nil || again != b {
			t.Fatalf("ParseBudget(%q) = %+v, printed %q, which parses as %+v, %v", s, b, b.String(), again, err)
		}
	})
}
