package release

import (
	"fmt"
	"regexp"
	"time"
)

// DefaultEnv is the environment of nodes and desired states that name none.
const DefaultEnv = "default"

var envRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// ValidateEnv checks an environment name: 1-32 characters from a-z, 0-9,
// '.', '_', '-', starting with a letter or digit.
func ValidateEnv(env string) error {
	if !envRE.MatchString(env) {
		return fmt.Errorf("%w environment %q: use 1-32 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalid, env)
	}
	return nil
}

// RolloutState is where a rollout stands, as the controller last signed it
// (progressing, paused, stalled, complete, rolled-back, aborted) or, for
// the transient states baking and rolling-back, as status derives it.
type RolloutState string

// Rollout states.
const (
	RolloutProgressing RolloutState = "progressing"
	RolloutBaking      RolloutState = "baking"
	RolloutPaused      RolloutState = "paused"
	RolloutStalled     RolloutState = "stalled"
	RolloutComplete    RolloutState = "complete"
	RolloutRollingBack RolloutState = "rolling-back"
	RolloutRolledBack  RolloutState = "rolled-back"
	RolloutAborted     RolloutState = "aborted"
)

// Final reports states in which the controller takes no further step.
func (s RolloutState) Final() bool {
	switch s {
	case RolloutComplete, RolloutRolledBack, RolloutAborted:
		return true
	}
	return false
}

// MaxSequenceJump is how far a desired state's sequence may run ahead of
// the highest a node holds for its (app, environment); for a node that holds
// none it is an absolute bound. The seeder numbers states one after another,
// so an honest state is never near it; a state beyond it, even one signed by
// a trusted rollout key, would leave every node with a floor that no later
// state could pass, and is refused.
const MaxSequenceJump = 1 << 20

// CheckSequence refuses seq when it is more than MaxSequenceJump past held,
// the highest sequence held for the same (app, environment).
func CheckSequence(held, seq uint64) error {
	if seq > held && seq-held > MaxSequenceJump {
		return fmt.Errorf("%w desired state: sequence %d is %d past the highest held (%d); a state may run at most %d ahead",
			ErrInvalid, seq, seq-held, held, MaxSequenceJump)
	}
	return nil
}

// maxBad bounds DesiredState.Bad: the most recent rollbacks are kept.
const maxBad = 8

// DesiredState says which release an app should run in one environment. It
// is issued by the seeder, signed by a rollout key and carried by gossip.
// Nodes accept a state only when its signature verifies and its Sequence is
// higher than any they have accepted for the (app, environment), so a
// replayed or older state changes nothing.
type DesiredState struct {
	App string `json:"app"`
	// Env is the environment the state is for; empty means DefaultEnv.
	Env      string          `json:"env,omitempty"`
	Sequence uint64          `json:"seq"`
	Target   SignedManifest  `json:"target"`
	Previous *SignedManifest `json:"previous,omitempty"`
	Plan     Plan            `json:"plan"`
	// Step is the plan step the rollout is at (0-based).
	Step int `json:"step"`
	// Admit is the admission threshold: a node whose rollout.Bucket for the
	// target is below it may install the target. The controller sets it
	// from the environment's members so that a step of N nodes admits
	// exactly N; 0 admits nobody (staging only), 1 everybody.
	Admit float64 `json:"admit"`
	// Paused stops admission: no node starts installing the target.
	Paused bool `json:"paused,omitempty"`
	// State is the rollout's state when this was signed, and Reason why.
	State  RolloutState `json:"state,omitempty"`
	Reason string       `json:"reason,omitempty"`
	// Rollback marks a state that returns nodes to an earlier release (the
	// Target): every node at once, with the hook run as "rollback".
	Rollback bool `json:"rollback,omitempty"`
	// Bad lists releases rolled back in this environment: no node installs
	// or retries them until one is published anew (which removes it here).
	Bad []ID `json:"bad,omitempty"`
	// Published is the sequence of the state that made Target the target (a
	// publish, promotion or rollback). A node that failed the target at or
	// after it does not retry it for a newer state with the same Published.
	Published uint64    `json:"published,omitempty"`
	Issued    time.Time `json:"issued"`
	Expires   time.Time `json:"expires,omitzero"`
}

// EnvName is the state's environment, DefaultEnv when it names none.
func (d *DesiredState) EnvName() string {
	if d.Env == "" {
		return DefaultEnv
	}
	return d.Env
}

// Key identifies what the state is about: "app@env". Gossip keeps one
// state per key.
func (d *DesiredState) Key() string { return StateKey(d.App, d.EnvName()) }

// StateKey is the key of the desired state of app in env.
func StateKey(app, env string) string {
	if env == "" {
		env = DefaultEnv
	}
	return app + "@" + env
}

// Validate checks the state's own fields. Signatures are checked by
// VerifyDesired, which also checks the manifests inside.
func (d *DesiredState) Validate() error {
	if err := ValidateApp(d.App); err != nil {
		return err
	}
	if d.Env != "" {
		if err := ValidateEnv(d.Env); err != nil {
			return err
		}
	}
	if d.Sequence == 0 {
		return fmt.Errorf("%w desired state for %s: sequence must start at 1", ErrInvalid, d.App)
	}
	if err := d.Plan.Validate(); err != nil {
		return err
	}
	if d.Step < 0 || d.Step >= d.Plan.NumSteps() {
		return fmt.Errorf("%w desired state for %s: step %d outside plan of %d steps", ErrInvalid, d.App, d.Step, d.Plan.NumSteps())
	}
	if !(d.Admit >= 0 && d.Admit <= 1) { // written so that NaN fails too
		return fmt.Errorf("%w desired state for %s: admit %v outside [0,1]", ErrInvalid, d.App, d.Admit)
	}
	switch d.State {
	case "", RolloutProgressing, RolloutPaused, RolloutStalled, RolloutComplete, RolloutRolledBack, RolloutAborted:
	default:
		return fmt.Errorf("%w desired state for %s: rollout state %q cannot be signed", ErrInvalid, d.App, d.State)
	}
	if len(d.Bad) > maxBad {
		return fmt.Errorf("%w desired state for %s: %d bad releases, at most %d", ErrInvalid, d.App, len(d.Bad), maxBad)
	}
	for _, id := range d.Bad {
		if _, err := ParseID(string(id)); err != nil {
			return fmt.Errorf("%w desired state for %s: bad release: %w", ErrInvalid, d.App, err)
		}
	}
	if d.Published > d.Sequence {
		return fmt.Errorf("%w desired state for %s: published at %d after its own sequence %d", ErrInvalid, d.App, d.Published, d.Sequence)
	}
	if len(d.Reason) > 200 {
		return fmt.Errorf("%w desired state for %s: reason longer than 200 bytes", ErrInvalid, d.App)
	}
	return nil
}

// IsBad reports whether id was rolled back in this state's environment.
func (d *DesiredState) IsBad(id ID) bool {
	for _, b := range d.Bad {
		if b == id {
			return true
		}
	}
	return false
}

// MarkBad adds id to Bad, dropping the oldest entries past the limit.
func (d *DesiredState) MarkBad(id ID) {
	if d.IsBad(id) {
		return
	}
	d.Bad = append(d.Bad, id)
	if len(d.Bad) > maxBad {
		d.Bad = append([]ID(nil), d.Bad[len(d.Bad)-maxBad:]...)
	}
}

// ClearBad removes id from Bad: it has been published anew.
func (d *DesiredState) ClearBad(id ID) {
	out := d.Bad[:0:0]
	for _, b := range d.Bad {
		if b != id {
			out = append(out, b)
		}
	}
	d.Bad = out
}

// Expired reports whether the state has an expiry and now is past it.
func (d *DesiredState) Expired(now time.Time) bool {
	return !d.Expires.IsZero() && now.After(d.Expires)
}
