package release

import (
	"fmt"
	"time"
)

// Plan is a rollout plan: the fraction of nodes admitted at each step, in
// increasing order and ending at 1. The zero plan admits everyone at once.
type Plan struct {
	Steps []float64 `json:"steps,omitempty"`
}

// Validate checks that steps are in (0,1], increasing, and end at 1.
func (p Plan) Validate() error {
	prev := 0.0
	for i, s := range p.Steps {
		if !(s > prev && s <= 1) { // written so that NaN fails too
			return fmt.Errorf("%w plan: step %d is %v; steps must increase within (0,1]", ErrInvalid, i, s)
		}
		prev = s
	}
	if len(p.Steps) > 0 && prev != 1 {
		return fmt.Errorf("%w plan: last step is %v; it must be 1", ErrInvalid, prev)
	}
	return nil
}

// Fraction is the admitted fraction of nodes at step i.
func (p Plan) Fraction(step int) float64 {
	if len(p.Steps) == 0 {
		return 1
	}
	if step < 0 {
		return 0
	}
	if step >= len(p.Steps) {
		return 1
	}
	return p.Steps[step]
}

// DesiredState says which release an app should run. It is issued by the
// seeder, signed by a rollout key and carried by gossip. Nodes accept a state
// only when its signature verifies and its Sequence is higher than any they
// have accepted for the app, so a replayed or older state changes nothing.
type DesiredState struct {
	App      string          `json:"app"`
	Sequence uint64          `json:"seq"`
	Target   SignedManifest  `json:"target"`
	Previous *SignedManifest `json:"previous,omitempty"`
	Plan     Plan            `json:"plan"`
	Step     int             `json:"step"`
	Paused   bool            `json:"paused,omitempty"`
	Issued   time.Time       `json:"issued"`
	Expires  time.Time       `json:"expires,omitzero"`
}

// Validate checks the state's own fields. Signatures are checked by
// VerifyDesired, which also checks the manifests inside.
func (d *DesiredState) Validate() error {
	if err := ValidateApp(d.App); err != nil {
		return err
	}
	if d.Sequence == 0 {
		return fmt.Errorf("%w desired state for %s: sequence must start at 1", ErrInvalid, d.App)
	}
	if err := d.Plan.Validate(); err != nil {
		return err
	}
	if d.Step < 0 || (len(d.Plan.Steps) > 0 && d.Step >= len(d.Plan.Steps)) {
		return fmt.Errorf("%w desired state for %s: step %d outside plan of %d steps", ErrInvalid, d.App, d.Step, len(d.Plan.Steps))
	}
	return nil
}

// AdmittedFraction is the share of nodes allowed to install the target now.
func (d *DesiredState) AdmittedFraction() float64 { return d.Plan.Fraction(d.Step) }

// Expired reports whether the state has an expiry and now is past it.
func (d *DesiredState) Expired(now time.Time) bool {
	return !d.Expires.IsZero() && now.After(d.Expires)
}
