package seeder

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// ReleaseInfo is a stored release as GET PathReleases/{app}/{version}
// returns it: the signed manifest (what `swarm sign` adds a signature to)
// and where it stands against the release threshold.
type ReleaseInfo struct {
	Manifest   release.Manifest       `json:"manifest"`
	Signed     release.SignedManifest `json:"signed"`
	Signatures int                    `json:"signatures"`
	Threshold  int                    `json:"threshold"`
	// Pending: the release waits for signatures before it rolls out to
	// Env.
	Pending bool   `json:"pending,omitempty"`
	Env     string `json:"env,omitempty"`
}

// Release is the stored release of app at version.
func (s *Seeder) Release(app, version string) (ReleaseInfo, error) {
	r, err := s.stored(app, version)
	if err != nil {
		return ReleaseInfo{}, err
	}
	return s.info(r), nil
}

func (s *Seeder) stored(app, version string) (storedRelease, error) {
	if err := release.ValidateApp(app); err != nil {
		return storedRelease{}, err
	}
	if err := release.ValidateVersion(version); err != nil {
		return storedRelease{}, err
	}
	r, ok := s.store.byVersion(app, version)
	if !ok {
		return storedRelease{}, fmt.Errorf("%w: no version %s of %s in the seeder's store; publish it first", ErrNotFound, version, app)
	}
	return r, nil
}

func (s *Seeder) info(r storedRelease) ReleaseInfo {
	_, n, _ := s.trust.CountManifest(r.Signed)
	out := ReleaseInfo{Manifest: r.Manifest, Signed: r.Signed, Signatures: n, Threshold: s.trust.Threshold()}
	if r.Pending != nil {
		out.Pending, out.Env = true, envName(r.Pending.Env)
	}
	return out
}

// AddSignature adds a release key's signature to the stored manifest of
// app at version (k of n release signatures). A signature by a key that is
// not one of the seeder's release keys, or one that does not verify, is
// refused; one by a key that has signed already changes nothing. When it
// brings a pending release to the threshold, the release's rollout starts.
func (s *Seeder) AddSignature(app, version string, sig release.Signature) (PublishResult, error) {
	s.signMu.Lock()
	defer s.signMu.Unlock()
	r, err := s.stored(app, version)
	if err != nil {
		return PublishResult{}, fmt.Errorf("sign: %w", err)
	}
	if sig.KeyID == "" || len(sig.Sig) == 0 {
		return PublishResult{}, fmt.Errorf("%w signature for %s %s: the body needs {\"key\": KEY ID, \"sig\": base64 signature}", release.ErrInvalid, app, version)
	}
	if _, ok := s.trust.Release[sig.KeyID]; !ok {
		role := "an unknown key"
		if _, ok := s.trust.Rollout[sig.KeyID]; ok {
			role = "a rollout key"
		}
		return PublishResult{}, fmt.Errorf("sign %s %s: %w: key %s is %s, not one of the seeder's release keys (--trust-release)",
			app, version, release.ErrUnknownKey, sig.KeyID, role)
	}
	next, err := r.Signed.AddSignature(sig)
	if errors.Is(err, release.ErrAlreadySigned) {
		res, _ := s.pendingResult(r)
		res.Existed = true
		res.Note = fmt.Sprintf("%s %s is already signed by key %s; nothing changed", app, version, sig.KeyID)
		return res, nil
	}
	if err != nil {
		return PublishResult{}, fmt.Errorf("sign %s %s: %w", app, version, err)
	}
	if _, _, err := s.trust.CountManifest(next); err != nil && !errors.Is(err, release.ErrTooFewSignatures) {
		return PublishResult{}, fmt.Errorf("sign %s %s: %w", app, version, err)
	}
	if err := s.store.setSigned(r.Manifest.ReleaseID, next); err != nil {
		return PublishResult{}, fmt.Errorf("sign %s %s: %w", app, version, err)
	}
	r.Signed = next
	s.log.Info("release signature added", zap.String("app", app), zap.String("version", version), zap.String("key_id", sig.KeyID))
	return s.startIfSignedLocked(r)
}

// publishPendingLocked takes a publish of a release the store holds while
// it waits for signatures: the signatures it carries that the stored copy
// lacks are added, and the rollout starts if that reaches the threshold.
// The caller holds signMu.
func (s *Seeder) publishPendingLocked(r storedRelease, sm release.SignedManifest) (PublishResult, error) {
	next, added := r.Signed, 0
	for _, sig := range sm.Signatures() {
		if _, ok := s.trust.Release[sig.KeyID]; !ok || next.SignedBy(sig.KeyID) {
			continue
		}
		cand, err := next.AddSignature(sig)
		if err != nil {
			return PublishResult{}, fmt.Errorf("publish %s %s: %w", r.Manifest.App, r.Manifest.Version, err)
		}
		if _, _, err := s.trust.CountManifest(cand); err != nil && !errors.Is(err, release.ErrTooFewSignatures) {
			return PublishResult{}, fmt.Errorf("publish %s %s: %w", r.Manifest.App, r.Manifest.Version, err)
		}
		next, added = cand, added+1
	}
	if added > 0 {
		if err := s.store.setSigned(r.Manifest.ReleaseID, next); err != nil {
			return PublishResult{}, fmt.Errorf("publish %s %s: %w", r.Manifest.App, r.Manifest.Version, err)
		}
		r.Signed = next
	}
	res, err := s.startIfSignedLocked(r)
	res.Existed = true
	return res, err
}

// startIfSignedLocked starts r's pending rollout when r has the threshold
// of release signatures, and says where r stands. The caller holds signMu.
func (s *Seeder) startIfSignedLocked(r storedRelease) (PublishResult, error) {
	res, ready := s.pendingResult(r)
	if !ready {
		return res, nil
	}
	o := *r.Pending
	env, plan, err := s.rolloutOptions(o.Env, o.Plan)
	if err != nil {
		return res, fmt.Errorf("start %s %s after its last signature: %w", r.Manifest.App, r.Manifest.Version, err)
	}
	d, _, err := s.issue(env, plan, r.Signed, r.Manifest, nil)
	if err != nil {
		return res, fmt.Errorf("start %s %s after its last signature: %w", r.Manifest.App, r.Manifest.Version, err)
	}
	if err := s.store.clearPending(r.Manifest.ReleaseID); err != nil {
		return res, fmt.Errorf("start %s %s: %w", r.Manifest.App, r.Manifest.Version, err)
	}
	s.log.Info("release has its signatures: rollout started", zap.String("app", r.Manifest.App), zap.String("env", env),
		zap.String("version", r.Manifest.Version), zap.Int("signatures", res.Signatures), zap.Uint64("seq", d.Sequence))
	res.Pending, res.Sequence = false, d.Sequence
	res.Note = fmt.Sprintf("%d of %d release signatures: rollout started in %s (seq %d)", res.Signatures, res.Threshold, env, d.Sequence)
	return res, nil
}

// pendingResult describes r and reports whether it is pending with enough
// signatures to start.
func (s *Seeder) pendingResult(r storedRelease) (PublishResult, bool) {
	_, n, _ := s.trust.CountManifest(r.Signed)
	env := ""
	if r.Pending != nil {
		env = envName(r.Pending.Env)
	}
	res := s.result(env, r.Manifest, n, true)
	res.Existed = false
	switch {
	case r.Pending == nil:
		res.Note = fmt.Sprintf("%d of %d release signatures; not waiting to roll out", n, res.Threshold)
		return res, false
	case n < res.Threshold:
		res.Pending = true
		res.Note = fmt.Sprintf("%d of %d release signatures; its rollout in %s starts when the last arrives", n, res.Threshold, env)
		return res, false
	}
	return res, true
}
