package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is one life of a daemon in a node's namespace, started as
// `ip netns exec NS BIN ARGS…` (ip execs the daemon, so the pid is the
// daemon's). Its output is appended to log, across lives.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // exit status, once done is closed
	// killed: the harness killed it on purpose (kill -9 or stop).
	killed bool
}

// startProc starts bin args in namespace ns with extra environment env.
func startProc(name, ns, logPath string, env []string, bin string, args ...string) (*proc, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	fmt.Fprintf(out, "=== fault suite: start %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 sends SIGKILL to the daemon alone (not its process group: what it
// started, such as a running hook, is left as a crash leaves it) and waits
// for it to end.
func (p *proc) kill9() {
	p.killed = true
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop asks the daemon's process group to end, kills it after grace, and
// waits. Safe after it ended.
func (p *proc) stop(grace time.Duration) {
	p.killed = true
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// failure describes a process that ended on its own: its exit status and
// the last lines it logged.
func (p *proc) failure() error {
	return fmt.Errorf("%s exited by itself (%v): %s", p.name, p.err, lastLines(p.log, 2))
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
