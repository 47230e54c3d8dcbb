package installer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

// TestLoadRepairs builds releases 1, 2, 3 (3 current, 2 previous), then
// leaves the disk as a crash or an operator might, and checks what a fresh
// Installer (a restarted agent) makes of it.
func TestLoadRepairs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		mess    func(w world)
		cur     func(w world) *release.Manifest
		prev    func(w world) *release.Manifest
		rewrite bool   // state.json must be rewritten
		link    string // what current points at when it is not the current release
	}{
		{
			name: "consistent",
			mess: func(w world) {},
			cur:  func(w world) *release.Manifest { return &w.m3 },
			prev: func(w world) *release.Manifest { return &w.m2 },
		},
		{
			name: "crash after the symlink moved, before state recorded it",
			mess: func(w world) {
				w.writeState(stateFile{Current: &w.m2, Previous: &w.m1, Pending: &switchTo{Current: &w.m3, Previous: &w.m2}})
			},
			cur:     func(w world) *release.Manifest { return &w.m3 },
			prev:    func(w world) *release.Manifest { return &w.m2 },
			rewrite: true,
		},
		{
			name: "crash after the pending record, before the symlink moved",
			mess: func(w world) {
				w.writeState(stateFile{Current: &w.m3, Previous: &w.m2, Pending: &switchTo{Current: &w.m1, Previous: &w.m3}})
			},
			cur:     func(w world) *release.Manifest { return &w.m3 },
			prev:    func(w world) *release.Manifest { return &w.m2 },
			rewrite: true,
		},
		{
			name: "health revert crashed after restoring the symlink",
			mess: func(w world) {
				// 3 was installed over 2 (previous 1) and failed its check.
				w.writeState(stateFile{Current: &w.m3, Previous: &w.m2, Pending: &switchTo{Current: &w.m2, Previous: &w.m1}})
				w.point(w.m2.Dir())
			},
			cur:     func(w world) *release.Manifest { return &w.m2 },
			prev:    func(w world) *release.Manifest { return &w.m1 },
			rewrite: true,
		},
		{
			name: "first release failed its check; crash after removing current",
			mess: func(w world) {
				w.writeState(stateFile{Current: &w.m3, Pending: &switchTo{}})
				w.point("")
			},
			cur:     func(w world) *release.Manifest { return nil },
			prev:    func(w world) *release.Manifest { return nil },
			rewrite: true,
		},
		{
			name: "state lags the symlink with no pending record",
			mess: func(w world) {
				w.writeState(stateFile{Current: &w.m2, Previous: &w.m1})
			},
			cur:     func(w world) *release.Manifest { return &w.m3 },
			prev:    func(w world) *release.Manifest { return &w.m2 },
			rewrite: true,
		},
		{
			name:    "operator pointed current at an older release",
			mess:    func(w world) { w.point(w.m1.Dir()) },
			cur:     func(w world) *release.Manifest { return &w.m1 },
			prev:    func(w world) *release.Manifest { return &w.m3 },
			rewrite: true,
		},
		{
			name: "state.json is garbage",
			mess: func(w world) {
				if err := os.WriteFile(filepath.Join(w.f.appDir("web"), stateName), []byte("{\"current\": {"), 0o644); err != nil {
					w.f.t.Fatal(err)
				}
			},
			cur:     func(w world) *release.Manifest { return &w.m3 },
			prev:    func(w world) *release.Manifest { return nil },
			rewrite: true,
		},
		{
			name: "state.json is gone",
			mess: func(w world) {
				if err := os.Remove(filepath.Join(w.f.appDir("web"), stateName)); err != nil {
					w.f.t.Fatal(err)
				}
			},
			cur:     func(w world) *release.Manifest { return &w.m3 },
			prev:    func(w world) *release.Manifest { return nil },
			rewrite: true,
		},
		{
			name:    "current points at a directory that is gone",
			mess:    func(w world) { w.point("9.9-0123456789ab") },
			cur:     func(w world) *release.Manifest { return nil },
			prev:    func(w world) *release.Manifest { return &w.m3 },
			rewrite: true,
			link:    "9.9-0123456789ab", // loading never moves the symlink
		},
		{
			name: "current points at a directory with no manifest record",
			mess: func(w world) {
				if err := os.Mkdir(filepath.Join(w.f.appDir("web"), "hand-made"), 0o755); err != nil {
					w.f.t.Fatal(err)
				}
				w.point("hand-made")
			},
			cur:     func(w world) *release.Manifest { return nil },
			prev:    func(w world) *release.Manifest { return &w.m3 },
			rewrite: true,
			link:    "hand-made",
		},
		{
			name: "previous release directory is gone",
			mess: func(w world) {
				if err := os.RemoveAll(w.f.releaseDir(w.m2)); err != nil {
					w.f.t.Fatal(err)
				}
			},
			cur:     func(w world) *release.Manifest { return &w.m3 },
			prev:    func(w world) *release.Manifest { return nil },
			rewrite: true,
		},
		{
			name:    "current symlink removed",
			mess:    func(w world) { w.point("") },
			cur:     func(w world) *release.Manifest { return nil },
			prev:    func(w world) *release.Manifest { return &w.m3 },
			rewrite: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config()
			inst := f.installer(cfg)
			w := world{f: f}
			for n, m := range []*release.Manifest{&w.m1, &w.m2, &w.m3} {
				var p string
				*m, p = f.bundle("web", string(rune('1'+n)))
				f.install(inst, *m, p)
			}
			tc.mess(w)
			leftovers := w.leaveLeftovers()
			stateBefore, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName))

			fresh := f.installer(cfg)
			cur, prev := tc.cur(w), tc.prev(w)
			if tc.link != "" {
				if got := f.link("web"); got != tc.link {
					t.Errorf("current -> %q; want %q", got, tc.link)
				}
				f.wantState(fresh, "web", cur, prev)
			} else {
				f.wantActive(fresh, "web", cur, prev)
			}

			for _, p := range leftovers {
				if exists(p) {
					t.Errorf("leftover %s not removed", p)
				}
			}
			f.noLeftovers("web")
			stateAfter, _ := os.ReadFile(filepath.Join(f.appDir("web"), stateName))
			if rewritten := string(stateAfter) != string(stateBefore); rewritten != tc.rewrite {
				t.Errorf("state.json rewritten = %v; want %v", rewritten, tc.rewrite)
			}
			st := f.readState("web")
			if dirOf(st.Current) != dirOf(cur) || dirOf(st.Previous) != dirOf(prev) || st.Pending != nil {
				t.Errorf("state.json = current %q, previous %q, pending %v; want %q, %q",
					dirOf(st.Current), dirOf(st.Previous), st.Pending, dirOf(cur), dirOf(prev))
			}

			// Whatever the mess, the app keeps working: a new release installs
			// on top and the repaired current (or, with none, the repaired
			// previous) becomes its previous.
			m4, p4 := f.bundle("web", "4")
			f.install(fresh, m4, p4)
			wantPrev := cur
			if wantPrev == nil {
				wantPrev = prev
			}
			f.wantActive(fresh, "web", &m4, wantPrev)
		})
	}
}

// world is three installed releases of app "web" and the means to mess
// with them.
type world struct {
	f          *fixture
	m1, m2, m3 release.Manifest
}

// writeState overwrites state.json as an interrupted run would have left it.
func (w world) writeState(st stateFile) {
	b, err := json.Marshal(st)
	if err != nil {
		w.f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.f.appDir("web"), stateName), b, 0o644); err != nil {
		w.f.t.Fatal(err)
	}
}

// point makes current a symlink to target, or removes it for "".
func (w world) point(target string) {
	link := filepath.Join(w.f.appDir("web"), currentName)
	if err := os.Remove(link); err != nil {
		w.f.t.Fatal(err)
	}
	if target == "" {
		return
	}
	if err := os.Symlink(target, link); err != nil {
		w.f.t.Fatal(err)
	}
}

// leaveLeftovers creates what an interrupted unpack, switch, state write and
// delete leave behind, and returns their paths.
func (w world) leaveLeftovers() []string {
	f := w.f
	app := f.appDir("web")
	unpack := filepath.Join(app, tmpPrefix+"5-0123456789ab-123")
	if err := os.MkdirAll(filepath.Join(unpack, "bin"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unpack, "bin", "half"), []byte("partial"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	link := filepath.Join(app, tmpLinkPrefix+"abc")
	if err := os.Symlink(w.m1.Dir(), link); err != nil {
		f.t.Fatal(err)
	}
	stateTmp := filepath.Join(app, tmpPrefix+stateName+"-999")
	metaTmp := filepath.Join(app, metaDirName, tmpPrefix+"x.json-1")
	orphanMeta := filepath.Join(app, metaDirName, "9.9-0123456789ab.json")
	for _, p := range []string{stateTmp, metaTmp, orphanMeta} {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	return []string{unpack, link, stateTmp, metaTmp, orphanMeta}
}

// TestInterruptedHealthCheckResumes covers a crash after the switch and
// before the health check passed: installing the release again runs the
// check instead of reporting it already current.
func TestInterruptedHealthCheckResumes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		version string
		pending bool // the crash also lost the final state write
		wantErr error
	}{
		{"healthy, recorded", "2", false, nil},
		{"healthy, pending", "2", true, nil},
		{"unhealthy, recorded", "sick2", false, ErrHealthFailed},
		{"unhealthy, pending", "sick2", true, ErrHealthFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config()
			m1, p1 := f.bundle("web", "1")
			m2, p2 := f.bundle("web", tc.version)
			f.install(f.installer(cfg), m1, p1)
			noCheck := cfg
			noCheck.HealthCheck = ""
			f.install(f.installer(noCheck), m2, p2)
			w := world{f: f, m1: m1, m2: m2}
			if tc.pending {
				w.writeState(stateFile{Current: &m1, Pending: &switchTo{Current: &m2, Previous: &m1, Unchecked: true}})
			} else {
				w.writeState(stateFile{Current: &m2, Previous: &m1, Unchecked: true})
			}

			inst := f.installer(cfg)
			f.wantActive(inst, "web", &m2, &m1) // it is what runs, checked or not
			if pending, err := inst.HealthPending("web"); !pending || err != nil {
				t.Errorf("HealthPending = %v, %v; want true", pending, err)
			}
			res, err := inst.Install(t.Context(), m2, p2)

			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("install = %v; want %v", err, tc.wantErr)
			}
			if res.AlreadyCurrent {
				t.Error("AlreadyCurrent for a release whose health check never ran")
			}
			if f.runs("health", tc.version) != 1 {
				t.Errorf("health check ran %d times; want 1", f.runs("health", tc.version))
			}
			if tc.wantErr != nil {
				f.wantActive(inst, "web", &m1, nil)
				if exists(f.releaseDir(m2)) {
					t.Error("unhealthy release dir kept")
				}
			} else {
				f.wantActive(inst, "web", &m2, &m1)
				// Checked now: the next install of it is a no-op.
				if res := f.install(inst, m2, p2); !res.AlreadyCurrent {
					t.Error("second install after the check is not AlreadyCurrent")
				}
			}
			if pending, err := inst.HealthPending("web"); pending || err != nil {
				t.Errorf("HealthPending after the check = %v, %v; want false", pending, err)
			}
			if st := f.readState("web"); st.Unchecked || st.Pending != nil {
				t.Errorf("state.json = %+v; want checked and no pending switch", st)
			}
		})
	}
}
