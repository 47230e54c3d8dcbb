package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// NamePrefix starts the name of every network namespace a Lab makes,
// followed by the harness's pid: "swf1234-hub", "swf1234-agent-03". Sweep
// finds the leftovers of a killed run by it.
const NamePrefix = "swf"

// DirPrefix starts the name of a run's scratch directory under the
// system's temporary directory, followed by the harness's pid; Sweep
// unmounts what a killed run left mounted below one.
const DirPrefix = "swarm-faults-"

// Subnet is the lab's network: the hub's bridge has no address, node i has
// 198.18.0.(10+i), the seeder 198.18.0.2. 198.18.0.0/15 is set aside for
// network benchmarks (RFC 2544), so it names nothing real, and every
// packet stays inside namespaces the lab made.
const Subnet = "198.18.0"

// cmdTimeout bounds each ip, tc or mount command.
const cmdTimeout = 15 * time.Second

// Lab is a private network of namespaces: a hub namespace holding a
// bridge, and one namespace per node joined to it by a veth pair whose two
// ends are both capped by a tc token bucket (tbf), so each node's upload
// and download are limited by the kernel. Close removes all of it.
type Lab struct {
	id    string // NamePrefix + pid
	hub   string // the hub namespace
	rate  string // tc rate of every link end, e.g. "50mbit"
	log   *zap.Logger
	nodes []*Node
	// mounts are tmpfs mount points to unmount on Close.
	mounts []string
	closed bool
}

// Node is one namespace on the lab's network.
type Node struct {
	Name  string // "seeder", "agent-03"
	NS    string // its network namespace
	Addr  string // its IPv4 address
	hubIf string // its veth end in the hub, "h3"
}

// NSPath is the namespace's file, for setns.
func (n *Node) NSPath() string { return filepath.Join("/var/run/netns", n.NS) }

// NewLab makes the hub namespace and its bridge. rate is the tc rate of
// each link end ("50mbit"). On error nothing is left behind.
func NewLab(ctx context.Context, rate string, log *zap.Logger) (*Lab, error) {
	l := &Lab{id: fmt.Sprintf("%s%d", NamePrefix, os.Getpid()), rate: rate, log: log}
	l.hub = l.id + "-hub"
	steps := [][]string{
		{"ip", "netns", "add", l.hub},
		{"ip", "-n", l.hub, "link", "set", "lo", "up"},
		{"ip", "-n", l.hub, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", l.hub, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			l.Close()
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	return l, nil
}

// AddNode makes a namespace for a node with the given host number
// (Subnet.host), joins it to the bridge and caps both ends of its link.
func (l *Lab) AddNode(ctx context.Context, name string, host int) (*Node, error) {
	n := &Node{Name: name, NS: l.id + "-" + name, Addr: fmt.Sprintf("%s.%d", Subnet, host), hubIf: fmt.Sprintf("h%d", host)}
	steps := [][]string{
		{"ip", "netns", "add", n.NS},
		{"ip", "-n", n.NS, "link", "set", "lo", "up"},
		{"ip", "-n", l.hub, "link", "add", n.hubIf, "type", "veth", "peer", "name", "eth0", "netns", n.NS},
		{"ip", "-n", l.hub, "link", "set", n.hubIf, "master", "br0"},
		{"ip", "-n", l.hub, "link", "set", n.hubIf, "up"},
		{"ip", "-n", n.NS, "addr", "add", n.Addr + "/24", "dev", "eth0"},
		{"ip", "-n", n.NS, "link", "set", "eth0", "up"},
		// The node's upload: its own end's egress.
		{"tc", "-n", n.NS, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", l.rate, "burst", "256kb", "latency", "100ms"},
		// The node's download: the hub end's egress.
		{"tc", "-n", l.hub, "qdisc", "replace", "dev", n.hubIf, "root", "tbf", "rate", l.rate, "burst", "256kb", "latency", "100ms"},
	}
	l.nodes = append(l.nodes, n) // Close removes it even if a step fails
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return nil, fmt.Errorf("lab: node %s: %w", name, err)
		}
	}
	return n, nil
}

// SetLink takes a node's link down (a partition: the hub end goes down, so
// nothing passes either way) or brings it back up.
func (l *Lab) SetLink(ctx context.Context, n *Node, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := run(ctx, "ip", "-n", l.hub, "link", "set", n.hubIf, state); err != nil {
		return fmt.Errorf("lab: link of %s %s: %w", n.Name, state, err)
	}
	return nil
}

// Bytes is what the kernel counted on one node's link since it was made:
// every frame, headers and gossip included, and the frames' number.
type Bytes struct {
	RX, RXPackets int64 // received by the node
	TX, TXPackets int64 // sent by the node
}

// frameHeader is the Ethernet, IPv4 and TCP (with timestamps) header of
// one frame: 14 + 20 + 32 bytes.
const frameHeader = 66

// RXPayload estimates the payload the node received: its bytes less a
// header per frame. That takes out the ACKs of what it uploads (a header
// each and nothing more), which otherwise count 2–4% of its upload.
func (b Bytes) RXPayload() int64 { return max(b.RX-frameHeader*b.RXPackets, 0) }

// Counters reads every node's link counters from the hub ends: the hub
// end's transmit is the node's receive. They survive the node's processes
// being killed and its link going down.
func (l *Lab) Counters(ctx context.Context) (map[string]Bytes, error) {
	out, err := output(ctx, "ip", "-n", l.hub, "-s", "-j", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("lab: counters: %w", err)
	}
	var links []struct {
		IfName string `json:"ifname"`
		Stats  struct {
			RX struct {
				Bytes   int64 `json:"bytes"`
				Packets int64 `json:"packets"`
			} `json:"rx"`
			TX struct {
				Bytes   int64 `json:"bytes"`
				Packets int64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("lab: counters: ip -j: %w", err)
	}
	byIf := map[string]Bytes{}
	for _, k := range links {
		byIf[k.IfName] = Bytes{RX: k.Stats.TX.Bytes, RXPackets: k.Stats.TX.Packets, TX: k.Stats.RX.Bytes, TXPackets: k.Stats.RX.Packets}
	}
	m := map[string]Bytes{}
	for _, n := range l.nodes {
		m[n.Name] = byIf[n.hubIf]
	}
	return m, nil
}

// MountTmpfs mounts a tmpfs of size bytes on dir (a small disk that
// fills); Close unmounts it.
func (l *Lab) MountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("lab: mount a tmpfs on %s: %w", dir, err)
	}
	l.mounts = append(l.mounts, dir)
	return nil
}

// ResizeTmpfs grows (or shrinks) a tmpfs MountTmpfs made, in place.
func (l *Lab) ResizeTmpfs(dir string, size int64) error {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size="+strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("lab: remount %s with %d bytes: %w", dir, size, err)
	}
	return nil
}

// Close kills every process left in the lab's namespaces, removes the
// namespaces and unmounts its tmpfs mounts. Safe to call twice.
func (l *Lab) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	names := []string{}
	for _, n := range l.nodes {
		names = append(names, n.NS)
	}
	names = append(names, l.hub)
	for _, ns := range names {
		errs = append(errs, removeNS(ctx, ns))
	}
	for _, m := range l.mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("lab: unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// removeNS kills every process in namespace ns (they are the lab's: it
// made the namespace) and deletes it. A namespace already gone is fine.
func removeNS(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); err != nil {
		return nil
	}
	for range 3 {
		out, err := output(ctx, "ip", "netns", "pids", ns)
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			break
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := run(ctx, "ip", "netns", "del", ns); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Sweep removes what an earlier run that was killed left behind: the
// namespaces named NamePrefix<pid>-… and the mounts under
// DirPrefix<pid>-… directories, of harness pids no longer running. A run
// still going is left alone.
func Sweep(ctx context.Context) error {
	var errs []error
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if pid, ok := runPID(e.Name(), NamePrefix); ok && !alive(pid) {
			errs = append(errs, removeNS(ctx, e.Name()))
		}
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		mp := fs[1]
		for _, part := range strings.Split(mp, "/") {
			if pid, ok := runPID(part, DirPrefix); ok && !alive(pid) {
				if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
					errs = append(errs, fmt.Errorf("sweep: unmount %s: %w", mp, err))
				}
				break
			}
		}
	}
	return errors.Join(errs...)
}

// runPID reads the pid in a name prefix<pid>-….
func runPID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(num)
	return pid, err == nil && pid > 0
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// run runs a command, bounded by cmdTimeout; its output is in the error.
func run(ctx context.Context, args ...string) error {
	_, err := output(ctx, args...)
	return err
}

// output runs a command and returns its stdout.
func output(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Check says what the lab needs and lacks on this machine: root, ip and
// tc. Nil means a lab can be made.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("the fault suite needs root: network namespaces, tc and tmpfs mounts (run it as root, e.g. sudo make test-faults)")
	}
	for _, b := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("the fault suite needs %s: install iproute2 (apt-get install -y iproute2)", b)
		}
	}
	return nil
}

// Probe builds and removes a lab of one node: where root lacks what the
// lab needs (a container without CAP_NET_ADMIN, a kernel without veth or
// tbf), it says what failed.
func Probe(ctx context.Context, log *zap.Logger) error {
	l, err := NewLab(ctx, "100mbit", log)
	if err != nil {
		return err
	}
	_, err = l.AddNode(ctx, "probe", 2)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}
