package release

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrTooFewSignatures reports a manifest that verifies but carries fewer
// valid release signatures than the threshold asks for.
var ErrTooFewSignatures = errors.New("too few release signatures")

// MaxSignatures bounds the signatures one manifest envelope carries, so a
// manifest can never cost a node more than this many verifications.
const MaxSignatures = 16

// Signature is one signature over an envelope's payload.
type Signature struct {
	KeyID string `json:"key"`
	Sig   []byte `json:"sig"`
}

// Trust is what a node pins: the release keys that sign manifests, the
// rollout keys that sign desired states, and how many distinct release keys
// must have signed a manifest. A key has one role: a desired state signed by
// a release key, or a manifest signed only by a rollout key, is refused.
type Trust struct {
	// Release holds the keys of release engineers and CI (swarm publish,
	// swarm sign). Required.
	Release Keyring
	// Rollout holds the keys of seeders (their --key). Required.
	Rollout Keyring
	// ReleaseThreshold is how many distinct Release keys must have signed
	// a manifest (k of n). 0 means 1.
	ReleaseThreshold int
}

// Validate checks that both roles are pinned, that no key has both and that
// the threshold can be met.
func (t Trust) Validate() error {
	if len(t.Release) == 0 {
		return errors.New("no release key pinned: give the public key of each release key with --trust-release")
	}
	if len(t.Rollout) == 0 {
		return errors.New("no rollout key pinned: give the seeder's rollout public key with --trust-rollout")
	}
	ids := make([]string, 0, len(t.Release))
	for id := range t.Release {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if _, ok := t.Rollout[id]; ok {
			return fmt.Errorf("key %s is pinned both as a release key and as a rollout key; a key has one role: create another with 'swarm keygen --role' and pin each in one role only", id)
		}
	}
	if t.ReleaseThreshold < 0 || t.ReleaseThreshold > len(t.Release) {
		return fmt.Errorf("release threshold %d cannot be met with %d release keys pinned; use 1 to %d", t.ReleaseThreshold, len(t.Release), len(t.Release))
	}
	return nil
}

// Threshold is ReleaseThreshold, at least 1.
func (t Trust) Threshold() int { return max(t.ReleaseThreshold, 1) }

// VerifyManifest checks sm against the release keys and the threshold and
// returns the valid manifest.
func (t Trust) VerifyManifest(sm SignedManifest) (Manifest, error) {
	m, _, err := t.CountManifest(sm)
	if err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// CountManifest checks sm like VerifyManifest but asks for one valid
// release signature only, and reports how many there are: the seeder keeps
// a release that has fewer than the threshold until the rest arrive.
func (t Trust) CountManifest(sm SignedManifest) (Manifest, int, error) {
	m, n, err := sm.count(t.Release)
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			for _, s := range sm.Signatures() {
				if _, ok := t.Rollout[s.KeyID]; ok {
					return Manifest{}, 0, fmt.Errorf("manifest: %w: key %s is a rollout key; manifests must be signed by a release key (swarm publish --key, swarm sign)", ErrUnknownKey, s.KeyID)
				}
			}
		}
		return Manifest{}, 0, fmt.Errorf("manifest: %w", err)
	}
	if n < t.Threshold() {
		return m, n, fmt.Errorf("manifest %s %s: %w: %d of the %d required; add more with 'swarm sign'", m.App, m.Version, ErrTooFewSignatures, n, t.Threshold())
	}
	return m, n, nil
}

// VerifyDesired checks that sd is signed by a rollout key and that the
// manifests inside it (target and previous) satisfy the release keys and the
// threshold, and returns the valid state.
func (t Trust) VerifyDesired(sd SignedDesiredState) (DesiredState, error) {
	var d DesiredState
	if err := sd.open(domainDesired, t.Rollout, &d); err != nil {
		if _, ok := t.Release[sd.KeyID]; ok && errors.Is(err, ErrUnknownKey) {
			return DesiredState{}, fmt.Errorf("desired state: %w: key %s is a release key; desired states must be signed by a rollout key (the seeder's --key)", ErrUnknownKey, sd.KeyID)
		}
		return DesiredState{}, fmt.Errorf("desired state: %w", err)
	}
	if err := d.Validate(); err != nil {
		return DesiredState{}, err
	}
	tm, err := t.VerifyManifest(d.Target)
	if err != nil {
		return DesiredState{}, fmt.Errorf("desired state target: %w", err)
	}
	if tm.App != d.App {
		return DesiredState{}, fmt.Errorf("%w desired state: app %q carries a manifest of app %q", ErrInvalid, d.App, tm.App)
	}
	if d.Previous != nil {
		pm, err := t.VerifyManifest(*d.Previous)
		if err != nil {
			return DesiredState{}, fmt.Errorf("desired state previous: %w", err)
		}
		if pm.App != d.App {
			return DesiredState{}, fmt.Errorf("%w desired state: app %q carries a previous manifest of app %q", ErrInvalid, d.App, pm.App)
		}
	}
	return d, nil
}

// Signatures lists every signature the manifest carries, the first one
// (the envelope's) first.
func (s SignedManifest) Signatures() []Signature {
	out := make([]Signature, 0, 1+len(s.More))
	if s.KeyID != "" || len(s.Sig) > 0 {
		out = append(out, Signature{KeyID: s.KeyID, Sig: s.Sig})
	}
	return append(out, s.More...)
}

// SignedBy reports whether the manifest carries a signature naming keyID
// (valid or not).
func (s SignedManifest) SignedBy(keyID string) bool {
	for _, sig := range s.Signatures() {
		if sig.KeyID == keyID {
			return true
		}
	}
	return false
}

// Sign makes k's signature over the manifest's payload, for AddSignature:
// a second release key co-signs a manifest without changing it.
func (s SignedManifest) Sign(k *PrivateKey) (Signature, error) {
	if _, err := s.Unverified(); err != nil {
		return Signature{}, fmt.Errorf("%w manifest: %w", ErrInvalid, err)
	}
	return Signature{KeyID: k.ID(), Sig: ed25519.Sign(k.key, signedBytes(domainManifest, s.Payload))}, nil
}

// AddSignature returns s with sig added. It does not check sig; verify the
// result. A key that already signed, or a manifest with MaxSignatures, is
// refused.
func (s SignedManifest) AddSignature(sig Signature) (SignedManifest, error) {
	if sig.KeyID == "" || len(sig.Sig) == 0 {
		return SignedManifest{}, fmt.Errorf("%w signature: key id and signature are required", ErrInvalid)
	}
	if s.SignedBy(sig.KeyID) {
		return SignedManifest{}, fmt.Errorf("%w: the manifest is already signed by key %s", ErrAlreadySigned, sig.KeyID)
	}
	if len(s.Signatures()) >= MaxSignatures {
		return SignedManifest{}, fmt.Errorf("%w manifest: it already carries %d signatures, the most one may", ErrInvalid, MaxSignatures)
	}
	out := SignedManifest{Envelope: s.Envelope, More: append(slices.Clone(s.More), sig)}
	if out.KeyID == "" && len(out.Sig) == 0 {
		out.KeyID, out.Sig, out.More = sig.KeyID, sig.Sig, nil
	}
	return out, nil
}

// ErrAlreadySigned reports a signature by a key that has already signed.
var ErrAlreadySigned = errors.New("already signed")

// count verifies every signature by a key of ring and reports how many
// verify. Signatures by other keys are skipped (they may be another
// seeder's release keys); one by a key of ring that does not verify fails
// the whole manifest, as does a key named twice.
func (s SignedManifest) count(ring Keyring) (Manifest, int, error) {
	sigs := s.Signatures()
	if len(sigs) > MaxSignatures {
		return Manifest{}, 0, fmt.Errorf("%w: %d signatures, at most %d", ErrInvalid, len(sigs), MaxSignatures)
	}
	seen := make(map[string]bool, len(sigs))
	var valid int
	var unknown []string
	for _, sig := range sigs {
		if seen[sig.KeyID] {
			return Manifest{}, 0, fmt.Errorf("%w: key %s signs twice", ErrInvalid, sig.KeyID)
		}
		seen[sig.KeyID] = true
		pub, ok := ring[sig.KeyID]
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", sig.KeyID))
			continue
		}
		if !ed25519.Verify(pub.key, signedBytes(domainManifest, s.Payload), sig.Sig) {
			return Manifest{}, 0, fmt.Errorf("%w from key %s", ErrBadSignature, sig.KeyID)
		}
		valid++
	}
	if valid == 0 {
		return Manifest{}, 0, fmt.Errorf("%w %s", ErrUnknownKey, strings.Join(unknown, ", "))
	}
	var m Manifest
	if err := decodeCanonical(s.Payload, &m); err != nil {
		return Manifest{}, 0, err
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, 0, err
	}
	return m, valid, nil
}
