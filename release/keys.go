package release

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/swarmdeploy/swarm/internal/secretfile"
)

// ErrKeyFile reports a key file that is missing, malformed or too open.
var ErrKeyFile = errors.New("key file")

// PrivateKey is an ed25519 signing key.
type PrivateKey struct {
	key ed25519.PrivateKey
	id  string
}

// PublicKey is an ed25519 verification key.
type PublicKey struct {
	key ed25519.PublicKey
	id  string
}

// GenerateKey makes a new key from rand (crypto/rand.Reader in production).
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return &PrivateKey{key: priv, id: keyID(pub)}, nil
}

// ID names the key: 16 hex digits of its public key's sha256.
func (k *PrivateKey) ID() string { return k.id }

// Public is the key's public half.
func (k *PrivateKey) Public() PublicKey {
	pub := k.key.Public().(ed25519.PublicKey)
	return PublicKey{key: pub, id: k.id}
}

// ID names the key: 16 hex digits of its sha256.
func (p PublicKey) ID() string { return p.id }

// MarshalPEM encodes the private key as a PKCS #8 PEM block.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPEM encodes the public key as a PKIX PEM block.
func (p PublicKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(p.key)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS #8 PEM ed25519 key.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: no PEM \"PRIVATE KEY\" block", ErrKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an ed25519 key", ErrKeyFile)
	}
	return &PrivateKey{key: priv, id: keyID(priv.Public().(ed25519.PublicKey))}, nil
}

// ParsePublicKeyPEM decodes a PKIX PEM ed25519 public key.
func ParsePublicKeyPEM(b []byte) (PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return PublicKey{}, fmt.Errorf("%w: no PEM \"PUBLIC KEY\" block", ErrKeyFile)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: not an ed25519 key", ErrKeyFile)
	}
	return PublicKey{key: pub, id: keyID(pub)}, nil
}

// Keyring is the set of pinned public keys a node trusts, by key id.
type Keyring map[string]PublicKey

// NewKeyring pins the given keys.
func NewKeyring(keys ...PublicKey) Keyring {
	r := make(Keyring, len(keys))
	for _, k := range keys {
		r[k.id] = k
	}
	return r
}

// Role is what a key signs. A key has one role; Trust refuses a key pinned
// in both.
type Role string

// Key roles.
const (
	// RoleRelease keys sign manifests: release engineers and CI hold them
	// (swarm publish --key, swarm sign --key).
	RoleRelease Role = "release"
	// RoleRollout keys sign desired states: the seeder holds one (--key).
	RoleRollout Role = "rollout"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRelease, RoleRollout:
		return r, nil
	}
	return "", fmt.Errorf("%w key role %q: use %q (signs manifests) or %q (the seeder's key, signs desired states)", ErrInvalid, s, RoleRelease, RoleRollout)
}

// KeyFiles are the file names WriteKeyPair uses for a key of role:
// "<role>.key" and "<role>.pub".
func KeyFiles(role Role) (private, public string) {
	return string(role) + ".key", string(role) + ".pub"
}

// WriteKeyPair writes k to dir/<role>.key (mode 0600) and its public half
// to dir/<role>.pub (0644). It refuses to overwrite an existing key.
func WriteKeyPair(dir string, role Role, k *PrivateKey) (privPath, pubPath string, err error) {
	if _, err := ParseRole(string(role)); err != nil {
		return "", "", err
	}
	privPEM, err := k.MarshalPEM()
	if err != nil {
		return "", "", err
	}
	pubPEM, err := k.Public().MarshalPEM()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create key dir: %w", err)
	}
	privName, pubName := KeyFiles(role)
	privPath, pubPath = filepath.Join(dir, privName), filepath.Join(dir, pubName)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%w %s already exists; remove it or choose another --out", ErrKeyFile, p)
		}
	}
	if err := writeNew(privPath, privPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(privPath)
		return "", "", err
	}
	return privPath, pubPath, nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// LoadPrivateKey reads a private key file. It refuses a file that group or
// others can read or write, as ssh does: a signing key that leaked is a fleet
// that can be made to run anything.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	b, err := secretfile.Read(path, "create one with 'swarm keygen --role release|rollout --out DIR'")
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrKeyFile, err)
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKey reads a public key file.
func LoadPublicKey(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return PublicKey{}, fmt.Errorf("%w %s does not exist; copy the public key (release.pub or rollout.pub, from 'swarm keygen') here", ErrKeyFile, path)
		}
		return PublicKey{}, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	k, err := ParsePublicKeyPEM(b)
	if err != nil {
		return PublicKey{}, fmt.Errorf("read %s: %w", path, err)
	}
	return k, nil
}
