package release

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrustValidate(t *testing.T) {
	r1, r2, roll := testKey(1), testKey(2), testKey(3)
	tests := []struct {
		name  string
		trust Trust
		want  string // substring of the error; "" = valid
	}{
		{"one of each", Trust{Release: NewKeyring(r1.Public()), Rollout: NewKeyring(roll.Public())}, ""},
		{"2 of 2", Trust{Release: NewKeyring(r1.Public(), r2.Public()), Rollout: NewKeyring(roll.Public()), ReleaseThreshold: 2}, ""},
		{"no release key", Trust{Rollout: NewKeyring(roll.Public())}, "--trust-release"},
		{"no rollout key", Trust{Release: NewKeyring(r1.Public())}, "--trust-rollout"},
		{"key in both roles", Trust{Release: NewKeyring(r1.Public(), roll.Public()), Rollout: NewKeyring(roll.Public())}, "both as a release key and as a rollout key"},
		{"threshold above keys", Trust{Release: NewKeyring(r1.Public()), Rollout: NewKeyring(roll.Public()), ReleaseThreshold: 2}, "cannot be met"},
		{"negative threshold", Trust{Release: NewKeyring(r1.Public()), Rollout: NewKeyring(roll.Public()), ReleaseThreshold: -1}, "cannot be met"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.trust.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error saying %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// TestManifestThreshold: k of n release signatures, counted per distinct
// trusted key; a bad signature by a trusted key fails the manifest, one by
// an unknown key is skipped.
func TestManifestThreshold(t *testing.T) {
	r1, r2, r3, roll, stranger := testKey(1), testKey(2), testKey(3), testKey(4), testKey(5)
	trust := Trust{Release: NewKeyring(r1.Public(), r2.Public(), r3.Public()), Rollout: NewKeyring(roll.Public()), ReleaseThreshold: 2}
	m := testManifest("web", "2.0.0")
	one := mustSignManifest(t, m, r1)
	cosign := func(t *testing.T, sm SignedManifest, k *PrivateKey) SignedManifest {
		t.Helper()
		sig, err := sm.Sign(k)
		if err != nil {
			t.Fatal(err)
		}
		out, err := sm.AddSignature(sig)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	two := cosign(t, one, r2)

	if _, n, err := trust.CountManifest(one); !errors.Is(err, ErrTooFewSignatures) || n != 1 {
		t.Errorf("one signature: n=%d err=%v, want 1 and ErrTooFewSignatures", n, err)
	}
	if got, err := trust.VerifyManifest(two); err != nil || got.Version != "2.0.0" {
		t.Errorf("two signatures: %v, %v", got, err)
	}
	// The single-signature form is unchanged on the wire: old files parse.
	if b := mustJSON(t, one); strings.Contains(string(b), "sigs") {
		t.Errorf("one signature encodes with a sigs field: %s", b)
	}
	var back SignedManifest
	if err := json.Unmarshal(mustJSON(t, two), &back); err != nil || len(back.Signatures()) != 2 {
		t.Fatalf("round trip: %v, %d signatures", err, len(back.Signatures()))
	}
	if _, err := trust.VerifyManifest(back); err != nil {
		t.Errorf("round trip does not verify: %v", err)
	}

	tests := []struct {
		name string
		sm   func(t *testing.T) SignedManifest
		want error
	}{
		{"stranger does not count", func(t *testing.T) SignedManifest { return cosign(t, one, stranger) }, ErrTooFewSignatures},
		{"rollout key does not count", func(t *testing.T) SignedManifest { return cosign(t, one, roll) }, ErrTooFewSignatures},
		{"only the rollout key", func(t *testing.T) SignedManifest { return mustSignManifest(t, m, roll) }, ErrUnknownKey},
		{"bad signature by a trusted key", func(t *testing.T) SignedManifest {
			sm := two
			sm.More = []Signature{{KeyID: r2.ID(), Sig: append([]byte(nil), one.Sig...)}}
			return sm
		}, ErrBadSignature},
		{"same key twice", func(t *testing.T) SignedManifest {
			sm := one
			sm.More = []Signature{{KeyID: r1.ID(), Sig: one.Sig}}
			return sm
		}, ErrInvalid},
		{"too many signatures", func(t *testing.T) SignedManifest {
			sm := two
			for i := range MaxSignatures {
				sm.More = append(sm.More, Signature{KeyID: strings.Repeat("0", 15) + string(rune('a'+i%6)) + string(rune('0'+i)), Sig: []byte{1}})
			}
			return sm
		}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := trust.VerifyManifest(tt.sm(t))
			checkErr(t, err, tt.want)
		})
	}

	t.Run("add refuses a key that signed", func(t *testing.T) {
		sig, _ := two.Sign(r2)
		if _, err := two.AddSignature(sig); !errors.Is(err, ErrAlreadySigned) {
			t.Errorf("AddSignature = %v, want ErrAlreadySigned", err)
		}
	})
}

func TestCheckSequence(t *testing.T) {
	tests := []struct {
		held, seq uint64
		ok        bool
	}{
		{0, 1, true},
		{0, MaxSequenceJump, true},
		{0, MaxSequenceJump + 1, false},
		{5, 5 + MaxSequenceJump, true},
		{5, 6 + MaxSequenceJump, false},
		{0, math.MaxUint64, false},
		{math.MaxUint64 - 1, math.MaxUint64, true},
		{10, 3, true}, // stale, refused elsewhere
	}
	for _, tt := range tests {
		err := CheckSequence(tt.held, tt.seq)
		if (err == nil) != tt.ok {
			t.Errorf("CheckSequence(%d, %d) = %v, want ok=%v", tt.held, tt.seq, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckSequence error %v is not ErrInvalid", err)
		}
	}
}

func TestWriteKeyPairRoles(t *testing.T) {
	dir := t.TempDir()
	for _, role := range []Role{RoleRelease, RoleRollout} {
		priv, pub, err := WriteKeyPair(dir, role, testKey(9))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if filepath.Base(priv) != string(role)+".key" || filepath.Base(pub) != string(role)+".pub" {
			t.Errorf("%s: files %s, %s", role, priv, pub)
		}
	}
	if _, _, err := WriteKeyPair(dir, "swarm", testKey(9)); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown role: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "swarm.key")); err == nil {
		t.Error("a key was written for an unknown role")
	}
}
