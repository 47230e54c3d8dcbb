package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// IDPrefix starts every release id: the id names its hash function so that it
// can change one day without ambiguity.
const IDPrefix = "sha256:"

// ErrBadID reports a release id that is not "sha256:" followed by 64 hex digits.
var ErrBadID = errors.New("malformed release id")

// ID is a release's content address: "sha256:<hex>" of the bundle's bytes.
type ID string

// ParseID checks s and returns it as an ID.
func ParseID(s string) (ID, error) {
	h, ok := strings.CutPrefix(s, IDPrefix)
	if !ok || len(h) != sha256.Size*2 {
		return "", fmt.Errorf("%w: %q", ErrBadID, s)
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", fmt.Errorf("%w: %q", ErrBadID, s)
	}
	return ID(s), nil
}

// IDFromHash returns the ID of a finished sha256 hash.
func IDFromHash(h hash.Hash) ID {
	return ID(IDPrefix + hex.EncodeToString(h.Sum(nil)))
}

// IDOf returns the ID of b; for tests and small inputs.
func IDOf(b []byte) ID {
	sum := sha256.Sum256(b)
	return ID(IDPrefix + hex.EncodeToString(sum[:]))
}

// Hex is the id without its "sha256:" prefix.
func (id ID) Hex() string { return strings.TrimPrefix(string(id), IDPrefix) }

// Short is the first 12 hex digits: enough to tell releases apart in a
// directory name, a table or a node's gossiped state.
func (id ID) Short() string {
	h := id.Hex()
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func (id ID) String() string { return string(id) }
