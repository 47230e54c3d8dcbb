package seeder

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

// TestRestartWithOtherKeysThenBack is issue 14's seeder restart: started
// with keys A, it publishes; restarted with keys B, it publishes again;
// restarted with keys A it used to refuse to start ("store: release …:
// signed by an untrusted key") until the store was edited by hand. It now
// starts, leaves what it cannot verify on disk unserved, and its next
// publish supersedes the desired state B signed.
func TestRestartWithOtherKeysThenBack(t *testing.T) {
	tests := []struct {
		name string
		// alsoA: the seeder with keys B pins A's release key too.
		alsoA bool
	}{
		{"B pins only its own release key", false},
		{"B pins both release keys", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := t.TempDir()
			keyA, keyB := newRolloutKey(t), newRolloutKey(t)
			relA, relB := releaseKeyOf(keyA), releaseKeyOf(keyB)
			ctx := context.Background()
			run := func(key *release.PrivateKey, rels ...*release.PrivateKey) *fixture {
				t.Helper()
				ring := release.Keyring{}
				for _, r := range rels {
					ring[r.ID()] = r.Public()
				}
				f := startSeederConfig(t, Config{StoreDir: store, Key: key, Trust: release.Trust{Release: ring}})
				f.rel = rels[0]
				return f
			}
			trees := map[string]string{}
			publish := func(f *fixture, version string) PublishResult {
				t.Helper()
				if trees[version] == "" {
					trees[version] = appTree(t, version, 1<<10)
				}
				res, err := f.c.PublishBundle(ctx, pack(t, f, trees[version], "web", version), nil)
				if err != nil {
					t.Fatalf("publish %s: %v", version, err)
				}
				return res
			}

			a := run(keyA, relA)
			v1 := publish(a, "1.0.0")
			a.cancel()
			a.s.Close()

			rels := []*release.PrivateKey{relB}
			if tt.alsoA {
				rels = append(rels, relA)
			}
			b := run(keyB, rels...)
			v2 := publish(b, "2.0.0")
			b.cancel()
			b.s.Close()

			a = run(keyA, relA)
			if _, ok := a.s.store.get(v2.ReleaseID); ok {
				t.Fatal("the release signed by B's release key is served")
			}
			if _, err := os.Stat(filepath.Join(store, "releases", v2.ReleaseID.Hex(), "manifest.json")); err != nil {
				t.Fatalf("the release signed by B's release key left the disk: %v", err)
			}
			if _, ok := a.s.store.get(v1.ReleaseID); !ok {
				t.Fatal("1.0.0, signed by A's release key, is not served")
			}
			if d, ok := a.s.Desired("web", ""); ok {
				t.Fatalf("serves the desired state B signed: seq %d", d.Sequence)
			}
			v3 := publish(a, "3.0.0")
			if v3.Sequence <= v2.Sequence {
				t.Fatalf("3.0.0 issued at seq %d, not past B's %d", v3.Sequence, v2.Sequence)
			}
			_, sd, ok := a.s.gossip.Desired(release.StateKey("web", ""))
			if !ok || sd.KeyID != keyA.ID() {
				t.Fatalf("desired state after the publish: held %v, signed by %s", ok, sd.KeyID)
			}
			// 2.0.0 published again, signed by A's release key: stored and
			// served in place of the copy left out.
			again := publish(a, "2.0.0")
			if again.ReleaseID != v2.ReleaseID || again.Sequence <= v3.Sequence {
				t.Fatalf("2.0.0 again: %+v (first %s)", again, v2.ReleaseID)
			}
			if r, ok := a.s.store.get(v2.ReleaseID); !ok || r.Signed.KeyID != relA.ID() {
				t.Fatal("2.0.0 signed by A's release key is not served")
			}
		})
	}
}

func newRolloutKey(t *testing.T) *release.PrivateKey {
	t.Helper()
	k, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
