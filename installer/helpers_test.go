package installer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
)

// TestMain also serves as the hook shim: the Installer starts the running
// executable, this test binary, as the shim; and as an agent-like driver
// process that tests kill (see runDriver).
func TestMain(m *testing.M) {
	MaybeRunShim()
	if spec := os.Getenv(driverEnv); spec != "" {
		os.Exit(runDriver(spec))
	}
	goleak.VerifyTestMain(m)
}

// fixture is one test's world: an installer root, a work dir for bundles
// and scripts, and an out dir where test hooks write what they saw.
type fixture struct {
	t    *testing.T
	root string
	work string
	out  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, root: filepath.Join(base, "root"), work: filepath.Join(base, "work"), out: filepath.Join(base, "out")}
	for _, d := range []string{f.work, f.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// testHook is the hook most tests use. What it does depends on the version:
// "fail*" exits 3, "slow*" starts a child that keeps stdout open and sleeps
// far past any test timeout, "stubborn*" does the same ignoring SIGTERM.
// Every run appends to out/runs-<verb>-<version> and records its SWARM_*
// environment in out/env-<verb>-<version>.
const testHook = `
out=@OUT@
echo "hook $1 $SWARM_VERSION"
echo "to stderr" >&2
env | grep '^SWARM_' | sort > "$out/env-$1-$SWARM_VERSION"
pwd > "$out/pwd-$1-$SWARM_VERSION"
echo "$1" >> "$out/runs-$1-$SWARM_VERSION"
echo "$1" >> hook-ran
cp "$SWARM_RELEASE_DIR/../state.json" "$out/state-$1-$SWARM_VERSION" 2>/dev/null
case "$SWARM_VERSION" in
fail*) exit 3 ;;
stubborn*) trap '' TERM ;;
esac
case "$SWARM_VERSION" in
slow*|stubborn*)
	sleep 300 &
	echo $! > "$out/child-$SWARM_VERSION"
	echo $$ > "$out/leader-$SWARM_VERSION"
	sleep 300
	;;
esac
exit 0
`

// testHealth fails for versions starting with "sick".
const testHealth = `
out=@OUT@
echo "health $SWARM_VERSION"
echo "$1" >> "$out/runs-$1-$SWARM_VERSION"
cp "$SWARM_RELEASE_DIR/../state.json" "$out/state-$1-$SWARM_VERSION"
env | grep '^SWARM_' | sort > "$out/env-$1-$SWARM_VERSION"
case "$SWARM_VERSION" in
sick*) echo "not healthy"; exit 1 ;;
esac
exit 0
`

// script writes an executable #!/bin/sh script; @OUT@ in body becomes the
// out dir.
func (f *fixture) script(name, body string) string {
	f.t.Helper()
	p := filepath.Join(f.work, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+strings.ReplaceAll(body, "@OUT@", f.out)), 0o755); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// config returns a Config for the fixture's root with the test hook and
// health check and timeouts long enough for a loaded CI machine.
func (f *fixture) config() Config {
	return Config{
		Dir:           f.root,
		Hook:          f.script("hook", testHook),
		HookTimeout:   time.Minute,
		HealthCheck:   f.script("health", testHealth),
		HealthTimeout: time.Minute,
		Keep:          10,
		KillGrace:     time.Second,
	}
}

func (f *fixture) installer(cfg Config) *Installer {
	f.t.Helper()
	if err := cfg.Validate(); err != nil {
		f.t.Fatal(err)
	}
	inst, err := New(cfg, zaptest.NewLogger(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return inst
}

// bundle packs a small tree for app/version and returns its manifest and
// bundle path.
func (f *fixture) bundle(app, version string) (release.Manifest, string) {
	f.t.Helper()
	src := filepath.Join(f.work, "src-"+app+"-"+version)
	files := map[string]string{
		"VERSION":    version + "\n",
		"bin/run":    "#!/bin/sh\necho " + version + "\n",
		"etc/app.cf": "app=" + app + "\n",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	path := filepath.Join(f.work, app+"-"+version+".tar.zst")
	out, err := os.Create(path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer out.Close()
	res, err := release.Pack(out, os.DirFS(src), release.PackOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	m := release.Manifest{
		App:          app,
		Version:      version,
		ReleaseID:    res.ID,
		BundleSize:   res.BundleSize,
		UnpackedSize: res.UnpackedSize,
		Created:      time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	return m, path
}

func (f *fixture) install(inst *Installer, m release.Manifest, path string) Result {
	f.t.Helper()
	res, err := inst.Install(f.t.Context(), m, path)
	if err != nil {
		f.t.Fatalf("install %s: %v", m.Version, err)
	}
	return res
}

func (f *fixture) appDir(app string) string { return filepath.Join(f.root, "releases", app) }

func (f *fixture) releaseDir(m release.Manifest) string {
	return filepath.Join(f.appDir(m.App), m.Dir())
}

func (f *fixture) logPath(m release.Manifest) string {
	return filepath.Join(f.root, "logs", m.App, m.Dir()+".hook.log")
}

// link returns the current symlink's target, "" when there is none.
func (f *fixture) link(app string) string {
	f.t.Helper()
	t, err := readCurrent(f.appDir(app))
	if err != nil {
		f.t.Fatal(err)
	}
	return t
}

// wantActive checks the symlink, Current and Previous together.
func (f *fixture) wantActive(inst *Installer, app string, cur, prev *release.Manifest) {
	f.t.Helper()
	if got, want := f.link(app), dirOf(cur); got != want {
		f.t.Errorf("current -> %q; want %q", got, want)
	}
	f.wantState(inst, app, cur, prev)
}

// wantState checks what Current and Previous say.
func (f *fixture) wantState(inst *Installer, app string, cur, prev *release.Manifest) {
	f.t.Helper()
	gotCur, ok, err := inst.Current(app)
	if err != nil {
		f.t.Fatalf("Current: %v", err)
	}
	if ok != (cur != nil) || (ok && gotCur.ReleaseID != cur.ReleaseID) {
		f.t.Errorf("Current = %q, %v; want %q", gotCur.Dir(), ok, dirOf(cur))
	}
	gotPrev, ok, err := inst.Previous(app)
	if err != nil {
		f.t.Fatalf("Previous: %v", err)
	}
	if ok != (prev != nil) || (ok && gotPrev.ReleaseID != prev.ReleaseID) {
		f.t.Errorf("Previous = %q, %v; want %q", gotPrev.Dir(), ok, dirOf(prev))
	}
}

// readState decodes state.json.
func (f *fixture) readState(app string) stateFile {
	f.t.Helper()
	var st stateFile
	b, err := os.ReadFile(filepath.Join(f.appDir(app), stateName))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// entries lists a directory's names, sorted; nil when it does not exist.
func (f *fixture) entries(dir string) []string {
	f.t.Helper()
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// releaseDirs lists the app's release directories.
func (f *fixture) releaseDirs(app string) []string {
	var dirs []string
	for _, n := range f.entries(f.appDir(app)) {
		if isDir(filepath.Join(f.appDir(app), n)) && !strings.HasPrefix(n, ".") && n != currentName {
			dirs = append(dirs, n)
		}
	}
	return dirs
}

// noLeftovers fails if any temporary name is left in the app dir.
func (f *fixture) noLeftovers(app string) {
	f.t.Helper()
	for _, dir := range []string{f.appDir(app), filepath.Join(f.appDir(app), metaDirName)} {
		for _, n := range f.entries(dir) {
			if strings.HasPrefix(n, tmpPrefix) || strings.HasPrefix(n, tmpLinkPrefix) {
				f.t.Errorf("leftover %s in %s", n, dir)
			}
		}
	}
}

// hookEnv reads what the test hook recorded for a run.
func (f *fixture) hookEnv(verb, version string) map[string]string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.out, "env-"+verb+"-"+version))
	if err != nil {
		f.t.Fatalf("hook %s for %s did not run: %v", verb, version, err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// stateSeen decodes the state.json a test hook copied during its run.
func (f *fixture) stateSeen(verb, version string) stateFile {
	f.t.Helper()
	var st stateFile
	b, err := os.ReadFile(filepath.Join(f.out, "state-"+verb+"-"+version))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// runs counts the test hook's runs for verb and version.
func (f *fixture) runs(verb, version string) int {
	b, err := os.ReadFile(filepath.Join(f.out, "runs-"+verb+"-"+version))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
