package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// cluster is a seeder process, its keys and its API token, for the CLI
// tests: key and pub are the release key (swarm publish), rkey and rpub the
// seeder's rollout key, gkey the gossip key file.
type cluster struct {
	dir, key, pub, rkey, rpub, api, gossip string
	tokenFile, token                       string
	gkey                                   string
	seeder                                 *daemon
}

// startSeeder starts a seeder with an API token and puts the token in
// $SWARM_API_TOKEN for the rest of the test, so every command the test
// runs authenticates (t.Setenv: these tests do not run in parallel).
func startSeeder(t *testing.T, extra ...string) cluster {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	for _, role := range []string{"release", "rollout"} {
		if r := run(t, 10*time.Second, "keygen", "--role", role, "--out", keys); r.code != 0 {
			t.Fatalf("keygen: %d %s", r.code, r.stderr)
		}
	}
	c := cluster{dir: dir, key: filepath.Join(keys, "release.key"), pub: filepath.Join(keys, "release.pub"),
		rkey: filepath.Join(keys, "rollout.key"), rpub: filepath.Join(keys, "rollout.pub"),
		tokenFile: filepath.Join(keys, "api-token"), gkey: filepath.Join(keys, "gossip.key")}
	if r := run(t, 10*time.Second, "api-token", "generate", "--out", c.tokenFile); r.code != 0 {
		t.Fatalf("api-token generate: %d %s", r.code, r.stderr)
	}
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(b))
	t.Setenv("SWARM_API_TOKEN", c.token)
	if r := run(t, 10*time.Second, "gossip-key", "generate", "--out", c.gkey); r.code != 0 {
		t.Fatalf("gossip-key generate: %d %s", r.code, r.stderr)
	}
	addrs := filepath.Join(dir, "seeder.addrs")
	args := []string{"seeder", "--store", filepath.Join(dir, "store"), "--key", c.rkey, "--trust-release", c.pub, "--name", "seeder",
		"--api-token-file", c.tokenFile, "--gossip-key-file", c.gkey,
		"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--api", "127.0.0.1:0", "--addr-file", addrs}
	c.seeder = startDaemon(t, append(args, extra...)...)
	a := readAddrs(t, c.seeder, addrs)
	c.api, c.gossip = a["api"], a["gossip"]
	return c
}

func TestKeygenModes(t *testing.T) {
	dir := t.TempDir()
	for _, role := range []string{"release", "rollout"} {
		r := run(t, 10*time.Second, "keygen", "--role", role, "--out", dir)
		if r.code != 0 || !strings.Contains(r.stdout, "role         "+role) {
			t.Fatalf("keygen --role %s: %d %s %s", role, r.code, r.stdout, r.stderr)
		}
		for name, want := range map[string]os.FileMode{role + ".key": 0o600, role + ".pub": 0o644} {
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s mode %04o, want %04o", name, st.Mode().Perm(), want)
			}
		}
	}
	// A second keygen must not overwrite the key.
	if r := run(t, 10*time.Second, "keygen", "--role", "release", "--out", dir); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second keygen: code %d, stderr %q", r.code, r.stderr)
	}
	errLine(t, run(t, 10*time.Second, "keygen", "--out", t.TempDir()), exitUsage, "--role is required", "release", "rollout")
	errLine(t, run(t, 10*time.Second, "keygen", "--role", "swarm", "--out", t.TempDir()), exitUsage, "--role", "key role")
}

// TestSignCommand: a seeder that wants 2 of 2 release signatures stores a
// release published with one, starts nothing, and starts the rollout when
// 'swarm sign' brings the second. A rollout key cannot sign a release.
func TestSignCommand(t *testing.T) {
	keys2 := t.TempDir()
	if r := run(t, 10*time.Second, "keygen", "--role", "release", "--out", keys2); r.code != 0 {
		t.Fatalf("keygen: %d %s", r.code, r.stderr)
	}
	key2, pub2 := filepath.Join(keys2, "release.key"), filepath.Join(keys2, "release.pub")
	c := startSeeder(t, "--trust-release", pub2, "--release-threshold", "2")
	v1 := repo(t, "testdata", "apps", "hello", "v1")
	r := run(t, time.Minute, "publish", v1, "--app", "hello", "--version", "1.0.0", "--key", c.key, "--seeder", c.api)
	if r.code != 0 || !strings.Contains(r.stdout, "waiting for release signatures: 1 of 2") {
		t.Fatalf("publish with 1 of 2: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, 10*time.Second, "rollout", "status", "hello", "--seeder", c.api); r.code == 0 {
		t.Fatalf("a rollout exists before the second signature:\n%s", r.stdout)
	}
	sign := func(key string) result {
		return run(t, 20*time.Second, "sign", "--app", "hello", "--version", "1.0.0", "--key", key, "--seeder", c.api)
	}
	errLine(t, sign(c.rkey), exitUsage, "rollout key", "--trust-release")
	errLine(t, run(t, 20*time.Second, "sign", "--app", "hello", "--version", "9.9.9", "--key", key2, "--seeder", c.api), exitUsage, "no version 9.9.9")
	r = sign(key2)
	if r.code != 0 || !strings.Contains(r.stdout, "signatures  2 of 2") || !strings.Contains(r.stdout, "rollout started") {
		t.Fatalf("sign: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, 10*time.Second, "rollout", "status", "hello", "--seeder", c.api, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"version": "1.0.0"`) {
		t.Fatalf("rollout status after the second signature: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := sign(key2); r.code != 0 || !strings.Contains(r.stdout, "already signed") {
		t.Fatalf("signing twice: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestPublishToAgents(t *testing.T) {
	c := startSeeder(t)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("agent-%d", i)
		d := startDaemon(t, "agent", "--data", filepath.Join(c.dir, name), "--name", name, "--join", c.gossip,
			"--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey, "--hook", repo(t, "testdata", "hooks", "install.sh"),
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
	for _, v := range []struct{ path, version string }{{v1, "1.0.0"}, {v2, "2.0.0"}} {
		if r := run(t, time.Minute, "publish", v.path, "--app", "hello", "--version", v.version, "--key", c.key, "--seeder", c.api); r.code != 0 {
			t.Fatalf("publish %s: %d %s", v.version, r.code, r.stderr)
		}
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
	openGossipKey := filepath.Join(t.TempDir(), "open-gossip.key")
	gk, err := os.ReadFile(c.gkey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(openGossipKey, gk, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openGossipKey, 0o644); err != nil {
		t.Fatal(err)
	}
	badGossipKey := filepath.Join(t.TempDir(), "bad-gossip.key")
	if err := os.WriteFile(badGossipKey, []byte("not a key\n"), 0o600); err != nil {
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
		{"publish signed by the rollout key", publish(v1, "hello", "3.0.0", c.rkey, c.api), exitUsage, []string{"rollout key", "release key"}},
		{"publish replays an older release", publish(v1, "hello", "1.0.0", c.key, c.api), exitUsage, []string{"published before", "swarm rollout rollback hello --env default --to 1.0.0"}},
		{"seeder group-readable key", []string{"seeder", "--store", t.TempDir(), "--key", openKey, "--trust-release", c.pub}, exitUsage, []string{"chmod 600"}},
		{"seeder without release keys", []string{"seeder", "--store", t.TempDir(), "--key", c.rkey}, exitUsage, []string{"--trust-release"}},
		{"seeder threshold above keys", []string{"seeder", "--store", t.TempDir(), "--key", c.rkey, "--trust-release", c.pub, "--release-threshold", "2"}, exitUsage, []string{"--release-threshold 2"}},
		{"seeder rollout key as release key", []string{"seeder", "--store", t.TempDir(), "--key", c.rkey, "--trust-release", c.rpub,
			"--api-token-file", c.tokenFile, "--gossip-key-file", c.gkey, "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--api", "127.0.0.1:0"}, exitUsage, []string{"both as a release key and as a rollout key"}},
		{"seeder port in use", []string{"seeder", "--store", t.TempDir(), "--key", c.rkey, "--trust-release", c.pub, "--api-token-file", c.tokenFile, "--gossip-key-file", c.gkey, "--gossip", "127.0.0.1:0",
			"--torrent", "127.0.0.1:0", "--api", busy.Addr().String()}, exitFailure, []string{busy.Addr().String(), "in use"}},
		{"agent unwritable data dir", []string{"agent", "--data", filepath.Join(notDir, "data"), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey,
			"--join", c.gossip, "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0"}, exitFailure, []string{"data dir", "--data"}},
		{"agent malformed join", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", "127.0.0.1:notaport"}, exitUsage, []string{"--join"}},
		{"agent torrent port in use", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey, "--join", c.gossip,
			"--gossip", "127.0.0.1:0", "--torrent", busy.Addr().String()}, exitFailure, []string{"in use"}},
		{"agent gossip port in use", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey, "--join", c.gossip,
			"--gossip", busy.Addr().String(), "--torrent", "127.0.0.1:0"}, exitFailure, []string{"in use", "--gossip"}},
		{"agent missing trust", []string{"agent", "--data", t.TempDir(), "--join", c.gossip}, exitUsage, []string{"--trust-release", "--trust-rollout"}},
		{"agent missing rollout key", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--join", c.gossip}, exitUsage, []string{"--trust-rollout"}},
		{"agent removed --trust", []string{"agent", "--data", t.TempDir(), "--trust", c.pub, "--join", c.gossip}, exitUsage, []string{"unknown flag: --trust"}},
		{"agent key in both roles", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.pub, "--gossip-key-file", c.gkey,
			"--join", c.gossip, "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0"}, exitUsage, []string{"both as a release key and as a rollout key", "one role"}},
		{"agent without gossip key", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", c.gossip,
			"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0"}, exitUsage, []string{"--gossip-key-file", "swarm gossip-key generate", "--insecure-gossip"}},
		{"seeder without gossip key", []string{"seeder", "--store", t.TempDir(), "--key", c.rkey, "--trust-release", c.pub, "--api-token-file", c.tokenFile,
			"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--api", "127.0.0.1:0"}, exitUsage, []string{"--gossip-key-file", "--insecure-gossip"}},
		{"agent gossip key readable by others", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", c.gossip,
			"--gossip-key-file", openGossipKey}, exitUsage, []string{"--gossip-key-file", "chmod 600 " + openGossipKey}},
		{"seeder gossip key readable by others", []string{"seeder", "--store", t.TempDir(), "--key", c.rkey, "--trust-release", c.pub,
			"--gossip-key-file", openGossipKey}, exitUsage, []string{"--gossip-key-file", "chmod 600 " + openGossipKey}},
		{"agent malformed gossip key", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", c.gossip,
			"--gossip-key-file", badGossipKey}, exitUsage, []string{"line 1 is not a base64 key", "swarm gossip-key generate"}},
		{"agent missing gossip key", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", c.gossip,
			"--gossip-key-file", filepath.Join(empty, "none.key")}, exitUsage, []string{"does not exist", "swarm gossip-key generate"}},
		{"agent gossip key and insecure", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", c.gossip,
			"--gossip-key-file", c.gkey, "--insecure-gossip"}, exitUsage, []string{"exclude each other"}},
		{"agent insecure cannot join an encrypted cluster", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--join", c.gossip,
			"--insecure-gossip", "--join-timeout", "3s", "--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0"}, exitFailure, []string{"join"}},
		{"gossip key exists", []string{"gossip-key", "generate", "--out", c.gkey}, exitUsage, []string{"already exists"}},
		{"agent hook env PATH", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey, "--join", c.gossip, "--hook-env", "PATH"},
			exitUsage, []string{"--hook-env", "fixed PATH"}},
		{"agent hook env not a name", []string{"agent", "--data", t.TempDir(), "--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey, "--join", c.gossip, "--hook-env", "A=B"},
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
	for _, cmd := range []string{"keygen", "api-token", "gossip-key", "seeder", "agent", "publish", "sign", "status", "version"} {
		r := run(t, 10*time.Second, cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("swarm %s --help: code %d, no Examples section:\n%s", cmd, r.code, r.stdout)
		}
	}
	if r := run(t, 10*time.Second, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "swarm ") {
		t.Errorf("swarm version: %d %q", r.code, r.stdout)
	}
}

// TestGossipKey: generate prints a fresh 32-byte key or writes a new 0600
// file; an agent with --insecure-gossip runs (in the clear) without one;
// and a running seeder takes a key added to its file on SIGHUP, without
// restarting, and keeps serving.
func TestGossipKey(t *testing.T) {
	r1 := run(t, 10*time.Second, "gossip-key", "generate")
	r2 := run(t, 10*time.Second, "gossip-key", "generate")
	k1, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r1.stdout))
	if r1.code != 0 || err != nil || len(k1) != 32 {
		t.Fatalf("generate: %d %q %v", r1.code, r1.stdout, err)
	}
	if r2.stdout == r1.stdout {
		t.Fatal("two generated keys are equal")
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	if r := run(t, 10*time.Second, "gossip-key", "generate", "--out", path); r.code != 0 {
		t.Fatalf("generate --out: %d %s", r.code, r.stderr)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}

	c := startSeeder(t)
	dir := t.TempDir()
	d := startDaemon(t, "agent", "--data", filepath.Join(dir, "data"), "--name", "clear", "--trust-release", c.pub, "--trust-rollout", c.rpub, "--insecure-gossip",
		"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--addr-file", filepath.Join(dir, "addrs"))
	readAddrs(t, d, filepath.Join(dir, "addrs"))
	if !strings.Contains(d.Logs(), "neither encrypted nor authenticated") {
		t.Errorf("an insecure agent does not warn:\n%s", d.Logs())
	}

	f, err := os.OpenFile(c.gkey, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(r2.stdout); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := c.seeder.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.seeder.Logs(), "gossip keys changed") {
		if time.Now().After(deadline) {
			t.Fatalf("the seeder did not install the new key on SIGHUP:\n%s", c.seeder.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-c.seeder.done:
		t.Fatalf("the seeder exited on SIGHUP: %v", err)
	default:
	}
	if r := run(t, 10*time.Second, "status", "--seeder", c.api, "--json"); r.code != 0 {
		t.Fatalf("status after SIGHUP: %d %s", r.code, r.stderr)
	}
}
