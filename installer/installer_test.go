package installer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/swarmdeploy/swarm/release"
)

func TestInstallFirstRelease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(f.config())
	m, path := f.bundle("web", "1.0.0")

	res := f.install(inst, m, path)

	dir := f.releaseDir(m)
	if res.Dir != dir || res.Previous != nil || res.AlreadyCurrent || res.HookLog != f.logPath(m) {
		t.Errorf("result = %+v; want dir %s, no previous, log %s", res, dir, f.logPath(m))
	}
	f.wantActive(inst, "web", &m, nil)
	if got, err := os.ReadFile(filepath.Join(f.appDir("web"), currentName, "VERSION")); err != nil || string(got) != "1.0.0\n" {
		t.Errorf("current/VERSION = %q, %v", got, err)
	}
	if target := f.link("web"); filepath.IsAbs(target) {
		t.Errorf("current -> %s; want a relative link", target)
	}

	for _, verb := range []string{"install", "health"} {
		env := f.hookEnv(verb, "1.0.0")
		want := map[string]string{
			"SWARM_APP":          "web",
			"SWARM_VERSION":      "1.0.0",
			"SWARM_RELEASE_ID":   string(m.ReleaseID),
			"SWARM_RELEASE_DIR":  dir,
			"SWARM_PREVIOUS_DIR": "",
		}
		for k, v := range want {
			if got, ok := env[k]; !ok || got != v {
				t.Errorf("%s saw %s=%q (set %v); want %q", verb, k, got, ok, v)
			}
		}
	}
	if pwd, _ := os.ReadFile(filepath.Join(f.out, "pwd-install-1.0.0")); strings.TrimSpace(string(pwd)) != dir {
		t.Errorf("hook ran in %q; want %q", pwd, dir)
	}

	log, err := os.ReadFile(res.HookLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"==== ", "hook install 1.0.0", "to stderr", "health 1.0.0", " install: ok", " health: ok"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("hook log lacks %q:\n%s", want, log)
		}
	}
	st := f.readState("web")
	if st.Current == nil || st.Current.ReleaseID != m.ReleaseID || st.Previous != nil || st.Pending != nil {
		t.Errorf("state.json = %+v", st)
	}
	f.noLeftovers("web")
}

func TestInstallSecondRelease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(f.config())
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	f.install(inst, m1, p1)

	res := f.install(inst, m2, p2)

	if res.Previous == nil || res.Previous.ReleaseID != m1.ReleaseID {
		t.Errorf("result previous = %v; want %s", res.Previous, m1.Dir())
	}
	f.wantActive(inst, "web", &m2, &m1)
	for _, verb := range []string{"install", "health"} {
		if got := f.hookEnv(verb, "2")["SWARM_PREVIOUS_DIR"]; got != f.releaseDir(m1) {
			t.Errorf("%s saw SWARM_PREVIOUS_DIR=%q; want %q", verb, got, f.releaseDir(m1))
		}
	}
	if got, want := f.releaseDirs("web"), []string{m1.Dir(), m2.Dir()}; !slices.Equal(got, want) {
		t.Errorf("release dirs = %v; want %v", got, want)
	}
	// The order of the steps, as the hooks saw state.json: the hook runs
	// before the switch, the health check after it, with the release marked
	// unchecked until it passes.
	if st := f.stateSeen("install", "2"); dirOf(st.Current) != m1.Dir() || st.Unchecked || st.Pending != nil {
		t.Errorf("during the hook state.json = %+v; want %s current", st, m1.Dir())
	}
	if st := f.stateSeen("health", "2"); dirOf(st.Current) != m2.Dir() || dirOf(st.Previous) != m1.Dir() || !st.Unchecked || st.Pending != nil {
		t.Errorf("during the health check state.json = %+v; want %s current and unchecked", st, m2.Dir())
	}
	if st := f.readState("web"); st.Unchecked {
		t.Error("state.json still unchecked after the health check passed")
	}
}

func TestHookFailureKeepsPrevious(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		version string
		timeout time.Duration
		want    error
	}{
		{"exit 3", "fail2", time.Minute, ErrHookFailed},
		// The timeouts leave the hook (a shim, then sh) time to reach its
		// sleep on a host busy with the race detector; below, the case
		// fails if it did not, rather than pass without the child or the
		// trap it claims to test.
		{"timeout, child holds stdout", "slow2", 3 * time.Second, ErrHookTimeout},
		{"timeout, ignores SIGTERM", "stubborn2", 3 * time.Second, ErrHookTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config()
			m1, p1 := f.bundle("web", "1")
			f.install(f.installer(cfg), m1, p1)
			stateBefore, err := os.ReadFile(filepath.Join(f.appDir("web"), stateName))
			if err != nil {
				t.Fatal(err)
			}
			cfg.HookTimeout = tc.timeout
			inst := f.installer(cfg)
			m2, p2 := f.bundle("web", tc.version)

			errc := make(chan error, 1)
			go func() {
				_, err := inst.Install(t.Context(), m2, p2)
				errc <- err
			}()
			select {
			case err = <-errc:
			case <-time.After(time.Minute):
				t.Fatal("install did not return after the hook failed")
			}

			if !errors.Is(err, tc.want) {
				t.Fatalf("install = %v; want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), f.logPath(m2)) {
				t.Errorf("error %q does not name the log %s", err, f.logPath(m2))
			}
			f.wantActive(inst, "web", &m1, nil)
			if exists(f.releaseDir(m2)) {
				t.Errorf("failed release dir %s still exists", f.releaseDir(m2))
			}
			if exists(filepath.Join(f.appDir("web"), metaDirName, m2.Dir()+".json")) {
				t.Error("failed release's manifest record still exists")
			}
			log, err := os.ReadFile(f.logPath(m2))
			if err != nil || !bytes.Contains(log, []byte("hook install "+tc.version)) {
				t.Errorf("hook log = %q, %v; want the hook's output", log, err)
			}
			if stateAfter, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName)); !bytes.Equal(stateAfter, stateBefore) {
				t.Errorf("state.json changed:\n%s\nwas\n%s", stateAfter, stateBefore)
			}
			if f.runs("health", tc.version) != 0 {
				t.Error("health check ran after a failed hook")
			}
			for _, name := range []string{"leader-", "child-"} {
				if tc.want != ErrHookTimeout {
					break // the exit-3 hook starts no processes
				}
				b, err := os.ReadFile(filepath.Join(f.out, name+tc.version))
				if err != nil {
					t.Fatalf("the hook was killed before it started its child: %v (a timeout too short for this host?)", err)
				}
				pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				waitGone(t, pid)
			}
			f.noLeftovers("web")
		})
	}
}

// waitGone polls until pid is gone or a zombie (killed, waiting for init to
// reap it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if _, rest, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(rest, "Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("process %d still running: %s", pid, b)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHealthFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		previous bool
	}{
		{"previous release comes back", true},
		{"first release: nothing current", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			inst := f.installer(f.config())
			var m1 *release.Manifest
			if tc.previous {
				m, p := f.bundle("web", "1")
				f.install(inst, m, p)
				m1 = &m
			}
			sick, p := f.bundle("web", "sick2")

			_, err := inst.Install(t.Context(), sick, p)

			if !errors.Is(err, ErrHealthFailed) {
				t.Fatalf("install = %v; want ErrHealthFailed", err)
			}
			f.wantActive(inst, "web", m1, nil)
			if exists(f.releaseDir(sick)) {
				t.Errorf("unhealthy release dir %s still exists", f.releaseDir(sick))
			}
			if log, _ := os.ReadFile(f.logPath(sick)); !bytes.Contains(log, []byte("not healthy")) {
				t.Errorf("log lacks the health check's output:\n%s", log)
			}
			st := f.readState("web")
			if dirOf(st.Current) != dirOf(m1) || st.Previous != nil || st.Pending != nil {
				t.Errorf("state.json = %+v; want current %s", st, dirOf(m1))
			}
			if tc.previous {
				env := f.hookEnv("rollback", "1")
				if env["SWARM_RELEASE_DIR"] != f.releaseDir(*m1) || env["SWARM_PREVIOUS_DIR"] != f.releaseDir(sick) {
					t.Errorf("rollback hook env = %v", env)
				}
			}
			f.noLeftovers("web")

			// The app works on: the next release installs normally.
			m3, p3 := f.bundle("web", "3")
			f.install(inst, m3, p3)
			f.wantActive(inst, "web", &m3, m1)
		})
	}
}

func TestBadBundleChangesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		spoil func(f *fixture, m *release.Manifest, path *string)
		want  error
	}{
		{"bytes do not match the id", func(f *fixture, m *release.Manifest, _ *string) {
			m.ReleaseID = release.IDOf([]byte("something else"))
		}, release.ErrIDMismatch},
		{"unpacks larger than the manifest says", func(f *fixture, m *release.Manifest, _ *string) {
			m.UnpackedSize = 3
		}, release.ErrTooLarge},
		{"entry escapes the tree", func(f *fixture, m *release.Manifest, path *string) {
			*path, m.ReleaseID = evilBundle(f)
		}, release.ErrUnsafeEntry},
		{"bundle file missing", func(f *fixture, m *release.Manifest, path *string) {
			*path = filepath.Join(f.work, "nope.tar.zst")
		}, fs.ErrNotExist},
		{"bundle longer than the manifest says", func(f *fixture, m *release.Manifest, _ *string) {
			m.BundleSize--
		}, release.ErrTooLarge},
		{"zeros after the tar end, signed for", func(f *fixture, m *release.Manifest, path *string) {
			*path, m.ReleaseID, m.BundleSize = zeroTail(f, *path)
		}, release.ErrTrailingData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			inst := f.installer(f.config())
			m1, p1 := f.bundle("web", "1")
			f.install(inst, m1, p1)
			before, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName))
			m2, p2 := f.bundle("web", "2")
			tc.spoil(f, &m2, &p2)

			_, err := inst.Install(t.Context(), m2, p2)

			if !errors.Is(err, tc.want) {
				t.Fatalf("install = %v; want %v", err, tc.want)
			}
			f.wantActive(inst, "web", &m1, nil)
			if got := f.releaseDirs("web"); !slices.Equal(got, []string{m1.Dir()}) {
				t.Errorf("release dirs = %v; want only %s", got, m1.Dir())
			}
			if after, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName)); !bytes.Equal(after, before) {
				t.Error("state.json changed")
			}
			if f.runs("install", "2") != 0 {
				t.Error("hook ran for a bad bundle")
			}
			if got := f.entries(filepath.Join(f.appDir("web"), metaDirName)); !slices.Equal(got, []string{m1.Dir() + ".json"}) {
				t.Errorf("manifest records = %v", got)
			}
			f.noLeftovers("web")
		})
	}
}

// zeroTail rewrites the bundle at path with 64 MiB of zeros after its tar
// archive, in the same zstd stream, and returns the new bundle's path, id
// and size: a manifest that matches it byte for byte.
func zeroTail(f *fixture, path string) (string, release.ID, int64) {
	b, err := os.ReadFile(path)
	if err != nil {
		f.t.Fatal(err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		f.t.Fatal(err)
	}
	defer dec.Close()
	raw, err := io.ReadAll(dec)
	if err != nil {
		f.t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer enc.Close()
	out := enc.EncodeAll(append(raw, make([]byte, 64<<20)...), nil)
	p := filepath.Join(f.work, "zero-tail.tar.zst")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p, release.IDOf(out), int64(len(out))
}

// evilBundle writes a bundle whose one entry climbs out of the tree.
func evilBundle(f *fixture) (string, release.ID) {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	if err != nil {
		f.t.Fatal(err)
	}
	tw := tar.NewWriter(enc)
	body := []byte("gotcha")
	if err := tw.WriteHeader(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o644}); err != nil {
		f.t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	enc.Close()
	p := filepath.Join(f.work, "evil.tar.zst")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p, release.IDOf(buf.Bytes())
}

func TestReinstallCurrentIsNoop(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(f.config())
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	f.install(inst, m1, p1)
	f.install(inst, m2, p2)

	res := f.install(inst, m2, p2)

	if !res.AlreadyCurrent || res.Dir != f.releaseDir(m2) || res.HookLog != "" {
		t.Errorf("result = %+v; want AlreadyCurrent in %s", res, f.releaseDir(m2))
	}
	if res.Previous == nil || res.Previous.ReleaseID != m1.ReleaseID {
		t.Errorf("previous = %v; want %s", res.Previous, m1.Dir())
	}
	if n, h := f.runs("install", "2"), f.runs("health", "2"); n != 1 || h != 1 {
		t.Errorf("hook ran %d times, health %d; want once each", n, h)
	}
	f.wantActive(inst, "web", &m2, &m1)
}

func TestReinstallPreviousReusesItsDir(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	inst := f.installer(cfg)
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	f.install(inst, m1, p1)
	f.install(inst, m2, p2)

	f.install(inst, m1, p1)

	f.wantActive(inst, "web", &m1, &m2)
	// The hook appends to hook-ran in its working dir: two lines mean the
	// first run's tree was kept.
	if b, _ := os.ReadFile(filepath.Join(f.releaseDir(m1), "hook-ran")); string(b) != "install\ninstall\n" {
		t.Errorf("hook-ran = %q; want two install runs in the same dir", b)
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		keep int
		want []string // versions left
	}{
		{keep: 2, want: []string{"3", "4"}},
		{keep: 3, want: []string{"2", "3", "4"}},
		{keep: 1, want: []string{"3", "4"}}, // current and previous always stay
	} {
		t.Run("keep "+strconv.Itoa(tc.keep), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config()
			cfg.Keep = tc.keep
			inst := f.installer(cfg)
			var ms []release.Manifest
			for _, v := range []string{"1", "2", "3", "4"} {
				m, p := f.bundle("web", v)
				f.install(inst, m, p)
				ms = append(ms, m)
			}
			var want, wantMeta []string
			for _, m := range ms {
				if slices.Contains(tc.want, m.Version) {
					want = append(want, m.Dir())
					wantMeta = append(wantMeta, m.Dir()+".json")
				}
			}
			if got := f.releaseDirs("web"); !slices.Equal(got, want) {
				t.Errorf("release dirs = %v; want %v", got, want)
			}
			if got := f.entries(filepath.Join(f.appDir("web"), metaDirName)); !slices.Equal(got, wantMeta) {
				t.Errorf("manifest records = %v; want %v", got, wantMeta)
			}
			f.wantActive(inst, "web", &ms[3], &ms[2])
			f.noLeftovers("web")
		})
	}
}

func TestRetentionKeepsPreviousAfterRollback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	cfg.Keep = 2
	inst := f.installer(cfg)
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	m3, p3 := f.bundle("web", "3")
	f.install(inst, m1, p1)
	f.install(inst, m2, p2)
	if _, err := inst.Rollback(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	// current 1, previous 2; installing 3 makes 1 previous and 2 expendable.
	f.install(inst, m3, p3)
	if got, want := f.releaseDirs("web"), []string{m1.Dir(), m3.Dir()}; !slices.Equal(got, want) {
		t.Errorf("release dirs = %v; want %v", got, want)
	}
	f.wantActive(inst, "web", &m3, &m1)
}

func TestRollback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(f.config())
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")

	if _, err := inst.Rollback(t.Context(), "web"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback of an empty app = %v; want ErrNoPrevious", err)
	}
	f.install(inst, m1, p1)
	if _, err := inst.Rollback(t.Context(), "web"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback with one release = %v; want ErrNoPrevious", err)
	}
	f.wantActive(inst, "web", &m1, nil)
	f.install(inst, m2, p2)

	got, err := inst.Rollback(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.ReleaseID != m1.ReleaseID {
		t.Errorf("rollback returned %s; want %s", got.Dir(), m1.Dir())
	}
	f.wantActive(inst, "web", &m1, &m2)
	env := f.hookEnv("rollback", "1")
	if env["SWARM_RELEASE_DIR"] != f.releaseDir(m1) || env["SWARM_PREVIOUS_DIR"] != f.releaseDir(m2) {
		t.Errorf("rollback hook env = %v", env)
	}
	if f.runs("health", "1") != 1 {
		t.Error("rollback ran the health check")
	}

	// Rolling back again goes forward.
	if got, err := inst.Rollback(t.Context(), "web"); err != nil || got.ReleaseID != m2.ReleaseID {
		t.Fatalf("second rollback = %s, %v; want %s", got.Dir(), err, m2.Dir())
	}
	f.wantActive(inst, "web", &m2, &m1)

	// A fresh Installer (a restarted agent) sees the same.
	f.wantActive(f.installer(f.config()), "web", &m2, &m1)
}

func TestRollbackHookFailureKeepsSwitch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	cfg.Hook = f.script("hook-rollback-fails", `[ "$1" = rollback ] && exit 4; exit 0`)
	inst := f.installer(cfg)
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	f.install(inst, m1, p1)
	f.install(inst, m2, p2)

	got, err := inst.Rollback(t.Context(), "web")

	if !errors.Is(err, ErrHookFailed) || got.ReleaseID != m1.ReleaseID {
		t.Fatalf("rollback = %s, %v; want %s and ErrHookFailed", got.Dir(), err, m1.Dir())
	}
	f.wantActive(inst, "web", &m1, &m2)
}

func TestConcurrentInstalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	// Each run holds a per-app lock dir (two runs for one app at once fail)
	// and waits until a run for the other app has started (apps run in
	// parallel or the wait times out).
	cfg.Hook = f.script("hook-concurrent", `
out=@OUT@
[ "$1" = install ] || exit 0
mkdir "$out/lock-$SWARM_APP" || { echo "two runs for $SWARM_APP at once"; exit 7; }
touch "$out/started-$SWARM_APP"
other=web; [ "$SWARM_APP" = web ] && other=db
i=0
while [ ! -e "$out/started-$other" ]; do
	i=$((i+1)); [ $i -gt 1000 ] && { echo "no run for $other started"; rmdir "$out/lock-$SWARM_APP"; exit 8; }
	sleep 0.01
done
sleep 0.05
rmdir "$out/lock-$SWARM_APP"
`)
	cfg.HealthCheck = ""
	inst := f.installer(cfg)

	type job struct {
		m    release.Manifest
		path string
	}
	var jobs []job
	for _, app := range []string{"web", "db"} {
		for _, v := range []string{"1", "2"} {
			m, p := f.bundle(app, v)
			jobs = append(jobs, job{m, p})
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	for n, j := range jobs {
		wg.Go(func() {
			_, errs[n] = inst.Install(t.Context(), j.m, j.path)
		})
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			t.Errorf("install %s %s: %v", jobs[n].m.App, jobs[n].m.Version, err)
		}
	}
	for _, app := range []string{"web", "db"} {
		cur, ok, _ := inst.Current(app)
		prev, pok, _ := inst.Previous(app)
		if !ok || !pok || cur.App != app || prev.App != app || cur.Version == prev.Version {
			t.Errorf("%s: current %s (%v), previous %s (%v); want both releases", app, cur.Dir(), ok, prev.Dir(), pok)
		}
		if f.link(app) != cur.Dir() {
			t.Errorf("%s: current -> %s; state says %s", app, f.link(app), cur.Dir())
		}
	}
}

func TestInstallCanceledContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(f.config())
	m1, p1 := f.bundle("web", "1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := inst.Install(ctx, m1, p1)

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("install with a canceled context = %v", err)
	}
	f.wantActive(inst, "web", nil, nil)
}

// TestInstallCanceledMidUnpack: a context that ends while the bundle
// unpacks stops the install there: the previous release stays active,
// state.json is untouched, the hook does not run and nothing of the
// half-unpacked tree is left.
func TestInstallCanceledMidUnpack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := f.config()
	var reads atomic.Int64
	cfg.OpenBundle = func(p string) (io.ReadCloser, error) {
		file, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		return readFunc{file, func() {
			if reads.Add(1) == 1 {
				cancel() // as the first bytes arrive
			}
		}}, nil
	}
	inst := f.installer(cfg)
	m1, p1 := f.bundle("web", "1")
	f.install(inst, m1, p1)
	before, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName))
	reads.Store(0)
	m2, p2 := f.bundle("web", "2")

	_, err := inst.Install(ctx, m2, p2)

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("install = %v; want context.Canceled", err)
	}
	f.wantActive(inst, "web", &m1, nil)
	if got := f.releaseDirs("web"); !slices.Equal(got, []string{m1.Dir()}) {
		t.Errorf("release dirs = %v; want only %s", got, m1.Dir())
	}
	if after, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName)); !bytes.Equal(after, before) {
		t.Error("state.json changed")
	}
	if f.runs("install", "2") != 0 {
		t.Error("hook ran for an interrupted install")
	}
	f.noLeftovers("web")
}

// readFunc is a bundle file that calls fn before every read.
type readFunc struct {
	*os.File
	fn func()
}

func (r readFunc) Read(p []byte) (int, error) {
	r.fn()
	return r.File.Read(p)
}

func TestInstallWithoutHooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(Config{Dir: f.root})
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	f.install(inst, m1, p1)

	res := f.install(inst, m2, p2)

	if res.HookLog != "" {
		t.Errorf("hook log %q with no hook configured", res.HookLog)
	}
	f.wantActive(inst, "web", &m2, &m1)
	if exists(filepath.Join(f.root, "logs")) {
		t.Error("logs dir created with no hook configured")
	}
}

func TestInstallRefusesBadNames(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(Config{Dir: f.root})
	m, p := f.bundle("web", "1")
	for _, mut := range []func(*release.Manifest){
		func(m *release.Manifest) { m.App = "../etc" },
		func(m *release.Manifest) { m.Version = "../../x" },
		func(m *release.Manifest) { m.ReleaseID = "sha256:../../" },
	} {
		bad := m
		mut(&bad)
		if _, err := inst.Install(t.Context(), bad, p); !errors.Is(err, release.ErrInvalid) && !errors.Is(err, release.ErrBadID) {
			t.Errorf("install %+v = %v; want a validation error", bad, err)
		}
	}
	if _, _, err := inst.Current("../x"); !errors.Is(err, release.ErrInvalid) {
		t.Errorf("Current(../x) = %v", err)
	}
	if exists(filepath.Join(f.root)) {
		t.Error("bad names created directories")
	}
}

// TestCheck: the periodic health check runs against the current release,
// reports a failure with ErrHealthFailed and changes nothing on disk.
func TestCheck(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	inst := f.installer(f.config())
	if err := inst.Check(t.Context(), "web"); err != nil {
		t.Fatalf("check with no release = %v; want nil", err)
	}
	m1, p1 := f.bundle("web", "1")
	f.install(inst, m1, p1)
	if err := inst.Check(t.Context(), "web"); err != nil {
		t.Fatalf("check of a healthy release = %v", err)
	}
	if got := f.runs("health", "1"); got != 2 {
		t.Errorf("health ran %d times for 1; want 2 (install and check)", got)
	}
	// The same release turns sick: its check fails, and the release stays.
	sickHealth := f.script("sick-health", "echo down; exit 1\n")
	cfg := f.config()
	cfg.HealthCheck = sickHealth
	sick := f.installer(cfg)
	err := sick.Check(t.Context(), "web")
	if !errors.Is(err, ErrHealthFailed) {
		t.Fatalf("failing check = %v; want ErrHealthFailed", err)
	}
	f.wantActive(sick, "web", &m1, nil)
}
