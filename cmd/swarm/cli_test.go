package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the real binary as separate processes, the way operators
// and their scripts do.

var swarmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "swarm-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	swarmBin = filepath.Join(dir, "swarm")
	build := exec.Command("go", "build", "-o", swarmBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build swarm:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the binary to completion within timeout.
func run(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, swarmBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("swarm %s: did not finish within %s\nstderr: %s", strings.Join(args, " "), timeout, errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("swarm %s: %v", strings.Join(args, " "), err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// daemon starts a long-running swarm process and stops it at cleanup.
type daemon struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.Write(p)
}

func (d *daemon) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(swarmBin, args...), done: make(chan error, 1)}
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
			t.Errorf("swarm %s did not stop within 15s of SIGINT", args[0])
		}
		if t.Failed() {
			t.Logf("logs of swarm %s:\n%s", args[0], d.Logs())
		}
	})
	return d
}

// readAddrs waits for a daemon's --addr-file and parses it.
func readAddrs(t *testing.T, d *daemon, path string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited before writing %s: %v\n%s", path, err, d.Logs())
		default:
		}
		if f, err := os.Open(path); err == nil {
			m := map[string]string{}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					m[k] = v
				}
			}
			f.Close()
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s after 30s\n%s", path, d.Logs())
	return nil
}

func repo(t *testing.T, parts ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"..", ".."}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cluster is a seeder process and its key, for the CLI tests.
type cluster struct {
	dir, key, pub, api, gossip string
}

func startSeeder(t *testing.T) cluster {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if r := run(t, 10*time.Second, "keygen", "--out", keys); r.code != 0 {
		t.Fatalf("keygen: %d %s", r.code, r.stderr)
	}
	c := cluster{dir: dir, key: filepath.Join(keys, "swarm.key"), pub: filepath.Join(keys, "swarm.pub")}
	addrs := filepath.Join(dir, "seeder.addrs")
	d := startDaemon(t, "seeder", "--store", filepath.Join(dir, "store"), "--key", c.key, "--name", "seeder",
		"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--api", "127.0.0.1:0", "--addr-file", addrs)
	a := readAddrs(t, d, addrs)
	c.api, c.gossip = a["api"], a["gossip"]
	return c
}

func TestKeygenModes(t *testing.T) {
	dir := t.TempDir()
	r := run(t, 10*time.Second, "keygen", "--out", dir)
	if r.code != 0 {
		t.Fatalf("keygen: %d %s", r.code, r.stderr)
	}
	for name, want := range map[string]os.FileMode{"swarm.key": 0o600, "swarm.pub": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, st.Mode().Perm(), want)
		}
	}
	// A second keygen must not overwrite the key.
	if r := run(t, 10*time.Second, "keygen", "--out", dir); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second keygen: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestPublishToAgents(t *testing.T) {
	c := startSeeder(t)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("agent-%d", i)
		d := startDaemon(t, "agent", "--data", filepath.Join(c.dir, name), "--name", name, "--join", c.gossip,
			"--trust", c.pub, "--hook", repo(t, "testdata", "hooks", "install.sh"),
			"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--addr-file", filepath.Join(c.dir, name+".addrs"))
		readAddrs(t, d, filepath.Join(c.dir, name+".addrs"))
	}
	r := run(t, time.Minute, "publish", repo(t, "testdata", "apps", "hello", "v1"), "--app", "hello", "--version", "1.0.0",
		"--key", c.key, "--seeder", c.api)
	if r.code != 0 {
		t.Fatalf("publish: %d %s", r.code, r.stderr)
	}
	for _, want := range []string{"release id  sha256:", "infohash", "magnet:?xt=urn:btih:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("publish output lacks %q:\n%s", want, r.stdout)
		}
	}
	var id string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "release" && f[1] == "id" {
			id = f[2]
		}
	}

	type status struct {
		Nodes []struct {
			Name string `json:"name"`
			Apps []struct {
				App       string `json:"app"`
				Version   string `json:"version"`
				ReleaseID string `json:"release_id"`
				Phase     string `json:"phase"`
			} `json:"apps"`
		} `json:"nodes"`
	}
	var st status
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := run(t, 10*time.Second, "status", "--seeder", c.api, "--json")
		if r.code != 0 {
			t.Fatalf("status: %d %s", r.code, r.stderr)
		}
		st = status{}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, r.stdout)
		}
		active := 0
		for _, n := range st.Nodes {
			for _, a := range n.Apps {
				if a.App == "hello" && a.Version == "1.0.0" && a.ReleaseID == id && a.Phase == "active" {
					active++
				}
			}
		}
		if active == 3 && len(st.Nodes) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s, %d of 3 agents active on %s:\n%s", active, id, r.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The table form is aligned and names every node.
	r = run(t, 10*time.Second, "status", "--seeder", c.api)
	for _, n := range []string{"agent-1", "agent-2", "agent-3", "active"} {
		if !strings.Contains(r.stdout, n) {
			t.Errorf("status table lacks %q:\n%s", n, r.stdout)
		}
	}
	// The app really runs on a node.
	out, err := exec.Command(filepath.Join(c.dir, "agent-2", "releases", "hello", "current", "bin", "hello")).Output()
	if err != nil || !strings.Contains(string(out), "hello from v1") {
		t.Errorf("current release does not run: %v %q", err, out)
	}
}

// errLine checks that a failed command printed exactly one "swarm: " line
// and that it says what is expected.
func errLine(t *testing.T, r result, wantCode int, wants ...string) {
	t.Helper()
	if r.code != wantCode {
		t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, wantCode, r.stderr)
	}
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "swarm: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("want exactly one 'swarm: ' error line, got %d:\n%s", len(lines), r.stderr)
	}
	for _, w := range wants {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error line %q does not mention %q", lines[0], w)
		}
	}
}

func storeEntries(t *testing.T, c cluster) []string {
	t.Helper()
	var names []string
	for _, sub := range []string{"releases", "tmp"} {
		es, err := os.ReadDir(filepath.Join(c.dir, "store", sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			names = append(names, sub+"/"+e.Name())
		}
	}
	return names
}

func TestBadInput(t *testing.T) {
	c := startSeeder(t)
	empty := t.TempDir()
	v1 := repo(t, "testdata", "apps", "hello", "v1")
	v2 := repo(t, "testdata", "apps", "hello", "v2")
	if r := run(t, time.Minute, "publish", v1, "--app", "hello", "--version", "1.0.0", "--key", c.key, "--seeder", c.api); r.code != 0 {
		t.Fatalf("first publish: %d %s", r.code, r.stderr)
	}
	before := storeEntries(t, c)

	openKey := filepath.Join(t.TempDir(), "open.key")
	b, err := os.ReadFile(c.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(openKey, b, 0o640); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	publish := func(path, app, version, key, seeder string) []string {
		return []string{"publish", path, "--app", app, "--version", version, "--key", key, "--seeder", seeder}
	}
	cases := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"publish missing path", publish(filepath.Join(empty, "nope"), "hello", "3.0.0", c.key, c.api), exitUsage, []string{"does not exist"}},
		{"publish empty dir", publish(empty, "hello", "3.0.0", c.key, c.api), exitUsage, []string{"no regular file"}},
		{"publish invalid app", publish(v1, "Bad/App", "3.0.0", c.key, c.api), exitUsage, []string{"app name"}},
		{"publish invalid version", publish(v1, "hello", "../1", c.key, c.api), exitUsage, []string{"version"}},
		{"publish version conflict", publish(v2, "hello", "1.0.0", c.key, c.api), exitUsage, []string{"already published", "new version"}},
		{"publish unreachable seeder", publish(v1, "hello", "3.0.0", c.key, "http://127.0.0.1:1"), exitFailure, []string{"unreachable", "--seeder"}},
		{"publish missing key", publish(v1, "hello", "3.0.0", filepath.Join(empty, "no.key"), c.api), exitUsage, []string{"does not exist", "swarm keygen"}},
		{"publish group-readable key", publish(v1, "hello", "3.0.0", openKey, c.api), exitUsage, []string{"chmod 600"}},
		{"seeder group-readable key", []string{"seeder", "--store", t.TempDir(), "--key", openKey}, exitUsage, []string{"chmod 600"}},
		{"seeder port in use", []string{"seeder", "--store", t.TempDir(), "--key", c.key, "--gossip", "127.0.0.1:0",
			"--torrent", "127.0.0.1:0", "--api", busy.Addr().String()}, exitFailure, []string{busy.Addr().String(), "in use"}},
		{"agent unwritable data dir", []string{"agent", "--data", filepath.Join(notDir, "data"), "--trust", c.pub,
			"--join", c.gossip, "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0"}, exitFailure, []string{"data dir", "--data"}},
		{"agent malformed join", []string{"agent", "--data", t.TempDir(), "--trust", c.pub, "--join", "127.0.0.1:notaport"}, exitUsage, []string{"--join"}},
		{"agent torrent port in use", []string{"agent", "--data", t.TempDir(), "--trust", c.pub, "--join", c.gossip,
			"--gossip", "127.0.0.1:0", "--torrent", busy.Addr().String()}, exitFailure, []string{"in use"}},
		{"agent gossip port in use", []string{"agent", "--data", t.TempDir(), "--trust", c.pub, "--join", c.gossip,
			"--gossip", busy.Addr().String(), "--torrent", "127.0.0.1:0"}, exitFailure, []string{"in use", "--gossip"}},
		{"agent missing trust", []string{"agent", "--data", t.TempDir(), "--join", c.gossip}, exitUsage, []string{"--trust"}},
		{"agent hook env PATH", []string{"agent", "--data", t.TempDir(), "--trust", c.pub, "--join", c.gossip, "--hook-env", "PATH"},
			exitUsage, []string{"--hook-env", "fixed PATH"}},
		{"agent hook env not a name", []string{"agent", "--data", t.TempDir(), "--trust", c.pub, "--join", c.gossip, "--hook-env", "A=B"},
			exitUsage, []string{"--hook-env", "not a variable name"}},
		{"unknown flag", []string{"status", "--nope"}, exitUsage, []string{"unknown flag"}},
		{"bench zero nodes", []string{"bench", "sim", "--nodes", "0"}, exitUsage, []string{"--nodes"}},
		{"bench negative nodes", []string{"bench", "real", "--nodes", "-3"}, exitUsage, []string{"--nodes"}},
		{"bench zero rate", []string{"bench", "real", "--node-up", "0"}, exitUsage, []string{"--node-up", "positive rate"}},
		{"bench bad size", []string{"bench", "sim", "--size", "lots"}, exitUsage, []string{"--size"}},
		{"bench too large for disk", []string{"bench", "real", "--nodes", "5000", "--size", "64GiB"}, exitUsage, []string{"needs about", "free"}},
		{"bench too many descriptors", []string{"bench", "real", "--nodes", "100000", "--size", "1KiB"}, exitUsage, []string{"file descriptors", "ulimit -n"}},
		{"bench sim too large", []string{"bench", "sim", "--nodes", "100", "--size", "4096TiB"}, exitUsage, []string{"--size"}},
		{"bench sim rumour too wide", []string{"bench", "sim", "--nodes", "100", "--rumour-fanout", "65"}, exitUsage, []string{"--rumour-fanout", "at most 64"}},
		{"bench sim negative accept", []string{"bench", "sim", "--nodes", "100", "--gossip-accept", "-1s"}, exitUsage, []string{"--gossip-accept", "negative"}},
		{"bench sim too many pieces", []string{"bench", "sim", "--nodes", "100", "--sim-pieces", "40000"}, exitUsage, []string{"--sim-pieces", "from 1 to 32768"}},
		{"bench rollback no runs", []string{"bench", "rollback", "--runs", "0"}, exitUsage, []string{"--runs"}},
		{"bench rollback sim flag on real", []string{"bench", "rollback", "--nodes", "3", "--hook-time", "1s"}, exitUsage, []string{"--hook-time", "add --sim"}},
		{"bench rollback too many canaries", []string{"bench", "rollback", "--nodes", "3", "--auto", "--canaries", "3"}, exitUsage, []string{"--canaries"}},
		{"bench rollback sim too large", []string{"bench", "rollback", "--sim", "--nodes", "30000"}, exitUsage, []string{"--nodes", "at most 20000"}},
		{"bench rollback sim moved past nodes", []string{"bench", "rollback", "--sim", "--nodes", "10", "--moved", "11"}, exitUsage, []string{"--moved"}},
		{"status unreachable seeder", []string{"status", "--seeder", "http://127.0.0.1:1"}, exitFailure, []string{"unreachable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := run(t, 20*time.Second, tc.args...)
			errLine(t, r, tc.code, tc.wants...)
			t.Logf("%s: %s (%.1fs)", tc.name, strings.TrimSpace(lastLine(r.stderr)), time.Since(start).Seconds())
		})
	}
	if after := storeEntries(t, c); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("failed publishes changed the store:\nbefore %v\nafter  %v", before, after)
	}
}

// TestHookExec runs the hidden command the agent runs each hook under: the
// hook's exit status comes back as the command's.
func TestHookExec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--grace", "1s", "--", "sh", "-c", "echo hi; exit 7"}, 7, "hi\n"},
		{[]string{"--log-cap", "2", "--", "sh", "-c", "echo hello"}, 0, "he\n==== output over the log cap of 2 bytes: 4 bytes dropped\n"},
		{[]string{"--", "/nonexistent/hook"}, 127, ""},
		{nil, 125, ""},
	} {
		r := run(t, 20*time.Second, append([]string{"hook-exec"}, tc.args...)...)
		if r.code != tc.code || r.stdout != tc.out {
			t.Errorf("hook-exec %q: code %d, stdout %q, stderr %q; want %d, %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.out)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestHelpHasExamples(t *testing.T) {
	for _, cmd := range []string{"keygen", "seeder", "agent", "publish", "status", "version"} {
		r := run(t, 10*time.Second, cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("swarm %s --help: code %d, no Examples section:\n%s", cmd, r.code, r.stdout)
		}
	}
	if r := run(t, 10*time.Second, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "swarm ") {
		t.Errorf("swarm version: %d %q", r.code, r.stdout)
	}
}
