package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors for signature checks; match them with errors.Is.
var (
	// ErrUnknownKey: the envelope names a key that is not in the keyring.
	ErrUnknownKey = errors.New("signed by an untrusted key")
	// ErrBadSignature: the signature does not verify, or the payload is not
	// in canonical form.
	ErrBadSignature = errors.New("bad signature")
)

// Signature domains: a manifest signature can never be replayed as a desired
// state, or the other way round.
const (
	domainManifest = "swarm/manifest/v1\n"
	domainDesired  = "swarm/desired-state/v1\n"
)

// Envelope is a signed payload. Payload is the canonical JSON of the signed
// value (what encoding/json produces for it, compact); the signature covers
// a domain string followed by exactly those bytes.
type Envelope struct {
	Payload json.RawMessage `json:"payload"`
	KeyID   string          `json:"key"`
	Sig     []byte          `json:"sig"`
}

// SignedManifest is a manifest signed by one or more release keys (k of n,
// Trust.ReleaseThreshold). The envelope holds the first signature, so a
// manifest with one signature reads and encodes as it always has; More holds
// the others, over the same payload.
type SignedManifest struct {
	Envelope
	More []Signature `json:"sigs,omitempty"`
}

// SignedDesiredState is a desired state signed by a rollout key.
type SignedDesiredState struct{ Envelope }

// SignManifest validates m and signs it with k.
func SignManifest(m Manifest, k *PrivateKey) (SignedManifest, error) {
	if err := m.Validate(); err != nil {
		return SignedManifest{}, err
	}
	env, err := seal(domainManifest, m, k)
	return SignedManifest{Envelope: env}, err
}

// Verify checks that at least one key of ring signed the manifest and
// returns it; Trust.VerifyManifest also applies the release threshold.
func (s SignedManifest) Verify(ring Keyring) (Manifest, error) {
	m, _, err := s.count(ring)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}

// Unverified decodes the manifest without checking its signature: for display
// and for data that was verified before it was stored.
func (s SignedManifest) Unverified() (Manifest, error) {
	var m Manifest
	err := json.Unmarshal(s.Payload, &m)
	return m, err
}

// SignDesired validates d and signs it with k.
func SignDesired(d DesiredState, k *PrivateKey) (SignedDesiredState, error) {
	if err := d.Validate(); err != nil {
		return SignedDesiredState{}, err
	}
	env, err := seal(domainDesired, d, k)
	return SignedDesiredState{env}, err
}

// Unverified decodes the state without checking signatures.
func (s SignedDesiredState) Unverified() (DesiredState, error) {
	var d DesiredState
	err := json.Unmarshal(s.Payload, &d)
	return d, err
}

func seal(domain string, v any, k *PrivateKey) (Envelope, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode payload: %w", err)
	}
	return Envelope{
		Payload: payload,
		KeyID:   k.ID(),
		Sig:     ed25519.Sign(k.key, signedBytes(domain, payload)),
	}, nil
}

// open verifies e and decodes its payload into v. The payload must be the
// canonical encoding of what it decodes to, so that re-encoding a verified
// value (to gossip it on, or to store it) can never break its signature.
func (e Envelope) open(domain string, ring Keyring, v any) error {
	pub, ok := ring[e.KeyID]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, e.KeyID)
	}
	if !ed25519.Verify(pub.key, signedBytes(domain, e.Payload), e.Sig) {
		return fmt.Errorf("%w from key %s", ErrBadSignature, e.KeyID)
	}
	return decodeCanonical(e.Payload, v)
}

// decodeCanonical decodes payload into v and checks that it is the
// canonical encoding of what it decodes to.
func decodeCanonical(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("decode payload: %w", err)
	}
	canon, err := json.Marshal(v)
	if err != nil || !bytes.Equal(canon, payload) {
		return fmt.Errorf("%w: payload is not in canonical form", ErrBadSignature)
	}
	return nil
}

func signedBytes(domain string, payload []byte) []byte {
	b := make([]byte, 0, len(domain)+len(payload))
	return append(append(b, domain...), payload...)
}

// keyID names a public key by the first 8 bytes of its sha256, in hex.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
