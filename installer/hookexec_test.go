package installer

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/swarmdeploy/swarm/release"
)

// TestHookEnvironment runs real hooks and compares the environment they
// were started with (/proc/$$/environ, not what a shell adds) with the
// documented one: PATH, the SWARM_* variables and the names passed through,
// nothing else. A secret in the agent's environment stays out.
func TestHookEnvironment(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
	t.Setenv("DEPLOY_TOKEN", "passed on purpose")
	f := newFixture(t)
	record := `tr '\0' '\n' < /proc/$$/environ > "@OUT@/environ-$1"`
	cfg := f.config()
	cfg.Hook = f.script("hook-env", record)
	cfg.HealthCheck = f.script("health-env", record)
	cfg.HookEnv = []string{"DEPLOY_TOKEN", "NOT_SET_ANYWHERE"}
	inst := f.installer(cfg)
	m1, p1 := f.bundle("web", "1")
	m2, p2 := f.bundle("web", "2")
	f.install(inst, m1, p1)
	f.install(inst, m2, p2)
	if _, err := inst.Rollback(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		verb     string
		cur, was release.Manifest
	}{
		{"install", m2, m1},
		{"health", m2, m1},
		{"rollback", m1, m2},
	} {
		want := map[string]string{
			"PATH":               HookPath,
			"SWARM_APP":          "web",
			"SWARM_VERSION":      tc.cur.Version,
			"SWARM_RELEASE_ID":   string(tc.cur.ReleaseID),
			"SWARM_RELEASE_DIR":  f.releaseDir(tc.cur),
			"SWARM_PREVIOUS_DIR": f.releaseDir(tc.was),
			"DEPLOY_TOKEN":       "passed on purpose",
		}
		b, err := os.ReadFile(filepath.Join(f.out, "environ-"+tc.verb))
		if err != nil {
			t.Fatalf("%s did not run: %v", tc.verb, err)
		}
		got := map[string]string{}
		for _, kv := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s environment:\n%s\nwant exactly %v", tc.verb, b, want)
		}
	}
}

// leakyHook starts three processes that try to outlive it, records their
// pids and process groups, and then does what its version says: "fail*"
// exits 3, "hang*" sleeps far past any timeout.
//
//	setsid   a child in a session (and process group) of its own
//	double   a grandchild orphaned by a double fork, reparented away
//	daemon   both: a double fork whose grandchild calls setsid
const leakyHook = `
out=@OUT@
echo $$ > "$out/hook.pid"
setsid sh -c 'echo $$ > "$1/setsid.pid"; exec sleep 300' sh "$out" &
( sleep 300 & echo $! > "$out/double.pid" ) &
( setsid sh -c 'echo $$ > "$1/daemon.pid"; exec sleep 300' sh "$out" & ) &
for f in setsid double daemon; do
	while [ ! -s "$out/$f.pid" ]; do sleep 0.01; done
	pid=$(cat "$out/$f.pid")
	cut -d' ' -f5 "/proc/$pid/stat" > "$out/$f.pgid"
done
cut -d' ' -f5 /proc/$$/stat > "$out/hook.pgid"
echo started
case "$SWARM_VERSION" in
fail*) exit 3 ;;
hang*) exec sleep 300 ;;
esac
`

// TestFailedHookKillsEveryDescendant: a hook that times out, fails or is
// cancelled leaves no process behind, not even those that left its process
// group or were orphaned by a double fork.
func TestFailedHookKillsEveryDescendant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		version string
		cancel  bool
		want    error
	}{
		{"timeout", "hang1", false, ErrHookTimeout},
		{"exit 3", "fail1", false, ErrHookFailed},
		{"cancelled", "hang2", true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config()
			cfg.Hook = f.script("leaky", leakyHook)
			cfg.HookTimeout = 2 * time.Second
			if tc.cancel {
				cfg.HookTimeout = time.Minute
			}
			cfg.KillGrace = 200 * time.Millisecond
			inst := f.installer(cfg)
			m, p := f.bundle("web", tc.version)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				go func() {
					waitFile(t, filepath.Join(f.out, "hook.pgid"))
					cancel()
				}()
			}

			_, err := inst.Install(ctx, m, p)

			if !errors.Is(err, tc.want) {
				t.Fatalf("install = %v; want %v", err, tc.want)
			}
			hookPgid := readInt(t, filepath.Join(f.out, "hook.pgid"))
			for _, name := range []string{"hook", "setsid", "double", "daemon"} {
				pid := readInt(t, filepath.Join(f.out, name+".pid"))
				if name == "setsid" || name == "daemon" {
					if pgid := readInt(t, filepath.Join(f.out, name+".pgid")); pgid == hookPgid {
						t.Errorf("%s child %d stayed in the hook's process group %d: the test proves nothing", name, pid, pgid)
					}
				}
				waitGone(t, pid)
			}
			log, _ := os.ReadFile(f.logPath(m))
			if !bytes.Contains(log, []byte("started")) {
				t.Errorf("hook log lacks the hook's output:\n%s", log)
			}
		})
	}
}

// TestSuccessfulHookLeavesItsService: what a hook that succeeds starts on
// purpose keeps running, even when it left the process group, and one that
// writes to the stdout it inherited still reaches the log (within the cap)
// instead of dying of SIGPIPE once the hook has exited.
func TestSuccessfulHookLeavesItsService(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	cfg.Hook = f.script("starts-service", `
out=@OUT@
setsid sh -c 'echo $$ > "$1/quiet.pid"; exec sleep 300' sh "$out" >/dev/null 2>&1 &
( setsid sh -c 'echo $$ > "$1/chatty.pid"; while :; do echo tick; sleep 0.05; done' sh "$out" & ) &
while [ ! -s "$out/quiet.pid" ] || [ ! -s "$out/chatty.pid" ]; do sleep 0.01; done
echo "service started"
`)
	inst := f.installer(cfg)
	m, p := f.bundle("web", "1")

	f.install(inst, m, p)

	pids := map[string]int{}
	for _, name := range []string{"quiet", "chatty"} {
		pid := readInt(t, filepath.Join(f.out, name+".pid"))
		pids[name] = pid
		t.Cleanup(func() {
			unix.Kill(pid, unix.SIGKILL)
			waitGone(t, pid)
		})
	}
	// The log keeps growing after Install returned: the drainer copies the
	// chatty service's output, which is proof enough that it runs.
	log := f.logPath(m)
	footer := func() (ticks int) {
		b, _ := os.ReadFile(log)
		_, after, ok := bytes.Cut(b, []byte(" install: ok after"))
		if !ok {
			t.Fatalf("hook log lacks the install footer:\n%s", b)
		}
		return bytes.Count(after, []byte("tick"))
	}
	deadline := time.Now().Add(30 * time.Second)
	for footer() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no output from the service in the hook log after the hook exited")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, pid := range pids {
		if !alive(pid) {
			t.Errorf("%s service %d did not survive the hook", name, pid)
		}
	}
}

// TestHookLogCap: a hook that writes 10 MiB leaves 1 MiB of it in its log
// and one line saying how much was dropped.
func TestHookLogCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	cfg.Hook = f.script("chatty", `head -c 10485760 /dev/zero | tr '\0' x`)
	inst := f.installer(cfg)
	m, p := f.bundle("web", "1")

	f.install(inst, m, p)

	b, err := os.ReadFile(f.logPath(m))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("x")); n != DefaultLogCap {
		t.Errorf("log holds %d bytes of output; want the cap, %d", n, DefaultLogCap)
	}
	want := "\n==== output over the log cap of 1048576 bytes: 9437184 bytes dropped\n"
	if !bytes.Contains(b, []byte(want)) {
		t.Errorf("log lacks %q", want)
	}
	if len(b) > DefaultLogCap+4096 {
		t.Errorf("log is %d bytes", len(b))
	}
}

func TestCheckHookEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		names []string
		want  string // substring of the error; "" for valid
	}{
		{nil, ""},
		{[]string{"HOME", "LANG", "HTTPS_PROXY", "_x1"}, ""},
		{[]string{"PATH"}, "fixed PATH"},
		{[]string{"SWARM_APP"}, "set by swarm"},
		{[]string{"A=B"}, "not a variable name"},
		{[]string{""}, "not a variable name"},
		{[]string{"1X"}, "not a variable name"},
		{[]string{"HOME", "HOME"}, "given twice"},
	} {
		err := CheckHookEnv(tc.names)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckHookEnv(%q) = %v; want %q", tc.names, err, tc.want)
		}
	}
	if err := (&Config{Dir: "x", HookEnv: []string{"PATH"}}).Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("Validate with HookEnv PATH = %v; want ErrConfig", err)
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	tail := " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 424242 19 20"
	p, err := parseStat(7, "7 (a) (b c) S 42"+tail)
	if err != nil || p.comm != "a) (b c" || p.state != 'S' || p.ppid != 42 || p.start != 424242 {
		t.Errorf("parseStat = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "7 a S 1", "7 (a) S", "7 (a) S x" + tail} {
		if _, err := parseStat(7, bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestCapWriter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit  int64
		writes []string
		want   string
	}{
		{10, []string{"abc\n"}, "abc\n"},
		{4, []string{"ab", "cd", "ef"}, "abcd\n==== output over the log cap of 4 bytes: 2 bytes dropped\n"},
		{4, []string{"abc\n", "x"}, "abc\n==== output over the log cap of 4 bytes: 1 bytes dropped\n"},
		{0, []string{"x"}, "==== output over the log cap of 0 bytes: 1 bytes dropped\n"},
	} {
		var b bytes.Buffer
		c := &capWriter{w: &b, limit: tc.limit}
		for _, w := range tc.writes {
			c.put([]byte(w))
		}
		c.note()
		if b.String() != tc.want {
			t.Errorf("limit %d, writes %q: %q; want %q", tc.limit, tc.writes, b.String(), tc.want)
		}
	}
}

func readInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// waitFile polls until path exists and is not empty.
func waitFile(t *testing.T, path string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s never appeared", path)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (exists and is no zombie).
func alive(pid int) bool {
	if unix.Kill(pid, 0) != nil {
		return false
	}
	p, err := readProc(pid)
	return err == nil && p.state != 'Z'
}

// TestShimGuard: an Installer inside a program that was started as the shim
// but did not run it refuses to run hooks instead of starting itself again.
func TestShimGuard(t *testing.T) {
	t.Setenv(shimGuard, "1")
	f := newFixture(t)
	inst := f.installer(f.config())
	m, p := f.bundle("web", "1")

	_, err := inst.Install(t.Context(), m, p)

	if !errors.Is(err, ErrHookFailed) || !strings.Contains(err.Error(), "MaybeRunShim") {
		t.Fatalf("install = %v; want ErrHookFailed naming MaybeRunShim", err)
	}
	if f.runs("install", "1") != 0 {
		t.Error("the hook ran")
	}
}
