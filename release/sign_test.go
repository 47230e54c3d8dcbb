package release

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKey derives a fixed key from one byte, so signatures (ed25519 is
// deterministic) and goldens never change between runs.
func testKey(seed byte) *PrivateKey {
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(s)
	return &PrivateKey{key: priv, id: keyID(priv.Public().(ed25519.PublicKey))}
}

// testManifest is a valid manifest for app, distinguished by version.
func testManifest(app, version string) Manifest {
	return Manifest{
		App:          app,
		Version:      version,
		ReleaseID:    IDOf([]byte(app + "@" + version)),
		BundleSize:   123456,
		UnpackedSize: 654321,
		InfoHash:     "0123456789abcdef0123456789abcdef01234567",
		PieceLength:  256 << 10,
		Created:      time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC),
	}
}

func mustSignManifest(t testing.TB, m Manifest, k *PrivateKey) SignedManifest {
	t.Helper()
	s, err := SignManifest(m, k)
	if err != nil {
		t.Fatalf("SignManifest: %v", err)
	}
	return s
}

func mustSignDesired(t testing.TB, d DesiredState, k *PrivateKey) SignedDesiredState {
	t.Helper()
	s, err := SignDesired(d, k)
	if err != nil {
		t.Fatalf("SignDesired: %v", err)
	}
	return s
}

// testDesired is a valid desired state for "web", its target and previous
// manifests signed by rel.
func testDesired(t testing.TB, rel *PrivateKey) DesiredState {
	t.Helper()
	prev := mustSignManifest(t, testManifest("web", "1.0.0"), rel)
	return DesiredState{
		App:      "web",
		Sequence: 7,
		Target:   mustSignManifest(t, testManifest("web", "1.1.0"), rel),
		Previous: &prev,
		Plan:     Plan{Steps: []Step{{Count: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}}},
		Step:     1,
		Admit:    0.1,
		Issued:   time.Date(2025, 3, 14, 16, 0, 0, 0, time.UTC),
		Expires:  time.Date(2025, 3, 15, 16, 0, 0, 0, time.UTC),
	}
}

func TestManifestSignVerify(t *testing.T) {
	rel, other := testKey(1), testKey(2)
	m := testManifest("web", "1.2.3")
	s := mustSignManifest(t, m, rel)
	if s.KeyID != rel.ID() {
		t.Errorf("KeyID = %q, want %q", s.KeyID, rel.ID())
	}

	got, err := s.Verify(NewKeyring(rel.Public()))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got != m {
		t.Errorf("Verify = %+v, want %+v", got, m)
	}
	if u, err := s.Unverified(); err != nil || u != m {
		t.Errorf("Unverified = %+v, %v", u, err)
	}

	// The envelope survives its own JSON round trip, as gossip and the store do.
	wire, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back SignedManifest
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Verify(NewKeyring(rel.Public())); err != nil {
		t.Errorf("Verify after JSON round trip: %v", err)
	}

	tests := []struct {
		name string
		env  func() Envelope
		ring Keyring
		want error
	}{
		{"unknown key", func() Envelope { return s.Envelope }, NewKeyring(other.Public()), ErrUnknownKey},
		{"empty ring", func() Envelope { return s.Envelope }, nil, ErrUnknownKey},
		{"key id renamed", func() Envelope {
			e := s.Envelope
			e.KeyID = other.ID()
			return e
		}, NewKeyring(rel.Public(), other.Public()), ErrBadSignature},
		{"wrong key under the right id", func() Envelope { return s.Envelope },
			Keyring{rel.ID(): other.Public()}, ErrBadSignature},
		{"flipped sig byte", func() Envelope {
			e := s.Envelope
			e.Sig = bytes.Clone(e.Sig)
			e.Sig[10] ^= 1
			return e
		}, NewKeyring(rel.Public()), ErrBadSignature},
		{"short sig", func() Envelope {
			e := s.Envelope
			e.Sig = e.Sig[:len(e.Sig)-1]
			return e
		}, NewKeyring(rel.Public()), ErrBadSignature},
		{"no sig", func() Envelope {
			e := s.Envelope
			e.Sig = nil
			return e
		}, NewKeyring(rel.Public()), ErrBadSignature},
		{"re-indented payload signed again", func() Envelope {
			var buf bytes.Buffer
			if err := json.Indent(&buf, s.Payload, "", "  "); err != nil {
				t.Fatal(err)
			}
			return rawEnvelope(domainManifest, buf.Bytes(), rel)
		}, NewKeyring(rel.Public()), ErrBadSignature},
		{"reordered fields signed again", func() Envelope {
			var fields map[string]any
			if err := json.Unmarshal(s.Payload, &fields); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(fields) // map keys come out sorted, unlike struct fields
			return rawEnvelope(domainManifest, b, rel)
		}, NewKeyring(rel.Public()), ErrBadSignature},
		{"unknown field signed again", func() Envelope {
			b := append(bytes.TrimSuffix(bytes.Clone(s.Payload), []byte("}")), `,"extra":1}`...)
			return rawEnvelope(domainManifest, b, rel)
		}, NewKeyring(rel.Public()), ErrBadSignature},
		{"invalid manifest signed", func() Envelope {
			bad := m
			bad.App = "Web"
			b, _ := json.Marshal(bad)
			return rawEnvelope(domainManifest, b, rel)
		}, NewKeyring(rel.Public()), ErrInvalid},
		{"not json, signed", func() Envelope {
			return rawEnvelope(domainManifest, []byte("not json"), rel)
		}, NewKeyring(rel.Public()), errAny},
		{"desired-state domain", func() Envelope {
			return rawEnvelope(domainDesired, s.Payload, rel)
		}, NewKeyring(rel.Public()), ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SignedManifest{Envelope: tt.env()}.Verify(tt.ring)
			checkErr(t, err, tt.want)
		})
	}

	t.Run("every flipped payload byte", func(t *testing.T) {
		ring := NewKeyring(rel.Public())
		for i := range s.Payload {
			e := s.Envelope
			e.Payload = bytes.Clone(e.Payload)
			e.Payload[i] ^= 0x20
			if _, err := (SignedManifest{Envelope: e}).Verify(ring); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("payload byte %d flipped: err = %v, want ErrBadSignature", i, err)
			}
		}
	})
}

// rawEnvelope signs payload as is, to build envelopes SignManifest never would.
func rawEnvelope(domain string, payload []byte, k *PrivateKey) Envelope {
	return Envelope{Payload: payload, KeyID: k.ID(), Sig: ed25519.Sign(k.key, signedBytes(domain, payload))}
}

func TestSignRefusesInvalid(t *testing.T) {
	k := testKey(1)
	m := testManifest("web", "1.0.0")
	m.PieceLength = 3
	if _, err := SignManifest(m, k); !errors.Is(err, ErrInvalid) {
		t.Errorf("SignManifest(invalid) = %v, want ErrInvalid", err)
	}
	d := testDesired(t, k)
	d.Sequence = 0
	if _, err := SignDesired(d, k); !errors.Is(err, ErrInvalid) {
		t.Errorf("SignDesired(invalid) = %v, want ErrInvalid", err)
	}
}

func TestDesiredSignVerify(t *testing.T) {
	rel, roll, stranger := testKey(1), testKey(2), testKey(3)
	ring := Trust{Release: NewKeyring(rel.Public()), Rollout: NewKeyring(roll.Public())}
	d := testDesired(t, rel)
	s := mustSignDesired(t, d, roll)

	got, err := ring.VerifyDesired(s)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want, _ := json.Marshal(d)
	if b, _ := json.Marshal(got); !bytes.Equal(b, want) {
		t.Errorf("Verify = %s, want %s", b, want)
	}
	if u, err := s.Unverified(); err != nil || u.Sequence != d.Sequence {
		t.Errorf("Unverified = %+v, %v", u, err)
	}

	tests := []struct {
		name   string
		signed func(t *testing.T) SignedDesiredState
		ring   Trust
		want   error
	}{
		{"rollout key unknown", func(*testing.T) SignedDesiredState { return s }, Trust{Release: ring.Release, Rollout: NewKeyring(stranger.Public())}, ErrUnknownKey},
		{"state signed by a release key", func(t *testing.T) SignedDesiredState { return mustSignDesired(t, d, rel) }, ring, ErrUnknownKey},
		{"target signed only by the rollout key", func(t *testing.T) SignedDesiredState {
			d := d
			d.Target = mustSignManifest(t, testManifest("web", "6.6.6"), roll)
			return mustSignDesired(t, d, roll)
		}, ring, ErrUnknownKey},
		{"target below the threshold", func(*testing.T) SignedDesiredState { return s }, Trust{Release: NewKeyring(rel.Public(), stranger.Public()), Rollout: ring.Rollout, ReleaseThreshold: 2}, ErrTooFewSignatures},
		{"manifest signature replayed as a desired state", func(t *testing.T) SignedDesiredState {
			// A manifest envelope whose payload also decodes as a desired
			// state: only the domain keeps it from verifying.
			return SignedDesiredState{rawEnvelope(domainManifest, s.Payload, roll)}
		}, ring, ErrBadSignature},
		{"manifest envelope as desired state", func(*testing.T) SignedDesiredState {
			return SignedDesiredState{d.Target.Envelope} // signed by a release key
		}, ring, ErrUnknownKey},
		{"manifest envelope as desired state, one ring", func(*testing.T) SignedDesiredState {
			return SignedDesiredState{d.Target.Envelope}
		}, Trust{Release: ring.Release, Rollout: NewKeyring(rel.Public())}, ErrBadSignature},
		{"target signed by an untrusted key", func(t *testing.T) SignedDesiredState {
			d := d
			d.Target = mustSignManifest(t, testManifest("web", "6.6.6"), stranger)
			return mustSignDesired(t, d, roll)
		}, ring, ErrUnknownKey},
		{"previous signed by an untrusted key", func(t *testing.T) SignedDesiredState {
			d := d
			prev := mustSignManifest(t, testManifest("web", "0.9"), stranger)
			d.Previous = &prev
			return mustSignDesired(t, d, roll)
		}, ring, ErrUnknownKey},
		{"target tampered, state re-signed", func(t *testing.T) SignedDesiredState {
			d := d
			m := testManifest("web", "6.6.6")
			b, _ := json.Marshal(m)
			d.Target = SignedManifest{Envelope: Envelope{Payload: b, KeyID: rel.ID(), Sig: d.Target.Sig}}
			return mustSignDesired(t, d, roll)
		}, ring, ErrBadSignature},
		{"target of another app", func(t *testing.T) SignedDesiredState {
			d := d
			d.Target = mustSignManifest(t, testManifest("billing", "1.1.0"), rel)
			return mustSignDesired(t, d, roll)
		}, ring, ErrInvalid},
		{"previous of another app", func(t *testing.T) SignedDesiredState {
			d := d
			prev := mustSignManifest(t, testManifest("billing", "1.0.0"), rel)
			d.Previous = &prev
			return mustSignDesired(t, d, roll)
		}, ring, ErrInvalid},
		{"empty target", func(t *testing.T) SignedDesiredState {
			d := d
			d.Target = SignedManifest{}
			return SignedDesiredState{rawEnvelope(domainDesired, mustJSON(t, d), roll)}
		}, ring, ErrUnknownKey},
		{"invalid state signed", func(t *testing.T) SignedDesiredState {
			d := d
			d.Step = 9
			return SignedDesiredState{rawEnvelope(domainDesired, mustJSON(t, d), roll)}
		}, ring, ErrInvalid},
		{"re-indented payload signed again", func(t *testing.T) SignedDesiredState {
			var buf bytes.Buffer
			if err := json.Indent(&buf, s.Payload, "", "\t"); err != nil {
				t.Fatal(err)
			}
			return SignedDesiredState{rawEnvelope(domainDesired, buf.Bytes(), roll)}
		}, ring, ErrBadSignature},
		{"flipped sig byte", func(*testing.T) SignedDesiredState {
			e := s.Envelope
			e.Sig = bytes.Clone(e.Sig)
			e.Sig[0] ^= 0x80
			return SignedDesiredState{e}
		}, ring, ErrBadSignature},
		{"zero envelope", func(*testing.T) SignedDesiredState { return SignedDesiredState{} }, ring, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ring.VerifyDesired(tt.signed(t))
			checkErr(t, err, tt.want)
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyPEMRoundTrip(t *testing.T) {
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.ID()) != 16 || k.ID() != k.Public().ID() {
		t.Errorf("ids %q and %q: want the same 16 hex digits", k.ID(), k.Public().ID())
	}
	privPEM, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := k.Public().MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatalf("ParsePrivateKeyPEM: %v", err)
	}
	pub2, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatalf("ParsePublicKeyPEM: %v", err)
	}
	if k2.ID() != k.ID() || pub2.ID() != k.ID() || !k2.key.Equal(k.key) || !pub2.key.Equal(k.Public().key) {
		t.Error("keys differ after a PEM round trip")
	}
	// What the parsed private key signs, the parsed public key verifies.
	s := mustSignManifest(t, testManifest("web", "1"), k2)
	if _, err := s.Verify(NewKeyring(pub2)); err != nil {
		t.Errorf("Verify with parsed keys: %v", err)
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPriv, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }

	bad := []struct {
		name string
		in   []byte
		priv bool
	}{
		{"private: empty", nil, true},
		{"private: garbage", []byte("not a key"), true},
		{"private: public block", pubPEM, true},
		{"private: bad der", pemOf("PRIVATE KEY", []byte{1, 2, 3}), true},
		{"private: ecdsa", pemOf("PRIVATE KEY", ecPriv), true},
		{"public: empty", nil, false},
		{"public: private block", privPEM, false},
		{"public: bad der", pemOf("PUBLIC KEY", []byte{1, 2, 3}), false},
		{"public: ecdsa", pemOf("PUBLIC KEY", ecPub), false},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.priv {
				_, err = ParsePrivateKeyPEM(tt.in)
			} else {
				_, err = ParsePublicKeyPEM(tt.in)
			}
			checkErr(t, err, ErrKeyFile)
		})
	}
}

func TestWriteKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k := testKey(5)
	privPath, pubPath, err := WriteKeyPair(dir, RoleRelease, k)
	if err != nil {
		t.Fatalf("WriteKeyPair: %v", err)
	}
	if privPath != filepath.Join(dir, "release.key") || pubPath != filepath.Join(dir, "release.pub") {
		t.Errorf("paths %s, %s", privPath, pubPath)
	}
	for path, want := range map[string]fs.FileMode{privPath: 0o600, pubPath: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
	if loaded, err := LoadPrivateKey(privPath); err != nil || loaded.ID() != k.ID() {
		t.Errorf("LoadPrivateKey: %v; want key %s", err, k.ID())
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil || pub.ID() != k.ID() {
		t.Errorf("LoadPublicKey = %v, %v; want key %s", pub, err, k.ID())
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		before, _ := os.ReadFile(privPath)
		_, _, err := WriteKeyPair(dir, RoleRelease, testKey(6))
		checkErr(t, err, ErrKeyFile)
		if after, _ := os.ReadFile(privPath); !bytes.Equal(before, after) {
			t.Error("existing private key was changed")
		}
	})
	t.Run("refuses when only the public key exists", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "release.pub"), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := WriteKeyPair(dir, RoleRelease, testKey(6))
		checkErr(t, err, ErrKeyFile)
		if _, err := os.Lstat(filepath.Join(dir, "release.key")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("private key written although the pair was refused: %v", err)
		}
	})
}

func TestLoadPrivateKey(t *testing.T) {
	privPEM, err := testKey(7).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte // nil: no file
		mode    fs.FileMode
		wantMsg string // "" means success
	}{
		{"0600", privPEM, 0o600, ""},
		{"0400", privPEM, 0o400, ""},
		{"0640", privPEM, 0o640, "chmod 600"},
		{"0604", privPEM, 0o604, "chmod 600"},
		{"0644", privPEM, 0o644, "chmod 600"},
		{"0660", privPEM, 0o660, "chmod 600"},
		{"0601", privPEM, 0o601, "chmod 600"},
		{"missing", nil, 0, "swarm keygen"},
		{"not a key", []byte("hello"), 0o600, "PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "swarm.key")
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			k, err := LoadPrivateKey(path)
			if tt.wantMsg == "" {
				if err != nil || k.ID() != testKey(7).ID() {
					t.Fatalf("LoadPrivateKey: %v; want key %s", err, testKey(7).ID())
				}
				return
			}
			if !errors.Is(err, ErrKeyFile) {
				t.Fatalf("err = %v, want ErrKeyFile", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestLoadPublicKeyMissing(t *testing.T) {
	_, err := LoadPublicKey(filepath.Join(t.TempDir(), "swarm.pub"))
	if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "swarm.pub") {
		t.Errorf("err = %v, want ErrKeyFile naming swarm.pub", err)
	}
}
