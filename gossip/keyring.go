package gossip

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/internal/secretfile"
)

// KeySize is the size of a key GenerateKey makes: AES-256.
const KeySize = 32

// MaxKeys bounds the keys a node holds at once: a rotation needs two.
const MaxKeys = 16

// KeyFileInterval is how often KeyFile.Run re-reads the key file.
const KeyFileInterval = 10 * time.Second

var (
	// ErrKeyFile: a gossip key file is missing, malformed or readable by
	// others.
	ErrKeyFile = errors.New("gossip key file")
	// ErrUnencrypted: SetKeys was called on a node started without keys;
	// encryption cannot be turned on while it runs.
	ErrUnencrypted = errors.New("gossip is not encrypted on this node")
)

// GenerateKey makes a new gossip key from r (crypto/rand.Reader in
// production), encoded as a line of a key file.
func GenerateKey(r io.Reader) (string, error) {
	k := make([]byte, KeySize)
	if _, err := io.ReadFull(r, k); err != nil {
		return "", fmt.Errorf("generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// ParseKeys reads a key file's contents: one base64 key per line, the first
// the primary (it encrypts what the node sends), the others accepted on
// what it receives. Blank lines and lines starting with '#' are skipped.
func ParseKeys(b []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || memberlist.ValidateKey(k) != nil {
			return nil, fmt.Errorf("line %d is not a base64 key of 16, 24 or 32 bytes; make one with 'swarm gossip-key generate'", i+1)
		}
		keys = append(keys, k)
	}
	if err := checkKeys(keys, false); err != nil {
		return nil, err
	}
	return keys, nil
}

// LoadKeyFile reads a key file (ParseKeys). Like a private key, it must not
// be readable or writable by group or others: whoever holds the key is a
// member.
func LoadKeyFile(path string) ([][]byte, error) {
	b, err := secretfile.Read(path, "create one with 'swarm gossip-key generate --out "+path+"'")
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrKeyFile, err)
	}
	keys, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	return keys, nil
}

// checkKeys refuses keys memberlist cannot use, repeated keys and more
// than MaxKeys; none at all only with allowEmpty.
func checkKeys(keys [][]byte, allowEmpty bool) error {
	if len(keys) == 0 && !allowEmpty {
		return errors.New("no gossip key given; make one with 'swarm gossip-key generate'")
	}
	if len(keys) > MaxKeys {
		return fmt.Errorf("%d gossip keys, over %d; remove the ones no node uses any more", len(keys), MaxKeys)
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("gossip key %d is %d bytes; it must be 16, 24 or 32", i+1, len(k))
		}
		for j := range i {
			if bytes.Equal(keys[j], k) {
				return fmt.Errorf("gossip key %d repeats key %d", i+1, j+1)
			}
		}
	}
	return nil
}

// KeyID names a gossip key in logs without revealing it: 8 hex digits of
// its sha256.
func KeyID(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:4])
}

func keyIDs(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = KeyID(k)
	}
	return out
}

// newKeyring builds memberlist's keyring from keys, the first primary; nil
// when there are none (gossip in the clear).
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	kr, err := memberlist.NewKeyring(cloneKeys(keys[1:]), bytes.Clone(keys[0]))
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	return kr, nil
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// Keys returns the node's gossip keys, the primary first; nil when gossip
// is not encrypted.
func (n *Node) Keys() [][]byte {
	if n.keyring == nil {
		return nil
	}
	return cloneKeys(n.keyring.GetKeys())
}

// SetKeys changes the node's gossip keys while it runs: keys not held yet
// are installed, keys[0] becomes the primary (what the node encrypts with),
// and held keys missing from keys are removed. A rotation, done on every
// node in turn, is three calls: {old, new} (new accepted everywhere), then
// {new, old} (new used), then {new} (old refused). A node started without
// keys returns ErrUnencrypted.
func (n *Node) SetKeys(keys [][]byte) error {
	if err := checkKeys(keys, false); err != nil {
		return fmt.Errorf("gossip keys: %w", err)
	}
	if n.keyring == nil {
		return fmt.Errorf("gossip keys: %w; restart the node with a key file", ErrUnencrypted)
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	before := n.Keys()
	if err := applyKeys(n.keyring, cloneKeys(keys)); err != nil {
		return fmt.Errorf("gossip keys: %w", err)
	}
	after := n.Keys()
	if !sameKeys(before, after) {
		n.log.Info("gossip keys changed", zap.String("primary", KeyID(after[0])),
			zap.Strings("keys", keyIDs(after)), zap.Strings("before", keyIDs(before)))
	}
	return nil
}

// applyKeys makes kr hold exactly want, want[0] primary. memberlist's
// RemoveKey shifts the keys after the removed one down in place, in the
// very array that a concurrent decryption may be reading; so keys are only
// ever removed from the end: a key still wanted that sits after one to
// remove is taken off and added back (for those few instructions, a
// packet under it would be dropped, which gossip repairs as any loss).
func applyKeys(kr *memberlist.Keyring, want [][]byte) error {
	for _, k := range want {
		if err := kr.AddKey(k); err != nil {
			return err
		}
	}
	if err := kr.UseKey(want[0]); err != nil {
		return err
	}
	wanted := func(k []byte) bool {
		for _, w := range want {
			if bytes.Equal(w, k) {
				return true
			}
		}
		return false
	}
	cur := cloneKeys(kr.GetKeys())
	first := len(cur) // the first position holding a key to remove
	for i := len(cur) - 1; i >= 1; i-- {
		if !wanted(cur[i]) {
			first = i
		}
	}
	var readd [][]byte
	for i := len(cur) - 1; i >= first; i-- {
		if err := kr.RemoveKey(cur[i]); err != nil {
			return err
		}
		if wanted(cur[i]) {
			readd = append(readd, cur[i])
		}
	}
	for i := len(readd) - 1; i >= 0; i-- {
		if err := kr.AddKey(readd[i]); err != nil {
			return err
		}
	}
	return nil
}

// sameKeys reports whether a and b hold the same keys with the same primary.
func sameKeys(a, b [][]byte) bool {
	if len(a) != len(b) || (len(a) > 0 && !bytes.Equal(a[0], b[0])) {
		return false
	}
	for _, k := range a {
		found := false
		for _, l := range b {
			if bytes.Equal(k, l) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// KeyFile keeps a node's gossip keys in step with a key file (LoadKeyFile):
// keys new in the file are installed, its first key becomes the primary and
// keys gone from it are removed, without a restart. The daemons call Reload
// on SIGHUP and Run it for the periodic check.
type KeyFile struct {
	path string
	node *Node
	log  *zap.Logger

	mu      sync.Mutex
	lastErr string // the last error logged, so a file left broken logs once
}

// NewKeyFile watches path for node. It does no I/O.
func NewKeyFile(path string, node *Node, logger *zap.Logger) *KeyFile {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &KeyFile{path: path, node: node, log: logger.Named("gossip-keys").With(zap.String("file", path))}
}

// Reload reads the file and, when its keys differ from the node's, installs
// them; it reports whether they changed. On an error the keys in use stay.
func (k *KeyFile) Reload() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys, err := LoadKeyFile(k.path)
	if err == nil && !sameKeys(keys, k.node.Keys()) {
		err = k.node.SetKeys(keys)
		if err == nil {
			k.lastErr = ""
			return true, nil
		}
	}
	if err != nil {
		if msg := err.Error(); msg != k.lastErr {
			k.lastErr = msg
			k.log.Error("cannot reload gossip keys; keeping the keys in use", zap.Error(err))
		}
		return false, err
	}
	k.lastErr = ""
	return false, nil
}

// Run reloads the file every interval (KeyFileInterval when 0) until ctx
// ends.
func (k *KeyFile) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = KeyFileInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = k.Reload() // logged by Reload
		}
	}
}
