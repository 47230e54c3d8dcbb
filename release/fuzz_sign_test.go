package release

import (
	"bytes"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/internal/fuzzcorpus"
)

// These targets use only the exported API (GenerateKey, SignManifest, Verify,
// Unverified, the PEM functions and the JSON encoding of the envelope), so
// that they check what callers rely on whatever the envelope looks like
// inside.

// fuzzKey is a deterministic key: GenerateKey reads its seed from rand.
func fuzzKey(t testing.TB, seed byte) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fuzzRings are the keyring the fuzz targets trust (keys 1 and 2) and one
// that pins other keys under the same ids: a signature that verifies against
// both is no signature at all.
func fuzzRings(t testing.TB) (ring, impostors Keyring) {
	rel, roll := fuzzKey(t, 1), fuzzKey(t, 2)
	ring = NewKeyring(rel.Public(), roll.Public())
	impostors = Keyring{rel.ID(): fuzzKey(t, 3).Public(), roll.ID(): fuzzKey(t, 4).Public()}
	return ring, impostors
}

// fuzzSignedManifests are every manifest FuzzVerifyManifest's keys sign,
// with the key that signs each: nothing else may ever verify.
func fuzzSignedManifests(t testing.TB) map[string]SignedManifest {
	rel, roll := fuzzKey(t, 1), fuzzKey(t, 2)
	odd := testManifest("db", "2.0.0-rc.1+build.5")
	odd.UnpackedSize, odd.PieceLength = 0, 16<<20
	return map[string]SignedManifest{
		"signed-web":             mustSignManifest(t, testManifest("web", "1.1.0"), rel),
		"signed-db-by-other-key": mustSignManifest(t, odd, roll),
	}
}

func verifyManifestSeeds(t testing.TB) []fuzzcorpus.Seed {
	signed := fuzzSignedManifests(t)
	var seeds []fuzzcorpus.Seed
	for _, name := range []string{"signed-web", "signed-db-by-other-key"} {
		seeds = append(seeds, fuzzcorpus.Seed{Name: name, Args: []any{mustJSON(t, signed[name])}})
	}
	web := mustJSON(t, signed["signed-web"])
	var indented bytes.Buffer
	if err := json.Indent(&indented, web, "", "\t"); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds,
		fuzzcorpus.Seed{Name: "indented-envelope", Args: []any{indented.Bytes()}},
		fuzzcorpus.Seed{Name: "payload-not-object", Args: []any{[]byte(`{"payload":"web","key":"","sig":""}`)}},
		fuzzcorpus.Seed{Name: "nulls", Args: []any{[]byte(`{"payload":null,"key":null,"sig":null}`)}},
		fuzzcorpus.Seed{Name: "desired-state-shape", Args: []any{[]byte(`{"payload":{"app":"web","seq":1,"target":{}},"key":"00","sig":"AAAA"}`)}},
		fuzzcorpus.Seed{Name: "empty", Args: []any{[]byte{}}},
	)
	return seeds
}

// FuzzVerifyManifest decodes arbitrary bytes as a signed manifest, as the
// seeder does with a publish request and nodes do with what gossip carries.
// It must never verify against impostor keys. What verifies against the
// test keyring must be a manifest the test keys signed, valid, carried in
// its canonical encoding, the same as Unverified says, still verifying after
// a JSON round trip of the envelope, and never also a desired state; and
// any change to its payload bytes must break the signature.
func FuzzVerifyManifest(f *testing.F) {
	ring, impostors := fuzzRings(f)
	signed := map[string]bool{}
	for name, s := range fuzzSignedManifests(f) {
		m, err := s.Verify(ring)
		if err != nil {
			f.Fatalf("seed %s does not verify: %v", name, err)
		}
		signed[string(mustJSON(f, m))] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s SignedManifest
		if err := json.Unmarshal(data, &s); err != nil {
			return
		}
		if m, err := s.Verify(impostors); err == nil {
			t.Fatalf("verified against impostor keys: %+v", m)
		}
		um, uerr := s.Unverified()
		m, err := s.Verify(ring)
		if err != nil {
			return
		}
		canon := mustJSON(t, m)
		if !signed[string(canon)] {
			t.Fatalf("verified a manifest the test keys never signed: %s", canon)
		}
		if !bytes.Equal(canon, s.Payload) {
			t.Fatalf("verified payload %s is not the canonical %s", s.Payload, canon)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("verified manifest is invalid: %v", err)
		}
		if uerr != nil || !bytes.Equal(mustJSON(t, um), canon) {
			t.Fatalf("Unverified = %+v, %v; Verify = %+v", um, uerr, m)
		}
		var back SignedManifest
		if err := json.Unmarshal(mustJSON(t, s), &back); err != nil {
			t.Fatalf("envelope does not decode after its own encoding: %v", err)
		}
		if bm, err := back.Verify(ring); err != nil || !bytes.Equal(mustJSON(t, bm), canon) {
			t.Fatalf("envelope after a JSON round trip: %+v, %v", bm, err)
		}
		var asDesired SignedDesiredState
		if json.Unmarshal(data, &asDesired) == nil {
			if d, err := (Trust{Release: ring, Rollout: ring}).VerifyDesired(asDesired); err == nil {
				t.Fatalf("a signed manifest verified as a desired state: %+v", d)
			}
		}
		for _, p := range payloadMutations(s.Payload, len(data)) {
			mut := s
			mut.Payload = p
			if mm, err := mut.Verify(ring); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("payload changed to %q: Verify = %+v, %v; want ErrBadSignature", p, mm, err)
			}
		}
	})
}

// payloadMutations are changed copies of a signed payload: one byte flipped
// (where depends on at), one dropped, one added, and the same JSON
// re-indented (equal in meaning, but not the bytes that were signed).
func payloadMutations(p []byte, at int) [][]byte {
	if len(p) == 0 {
		return nil
	}
	i := at % len(p)
	flipped := bytes.Clone(p)
	flipped[i] ^= 0x01
	dropped := append(bytes.Clone(p[:i]), p[i+1:]...)
	added := append(bytes.Clone(p), ' ')
	out := [][]byte{flipped, dropped, added}
	var ind bytes.Buffer
	if json.Indent(&ind, p, "", " ") == nil && !bytes.Equal(ind.Bytes(), p) {
		out = append(out, ind.Bytes())
	}
	return out
}

func signManifestSeeds(t testing.TB) []fuzzcorpus.Seed {
	zoned := testManifest("web", "1.1.0")
	zoned.Created = zoned.Created.In(time.FixedZone("", 5*3600+30*60))
	seeds := []fuzzcorpus.Seed{
		{Name: "valid", Args: []any{mustJSON(t, testManifest("web", "1.1.0"))}},
		{Name: "valid-zoned-time", Args: []any{mustJSON(t, zoned)}},
		{Name: "time-non-canonical", Args: []any{[]byte(`{"app":"web","version":"1","release_id":"sha256:80f55e4e53a3e3ff115b16235aedfcf60910b6a80d6e08e717d0566ee27643b2","bundle_size":1,"unpacked_size":0,"infohash":"0123456789abcdef0123456789abcdef01234567","piece_length":1,"created":"2025-03-14T15:09:26.500000000+00:00"}`)}},
		{Name: "upper-case-id", Args: []any{[]byte(`{"app":"web","version":"1","release_id":"sha256:80F55E4E53A3E3FF115B16235AEDFCF60910B6A80D6E08E717D0566EE27643B2","bundle_size":1,"infohash":"0123456789abcdef0123456789abcdef01234567","piece_length":1}`)}},
		{Name: "negative-sizes", Args: []any{[]byte(`{"app":"web","version":"1","bundle_size":-1,"unpacked_size":-1,"piece_length":-9223372036854775808}`)}},
		{Name: "path-in-version", Args: []any{[]byte(`{"app":"web","version":"../../etc","release_id":"sha256:80f55e4e53a3e3ff115b16235aedfcf60910b6a80d6e08e717d0566ee27643b2"}`)}},
		{Name: "not-an-object", Args: []any{[]byte(`[1,2,3]`)}},
	}
	return seeds
}

// FuzzSignManifest decodes arbitrary bytes as a manifest, as `swarm publish`
// builds one, and signs it. Exactly the manifests Validate accepts can be
// signed; what is signed verifies with the signing key, to the same
// manifest, and with no other key.
func FuzzSignManifest(f *testing.F) {
	rel, other := fuzzKey(f, 1), fuzzKey(f, 2)
	ring, _ := fuzzRings(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return
		}
		s, err := SignManifest(m, rel)
		if verr := m.Validate(); (err == nil) != (verr == nil) {
			t.Fatalf("SignManifest = %v but Validate = %v", err, verr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
			return
		}
		got, err := s.Verify(ring)
		if err != nil {
			t.Fatalf("a signed manifest does not verify: %v", err)
		}
		if want := mustJSON(t, m); !bytes.Equal(mustJSON(t, got), want) {
			t.Fatalf("verified %+v, signed %+v", got, m)
		}
		if _, err := s.Verify(NewKeyring(other.Public())); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("verified against a ring without the signing key: %v", err)
		}
	})
}

var keyIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func keySeeds(t testing.TB) []fuzzcorpus.Seed {
	k := fuzzKey(t, 1)
	priv, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.Public().MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	// An X25519 key: right algorithm family, wrong use; PKCS #8 and PKIX
	// both encode it.
	xk, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	xpriv, err := x509.MarshalPKCS8PrivateKey(xk)
	if err != nil {
		t.Fatal(err)
	}
	xpub, err := x509.MarshalPKIXPublicKey(xk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(priv)
	return []fuzzcorpus.Seed{
		{Name: "private", Args: []any{priv}},
		{Name: "public", Args: []any{pub}},
		{Name: "both", Args: []any{append(append([]byte(nil), pub...), priv...)}},
		{Name: "x25519-private", Args: []any{pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: xpriv})}},
		{Name: "x25519-public", Args: []any{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: xpub})}},
		{Name: "wrong-type", Args: []any{pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: blk.Bytes})}},
		{Name: "headers", Args: []any{pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: blk.Bytes})}},
		{Name: "truncated", Args: []any{priv[:len(priv)/2]}},
		{Name: "der-not-pem", Args: []any{blk.Bytes}},
	}
}

// FuzzParseKeyPEM parses arbitrary bytes as both kinds of key file. Errors
// wrap ErrKeyFile; no file is both kinds; a parsed key has a 16-hex-digit
// id that survives re-encoding; a private key's public half has its id,
// and what it signs verifies against that public half once it is encoded
// and parsed again.
func FuzzParseKeyPEM(f *testing.F) {
	m := testManifest("web", "1.1.0")
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, perr := ParsePublicKeyPEM(data)
		k, kerr := ParsePrivateKeyPEM(data)
		for _, err := range []error{perr, kerr} {
			if err != nil && !errors.Is(err, ErrKeyFile) {
				t.Fatalf("error without ErrKeyFile: %v", err)
			}
		}
		if perr == nil && kerr == nil {
			t.Fatal("parsed as both a public and a private key")
		}
		if perr == nil {
			if !keyIDRE.MatchString(pub.ID()) {
				t.Fatalf("public key id %q", pub.ID())
			}
			again := reparsePublic(t, pub)
			if again.ID() != pub.ID() {
				t.Fatalf("public key id %s after a PEM round trip, was %s", again.ID(), pub.ID())
			}
		}
		if kerr != nil {
			return
		}
		if !keyIDRE.MatchString(k.ID()) || k.Public().ID() != k.ID() {
			t.Fatalf("private key id %q, its public half's %q", k.ID(), k.Public().ID())
		}
		b, err := k.MarshalPEM()
		if err != nil {
			t.Fatalf("parsed private key does not encode: %v", err)
		}
		k2, err := ParsePrivateKeyPEM(b)
		if err != nil || k2.ID() != k.ID() {
			t.Fatalf("private key after a PEM round trip: %v", err)
		}
		s, err := SignManifest(m, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(NewKeyring(reparsePublic(t, k.Public()))); err != nil {
			t.Fatalf("what a parsed key signs does not verify against its public key file: %v", err)
		}
	})
}

func reparsePublic(t *testing.T, p PublicKey) PublicKey {
	t.Helper()
	b, err := p.MarshalPEM()
	if err != nil {
		t.Fatalf("parsed public key does not encode: %v", err)
	}
	again, err := ParsePublicKeyPEM(b)
	if err != nil {
		t.Fatalf("encoded public key does not parse: %v", err)
	}
	return again
}

// TestFuzzCorpus checks the seed corpora of this file's and fuzz_plan_test.go's
// targets against the seeds listed here (SWARM_UPDATE_FUZZ_CORPUS=1 rewrites
// them).
func TestFuzzCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzVerifyManifest", verifyManifestSeeds(t))
	fuzzcorpus.Check(t, "FuzzSignManifest", signManifestSeeds(t))
	fuzzcorpus.Check(t, "FuzzParseKeyPEM", keySeeds(t))
	fuzzcorpus.Check(t, "FuzzParseSteps", stringSeeds(stepsSeeds))
	fuzzcorpus.Check(t, "FuzzParseBudget", stringSeeds(budgetSeeds))
}
