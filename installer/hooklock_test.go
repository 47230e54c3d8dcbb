package installer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/swarmdeploy/swarm/release"
)

// driverEnv, set in the environment of this test binary, makes it an
// agent-like driver (runDriver) instead of running tests.
const driverEnv = "SWARM_INSTALLER_TEST_DRIVER"

// driverSpec is what a driver process installs, and how.
type driverSpec struct {
	Dir, Hook   string
	KillGrace   time.Duration
	HookTimeout time.Duration
	Manifest    release.Manifest
	Bundle      string
}

// runDriver is the driver process: one Installer that installs one release,
// as an agent would, until it is done or killed.
func runDriver(spec string) int {
	var d driverSpec
	if err := json.Unmarshal([]byte(spec), &d); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		return 2
	}
	inst, err := New(Config{Dir: d.Dir, Hook: d.Hook, KillGrace: d.KillGrace, HookTimeout: d.HookTimeout}, zap.NewNop())
	if err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		return 2
	}
	if _, err := inst.Install(context.Background(), d.Manifest, d.Bundle); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		return 1
	}
	return 0
}

// overlapHook records every run in out/runs as "start <ns> <pid>" and
// "end <ns> <pid>" (or "killed <ns> <pid>" when SIGTERM stops it, in mode
// "term"; mode "ignore" ignores SIGTERM). At its start it looks for runs
// still alive ("overlap <pid> <other>") and for their marker files in the
// release directory ("dirgone <pid> <other>": the directory was replaced
// under them), and whether it got the hook lock's descriptor ("inherited
// <pid> lock"). The first run sleeps until it is killed; later runs return.
const overlapHook = `
out=@OUT@
echo "start $(date +%s%N) $$" >> "$out/runs"
for p in $(cat "$out/pids" 2>/dev/null); do
	case "$(cat /proc/$p/stat 2>/dev/null)" in
	""|*") Z "*) ;;
	*)
		echo "overlap $$ $p" >> "$out/runs"
		[ -e "marker-$p" ] || echo "dirgone $$ $p" >> "$out/runs"
		;;
	esac
done
ls -l /proc/$$/fd | grep -q hook.lock && echo "inherited $$ lock" >> "$out/runs"
echo $$ >> "$out/pids"
cut -d' ' -f5 /proc/$$/stat >> "$out/pgids"
touch "marker-$$"
case "$(cat "$out/mode")" in
term) trap 'echo "killed $(date +%s%N) $$" >> "$out/runs"; exit 143' TERM ;;
ignore) trap '' TERM ;;
esac
if [ ! -e "$out/first" ]; then
	echo $$ > "$out/first"
	sleep 300 &
	wait
fi
[ -e "marker-$$" ] || echo "dirgone $$ $$" >> "$out/runs"
echo "end $(date +%s%N) $$" >> "$out/runs"
`

// TestHookRunsNeverOverlapAcrossAgentRestart: an agent-like process is
// killed with SIGKILL in the middle of an install hook; a new Installer on
// the same root installs the same release again. The second hook run
// starts only once the first has ended (it is killed with its tree first),
// and the release directory is not replaced under the first. Issue 14: the
// restarted agent deleted the directory and ran a second hook beside the
// first.
func TestHookRunsNeverOverlapAcrossAgentRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// mode is how the hook takes SIGTERM; grace the driver's
		// KillGrace: how long its orphaned shim lets the hook live.
		mode  string
		grace time.Duration
		// stopsOrphan: the new Installer finds the orphan holding the
		// lock and says it stops it.
		stopsOrphan bool
	}{
		{"hook stops on SIGTERM", "term", time.Second, false},
		{"hook ignores SIGTERM", "ignore", 4 * time.Second, true},
		{"hook ignores SIGTERM, orphan with a long grace", "ignore", 10 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if err := os.WriteFile(filepath.Join(f.out, "mode"), []byte(tc.mode), 0o644); err != nil {
				t.Fatal(err)
			}
			hook := f.script("overlap", overlapHook)
			m, p := f.bundle("web", "1")
			t.Cleanup(func() { killRuns(t, f.out) })

			spec, err := json.Marshal(driverSpec{Dir: f.root, Hook: hook, KillGrace: tc.grace,
				HookTimeout: 10 * time.Minute, Manifest: m, Bundle: p})
			if err != nil {
				t.Fatal(err)
			}
			driver := exec.Command(os.Args[0], "-test.run=^$")
			driver.Env = append(os.Environ(), driverEnv+"="+string(spec))
			driver.Stderr = os.Stderr
			if err := driver.Start(); err != nil {
				t.Fatal(err)
			}
			waitFile(t, filepath.Join(f.out, "first"))
			if err := driver.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = driver.Wait()

			core, logs := observer.New(zapcore.InfoLevel)
			cfg := Config{Dir: f.root, Hook: hook, HookTimeout: time.Minute, KillGrace: time.Second}
			inst, err := New(cfg, zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core())))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if _, err := inst.Install(ctx, m, p); err != nil {
				t.Fatalf("install after the restart: %v", err)
			}

			runs := readRuns(t, filepath.Join(f.out, "runs"))
			if len(runs.starts) != 2 {
				t.Fatalf("%d hook runs; want 2:\n%s", len(runs.starts), runs.raw)
			}
			if len(runs.bad) > 0 {
				t.Errorf("hook runs overlapped, or got the lock: %q\n%s", runs.bad, runs.raw)
			}
			first, second := runs.starts[0], runs.starts[1]
			if end, ok := runs.ends[first.pid]; ok && end > second.ns {
				t.Errorf("run %d ended %v after run %d started\n%s", first.pid, time.Duration(end-second.ns), second.pid, runs.raw)
			}
			if _, ok := runs.ends[second.pid]; !ok {
				t.Errorf("run %d did not finish\n%s", second.pid, runs.raw)
			}
			waitGone(t, first.pid)
			if !isDir(filepath.Join(f.releaseDir(m))) || f.link("web") != m.Dir() {
				t.Errorf("release %s not current after the second install", m.Dir())
			}
			stopped := logs.FilterMessageSnippet("earlier agent process").Len() > 0
			if tc.stopsOrphan && !stopped {
				t.Errorf("no log line about stopping the earlier hook run; logs: %v", messages(logs))
			}
		})
	}
}

// hookRun is one "start" line of out/runs.
type hookRun struct {
	ns  int64
	pid int
}

type runRecord struct {
	raw    string
	starts []hookRun
	ends   map[int]int64 // pid: "end" or "killed" time
	bad    []string      // "overlap" and "dirgone" lines
}

func readRuns(t *testing.T, path string) runRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := runRecord{raw: string(b), ends: map[int]int64{}}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("runs: bad line %q", line)
		}
		switch f[0] {
		case "overlap", "dirgone", "inherited":
			r.bad = append(r.bad, line)
			continue
		}
		ns, err1 := strconv.ParseInt(f[1], 10, 64)
		pid, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("runs: bad line %q", line)
		}
		if f[0] == "start" {
			r.starts = append(r.starts, hookRun{ns, pid})
		} else {
			r.ends[pid] = ns
		}
	}
	return r
}

// killRuns kills the process groups of every recorded hook run: without
// the lock, a first run would sleep on past the test.
func killRuns(t *testing.T, out string) {
	b, _ := os.ReadFile(filepath.Join(out, "pgids"))
	for _, s := range strings.Fields(string(b)) {
		if pgid, err := strconv.Atoi(s); err == nil && pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	b, _ = os.ReadFile(filepath.Join(out, "pids"))
	for _, s := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(s); err == nil {
			waitGone(t, pid)
		}
	}
}

func messages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Message)
	}
	return out
}
