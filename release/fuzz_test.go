package release

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// unpackSeeds are raw tar streams (not compressed) that FuzzUnpack starts
// from: a valid tree and the shapes of the attacks TestUnpackRefuses lists.
func unpackSeeds(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"valid":          rawTar(t, dirEnt("d/"), reg("d/f", "hello"), symlink("l", "d/f"), reg("x", "")),
		"dotdot":         rawTar(t, reg("../sibling/evil", "x")),
		"absolute":       rawTar(t, reg("/tmp/evil", "x")),
		"symlink out":    rawTar(t, symlink("l", "../sibling"), reg("l/evil", "x")),
		"symlink chain":  rawTar(t, reg("f", "x"), dirEnt("a/"), symlink("a/b", ".."), symlink("a/c", "b/../sibling")),
		"through a link": rawTar(t, dirEnt("a/"), symlink("a/b", ".."), symlink("a/b/c", "../sibling"), reg("a/b/c/evil", "x")),
		"duplicate":      rawTar(t, reg("f", "x"), reg("f", "y")),
		"too large":      rawTar(t, reg("f", strings.Repeat("z", 2<<10))),
	}
}

// FuzzUnpack feeds arbitrary bytes to Unpack, both as they are and compressed
// (so that the tar layer gets fuzzed too, not only the zstd one). Unpack must
// not panic, must not create anything outside its target, and what it
// accepts must hold no symlink that resolves outside the target.
func FuzzUnpack(f *testing.F) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	defer enc.Close()
	for _, raw := range unpackSeeds(f) {
		f.Add(raw)
		f.Add(enc.EncodeAll(raw, nil))
	}
	f.Add([]byte{})
	f.Add([]byte("\x28\xb5\x2f\xfd")) // zstd magic, nothing after
	// What Unpack refuses since issue 13: data after the end-of-archive
	// marker, and a body on a directory (which a tar reader would skip).
	valid := unpackSeeds(f)["valid"]
	f.Add(enc.EncodeAll(append(slices.Clip(valid), make([]byte, 4096)...), nil))
	f.Add(enc.EncodeAll(tarWithBody(f, tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, "body", reg("f", "x")), nil))

	// One scratch dir per worker process, emptied after every input: cheaper
	// than a t.TempDir per input, which matters when the fuzzer minimizes.
	scratch := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, enc.EncodeAll(data, nil)} {
			parent, err := os.MkdirTemp(scratch, "")
			if err != nil {
				t.Fatal(err)
			}
			box := newUnpackBoxIn(t, parent)
			err = Unpack(t.Context(), bytes.NewReader(in), box.out, UnpackOptions{MaxBytes: 1 << 10})
			box.checkContained(t)
			if err == nil {
				checkLinksInside(t, box.out)
			}
			if err := os.RemoveAll(parent); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// checkLinksInside fails if a symlink under dir resolves outside it.
func checkLinksInside(t testing.TB, dir string) {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		to, err := filepath.EvalSymlinks(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // dangling, and the kernel stops there too
		}
		if err != nil {
			return nil // loops and links through files resolve nowhere
		}
		if to != real && !strings.HasPrefix(to, real+string(filepath.Separator)) {
			target, _ := os.Readlink(p)
			t.Errorf("symlink %s -> %q resolves to %s, outside %s", p, target, to, real)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// desiredSeeds are the signed states FuzzVerifyDesired starts from; every
// state the fuzz keys ever sign is among them.
func desiredSeeds(t testing.TB) map[string]SignedDesiredState {
	rel, roll := testKey(1), testKey(2)
	d := testDesired(t, rel)
	noPrev := d
	noPrev.Previous, noPrev.Plan, noPrev.Step, noPrev.Sequence = nil, Plan{}, 0, 1
	return map[string]SignedDesiredState{
		"full":        mustSignDesired(t, d, roll),
		"no previous": mustSignDesired(t, noPrev, roll),
	}
}

// FuzzVerifyDesired decodes arbitrary bytes as a signed desired state and
// verifies it. It must never panic; it must fail against keys pinned under
// the right ids but with the wrong public halves; and when it succeeds, the
// signatures must check out independently of Verify and the payload must be
// one the test keys actually signed.
func FuzzVerifyDesired(f *testing.F) {
	rel, roll := testKey(1), testKey(2)
	trust := Trust{Release: NewKeyring(rel.Public()), Rollout: NewKeyring(roll.Public())}
	impostors := Trust{Release: Keyring{rel.ID(): testKey(3).Public()}, Rollout: Keyring{roll.ID(): testKey(4).Public()}}

	signed := map[string]bool{}
	for name, s := range desiredSeeds(f) {
		if _, err := trust.VerifyDesired(s); err != nil {
			f.Fatalf("seed %s does not verify: %v", name, err)
		}
		signed[string(s.Payload)] = true
		wire, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	d := testDesired(f, rel)
	f.Add(mustJSON(f, d.Target)) // a manifest envelope where a state belongs
	f.Add([]byte(`{"payload":{"app":"web","seq":1},"key":"` + roll.ID() + `","sig":"AAAA"}`))
	f.Add([]byte(`{"payload":null,"key":"","sig":null}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var s SignedDesiredState
		if err := json.Unmarshal(data, &s); err != nil {
			return
		}
		_, _ = s.Unverified()
		if got, err := impostors.VerifyDesired(s); err == nil {
			t.Fatalf("verified against impostor keys: %+v", got)
		}
		got, err := trust.VerifyDesired(s)
		if err != nil {
			return
		}
		if !signed[string(s.Payload)] {
			t.Fatalf("verified a payload the test keys never signed: %s", s.Payload)
		}
		if !ed25519.Verify(trust.Rollout[s.KeyID].key, signedBytes(domainDesired, s.Payload), s.Sig) {
			t.Fatal("Verify accepted a signature that does not verify")
		}
		if b, err := json.Marshal(got); err != nil || !bytes.Equal(b, s.Payload) {
			t.Fatalf("verified state re-encodes as %s, signed %s", b, s.Payload)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("verified state is invalid: %v", err)
		}
		for _, m := range []*SignedManifest{&got.Target, got.Previous} {
			if m == nil {
				continue
			}
			pub, ok := trust.Release[m.KeyID]
			if !ok || !ed25519.Verify(pub.key, signedBytes(domainManifest, m.Payload), m.Sig) {
				t.Fatalf("verified state carries a manifest whose signature does not verify: %s", m.Payload)
			}
		}
		checkVerifiedDesired(t, trust, data, s, got)
	})
}

// checkVerifiedDesired holds what FuzzVerifyDesired checks of a state that
// verified, through the exported API only: Unverified agrees; the manifests
// inside verify on their own and are of the state's app; the same bytes
// never verify as a signed manifest; and any change to the payload bytes
// breaks the signature.
func checkVerifiedDesired(t *testing.T, trust Trust, data []byte, s SignedDesiredState, got DesiredState) {
	t.Helper()
	if u, err := s.Unverified(); err != nil || !bytes.Equal(mustJSON(t, u), mustJSON(t, got)) {
		t.Fatalf("Unverified = %+v, %v; Verify = %+v", u, err, got)
	}
	for _, m := range []*SignedManifest{&got.Target, got.Previous} {
		if m == nil {
			continue
		}
		if mm, err := trust.VerifyManifest(*m); err != nil || mm.App != got.App {
			t.Fatalf("state of app %s carries manifest %+v: %v", got.App, mm, err)
		}
	}
	var asManifest SignedManifest
	if json.Unmarshal(data, &asManifest) == nil {
		if m, err := asManifest.Verify(trust.Rollout); err == nil {
			t.Fatalf("a signed desired state verified as a manifest: %+v", m)
		}
	}
	for _, p := range payloadMutations(s.Payload, len(data)) {
		mut := s
		mut.Payload = p
		if d, err := trust.VerifyDesired(mut); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("payload changed to %q: Verify = %+v, %v; want ErrBadSignature", p, d, err)
		}
	}
}
