package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Child is one OS process a process-level run started: a seeder, an agent
// or aria2c (and the fault suite's daemons, bench/faults). It runs in its own process group, so that stopping it also
// stops anything it started, and dies with this process (Pdeathsig).
type Child struct {
	name string
	cmd  *exec.Cmd
	log  string // stderr and stdout go here
	done chan struct{}
	err  error // the exit status, once done is closed
}

// StartChild starts bin with args, its output appended to logPath.
func StartChild(name, logPath, bin string, args ...string) (*Child, error) {
	return StartChildEnv(name, logPath, nil, bin, args...)
}

// StartChildEnv is StartChild with env added to this process's
// environment.
func StartChildEnv(name, logPath string, env []string, bin string, args ...string) (*Child, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		out.Close()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// failure describes a process that ended before it was told to: its exit
// status and the last line it logged.
func (c *Child) Failure() error {
	return fmt.Errorf("%s exited early (%v): %s", c.name, c.err, lastLogLine(c.log))
}

// stop asks the process group to end (SIGTERM), kills it after grace, and
// waits. Safe to call more than once and after the process ended.
func (c *Child) Stop(grace time.Duration) {
	if c.Exited() {
		return
	}
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.done
	}
	// Anything the process started and left behind in its group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// lastLogLine is the last non-empty line of a log file, shortened, or a
// placeholder when there is none.
func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return "(empty log)"
	}
	const most = 300
	if len(last) > most {
		last = last[:most] + "…"
	}
	return last
}

// readAddrFile waits, bounded by ctx and timeout, for the --addr-file of c
// and parses its key=value lines. It fails at once when c exits.
func readAddrFile(ctx context.Context, c *Child, path string, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("waiting for %s to start: %w", c.name, err)
		}
		if b, err := os.ReadFile(path); err == nil {
			m := map[string]string{}
			for _, l := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					m[k] = v
				}
			}
			return m, nil
		}
		if c.Exited() {
			return nil, c.Failure()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s wrote no %s within %s: %s", c.name, path, timeout, lastLogLine(c.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pidCPUSeconds is the user plus system CPU time of process pid
// (/proc/PID/stat, its threads included, its children not).
func pidCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: the fields start after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// utime and stime are fields 14 and 15 of the line; f[0] is field 3.
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return (ut + st) / clockTicks, nil
}

// pidPeakRSS is the peak resident set of process pid in bytes (VmHWM).
func pidPeakRSS(pid int) (int64, error) {
	return procField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:", 1024)
}

// procField reads the first number after field in a /proc key: value file,
// times unit.
func procField(path, field string, unit int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, field); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			n, err := strconv.ParseInt(fs[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %s: %w", path, field, err)
			}
			return n * unit, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// Kill sends SIGKILL to the process alone, not its group (what it started,
// such as a running hook, is left as a crash leaves it), and waits for it
// to end.
func (c *Child) Kill() {
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// Log is the file its output goes to.
func (c *Child) Log() string { return c.log }
