package installer

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/internal/fuzzcorpus"
	"github.com/swarmdeploy/swarm/release"
)

// The world FuzzInstallerStateLoad loads state.json into: app "web" with
// two installed releases and their manifest records, another app's release
// beside it, and a directory outside the app's named like a release.
func fuzzManifest(app, version string) release.Manifest {
	return release.Manifest{App: app, Version: version, ReleaseID: release.IDOf([]byte(app + "@" + version)),
		BundleSize: 1, InfoHash: "0123456789abcdef0123456789abcdef01234567", PieceLength: 1 << 18,
		Created: time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)}
}

var (
	fuzzV1     = fuzzManifest("web", "1.0.0")
	fuzzV2     = fuzzManifest("web", "2.0.0")
	fuzzOther  = fuzzManifest("db", "3.0.0")
	fuzzVictim = release.Manifest{App: "web", Version: "../victim", ReleaseID: release.IDOf([]byte("victim"))}
)

// fuzzLinks are what current points at, by the fuzz input's choice byte.
var fuzzLinks = []string{"", fuzzV1.Dir(), fuzzV2.Dir(), fuzzVictim.Dir(), "4.0.0-000000000000", "../db/" + fuzzOther.Dir()}

func installerStateSeeds(t testing.TB) []fuzzcorpus.Seed {
	state := func(st stateFile) []byte {
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1, v2, other, victim := fuzzV1, fuzzV2, fuzzOther, fuzzVictim
	return []fuzzcorpus.Seed{
		{Name: "consistent", Args: []any{state(stateFile{Current: &v2, Previous: &v1}), byte(2)}},
		{Name: "pending-switch-happened", Args: []any{state(stateFile{Current: &v1, Pending: &switchTo{Current: &v2, Previous: &v1, Unchecked: true}}), byte(2)}},
		{Name: "pending-switch-not-made", Args: []any{state(stateFile{Current: &v1, Pending: &switchTo{Current: &v2, Previous: &v1}}), byte(1)}},
		{Name: "symlink-disagrees", Args: []any{state(stateFile{Current: &v1, Previous: &v2}), byte(2)}},
		{Name: "no-symlink", Args: []any{state(stateFile{Current: &v2, Previous: &v1, Unchecked: true}), byte(0)}},
		{Name: "previous-outside", Args: []any{state(stateFile{Current: &v2, Previous: &victim}), byte(2)}},
		{Name: "current-outside", Args: []any{state(stateFile{Current: &victim, Previous: &v1}), byte(3)}},
		{Name: "other-app", Args: []any{state(stateFile{Current: &other, Previous: &other}), byte(5)}},
		{Name: "missing-dir", Args: []any{state(stateFile{Current: &v2}), byte(4)}},
		{Name: "not-json", Args: []any{[]byte(`{"current":`), byte(1)}},
		{Name: "null", Args: []any{[]byte(`null`), byte(2)}},
	}
}

// FuzzInstallerStateLoad loads an arbitrary state.json beside an arbitrary
// current symlink. Loading never fails for what the file says. The current
// release it settles on is what the symlink points at, the previous one is
// another; both are valid manifests of the app whose directories are inside
// the app's directory and exist; a pending health check implies a current
// release. Loading again settles on the same without rewriting state.json,
// and nothing outside the app's directory is touched.
func FuzzInstallerStateLoad(f *testing.F) {
	scratch := fuzzcorpus.TempDir(f)
	f.Fuzz(func(t *testing.T, data []byte, link byte) {
		base, err := os.MkdirTemp(scratch, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(base)
		app, victim, target := makeFuzzWorld(t, base, data, link)

		cur, prev, pending := loadFuzzState(t, base)
		if cur != nil {
			checkFuzzRelease(t, app, "current", cur)
			if cur.Dir() != target {
				t.Fatalf("current is %s, but the symlink points at %q", cur.Dir(), target)
			}
		} else if pending {
			t.Fatal("a health check pending without a current release")
		}
		if prev != nil {
			checkFuzzRelease(t, app, "previous", prev)
			if prev.Dir() == dirOf(cur) {
				t.Fatalf("previous is the current release %s", prev.Dir())
			}
		}
		settled, err := os.ReadFile(filepath.Join(app, stateName))
		if err != nil {
			t.Fatal(err)
		}
		cur2, prev2, pending2 := loadFuzzState(t, base)
		if dirOf(cur2) != dirOf(cur) || dirOf(prev2) != dirOf(prev) || pending2 != pending {
			t.Fatalf("loading again: current %q, previous %q, pending %v; first %q, %q, %v",
				dirOf(cur2), dirOf(prev2), pending2, dirOf(cur), dirOf(prev), pending)
		}
		if again, err := os.ReadFile(filepath.Join(app, stateName)); err != nil || string(again) != string(settled) {
			t.Fatalf("loading again rewrote state.json: %s, was %s", again, settled)
		}
		if _, err := os.Stat(victim); err != nil {
			t.Fatalf("a file outside the app's releases is gone: %v", err)
		}
	})
}

// makeFuzzWorld builds FuzzInstallerStateLoad's world under base with
// state.json holding data and current pointing at fuzzLinks[link]; it
// returns the app's directory, a file outside it that must survive, and
// the symlink's target.
func makeFuzzWorld(t *testing.T, base string, data []byte, link byte) (app, victim, target string) {
	t.Helper()
	releases := filepath.Join(base, "releases")
	app = filepath.Join(releases, "web")
	for _, m := range []release.Manifest{fuzzV1, fuzzV2, fuzzOther} {
		dir := filepath.Join(releases, m.App)
		writeFuzzFile(t, filepath.Join(dir, m.Dir(), "bin"), "x")
		b, err := json.Marshal(metaFile{Manifest: m, Installed: m.Created})
		if err != nil {
			t.Fatal(err)
		}
		writeFuzzFile(t, filepath.Join(dir, metaDirName, m.Dir()+".json"), string(b))
	}
	victim = filepath.Join(app, fuzzVictim.Dir(), "keep")
	writeFuzzFile(t, victim, "x")
	writeFuzzFile(t, filepath.Join(app, stateName), string(data))
	target = fuzzLinks[int(link)%len(fuzzLinks)]
	if target != "" {
		if err := os.Symlink(target, filepath.Join(app, currentName)); err != nil {
			t.Fatal(err)
		}
	}
	return app, victim, target
}

func writeFuzzFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadFuzzState loads app "web" under root with a new Installer, as a
// restarted agent does.
func loadFuzzState(t *testing.T, root string) (cur, prev *release.Manifest, pending bool) {
	t.Helper()
	i, err := New(Config{Dir: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := i.Current("web")
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if ok {
		cur = &c
	}
	p, ok, err := i.Previous("web")
	if err != nil {
		t.Fatalf("Previous: %v", err)
	}
	if ok {
		prev = &p
	}
	pending, err = i.HealthPending("web")
	if err != nil {
		t.Fatalf("HealthPending: %v", err)
	}
	return cur, prev, pending
}

func checkFuzzRelease(t *testing.T, app, what string, m *release.Manifest) {
	t.Helper()
	if err := checkManifest(*m); err != nil || m.App != "web" {
		t.Fatalf("%s release %+v: app %q, %v", what, m, m.App, err)
	}
	if d := m.Dir(); filepath.Base(d) != d || d == "." || d == ".." {
		t.Fatalf("%s release directory %q is not a name inside the app's", what, d)
	}
	if !isDir(filepath.Join(app, m.Dir())) {
		t.Fatalf("%s release directory %s does not exist", what, m.Dir())
	}
}

func TestFuzzCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzInstallerStateLoad", installerStateSeeds(t))
}

// TestRollbackRefusesPreviousOutside: a state.json whose previous release
// names a directory outside the app's (it is not signed) gives no previous
// release; Rollback once pointed current there.
func TestRollbackRefusesPreviousOutside(t *testing.T) {
	v2, victim := fuzzV2, fuzzVictim
	b, err := json.Marshal(stateFile{Current: &v2, Previous: &victim})
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	app, _, _ := makeFuzzWorld(t, base, b, 2)
	i, err := New(Config{Dir: base}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := i.Rollback(context.Background(), "web"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("Rollback = %+v, %v; want ErrNoPrevious", m, err)
	}
	if got, err := os.Readlink(filepath.Join(app, currentName)); err != nil || got != v2.Dir() {
		t.Fatalf("current -> %q, %v; want %s", got, err, v2.Dir())
	}
}
