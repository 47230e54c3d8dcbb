package faults

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/swarmdeploy/swarm/bench"
)

// proc is one life of a daemon in a node's namespace, started as
// `ip netns exec NS BIN ARGS…` (ip execs the daemon, so the pid is the
// daemon's): a bench.Child whose output is appended to log, across lives.
type proc struct {
	*bench.Child
	name string
	log  string
	// killed: the harness killed it on purpose (kill -9 or stop).
	killed bool
}

// startProc starts bin args in namespace ns with extra environment env.
func startProc(name, ns, logPath string, env []string, bin string, args ...string) (*proc, error) {
	if out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(out, "=== fault suite: start %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
		out.Close()
	}
	c, err := bench.StartChildEnv(name, logPath, env, "ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	if err != nil {
		return nil, err
	}
	return &proc{Child: c, name: name, log: logPath}, nil
}

// kill9 kills the daemon alone, as a crash does, and waits for it to end.
func (p *proc) kill9() {
	p.killed = true
	p.Kill()
}

// stop asks the daemon's process group to end, kills it after grace, and
// waits. Safe after it ended.
func (p *proc) stop(grace time.Duration) {
	p.killed = true
	p.Stop(grace)
}

// failure describes a process that ended on its own: its exit status and
// the last lines it logged.
func (p *proc) failure() error {
	return fmt.Errorf("%w; last lines: %s", p.Failure(), lastLines(p.log, 2))
}

// lastLines is the last n non-empty lines of a log, each shortened, joined
// with " | ".
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	var keep []string
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if len(l) > 240 {
			l = l[:240] + "…"
		}
		keep = append([]string{l}, keep...)
	}
	if len(keep) == 0 {
		return "(empty log)"
	}
	return strings.Join(keep, " | ")
}

// grepLog is the first line of a log that holds any of the needles, or "".
func grepLog(path string, needles ...string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		for _, n := range needles {
			if strings.Contains(l, n) {
				if len(l) > 240 {
					l = l[:240] + "…"
				}
				return strings.TrimSpace(l)
			}
		}
	}
	return ""
}
