package release

import (
	"crypto/ed25519"
	"fmt"
)

// domainAnnouncement separates a node's signed announcement of itself from
// manifests and desired states: no signature can be replayed as another.
const domainAnnouncement = "swarm/node-announcement/v1\n"

// SignAnnouncement signs what a node announces about itself in gossip (its
// name, role and addresses, encoded by the caller), so that only a holder
// of a pinned key can claim the seeder's role. It returns the key id and the
// signature.
func SignAnnouncement(payload []byte, k *PrivateKey) (keyID string, sig []byte) {
	return k.ID(), ed25519.Sign(k.key, signedBytes(domainAnnouncement, payload))
}

// VerifyAnnouncement checks a signature made by SignAnnouncement against the
// pinned keys. It returns an error matching ErrUnknownKey or ErrBadSignature.
func VerifyAnnouncement(payload []byte, keyID string, sig []byte, ring Keyring) error {
	pub, ok := ring[keyID]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	if !ed25519.Verify(pub.key, signedBytes(domainAnnouncement, payload), sig) {
		return fmt.Errorf("%w from key %s", ErrBadSignature, keyID)
	}
	return nil
}
