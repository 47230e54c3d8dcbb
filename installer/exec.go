package installer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// Sentinel errors; match them with errors.Is. Each is wrapped with the exit
// status (errors.As finds the *exec.ExitError) and the log file's path.
var (
	// ErrHookFailed: the hook could not start or exited non-zero.
	ErrHookFailed = errors.New("hook failed")
	// ErrHookTimeout: the hook ran past Config.HookTimeout and was killed.
	ErrHookTimeout = errors.New("hook timed out")
	// ErrHealthFailed: the health check failed or timed out after the
	// switch; the previous release was put back.
	ErrHealthFailed = errors.New("health check failed")
	// ErrNoPrevious: there is no previous release to roll back to.
	ErrNoPrevious = errors.New("no previous release")
)

// run is one execution of the hook or the health check.
type run struct {
	path    string // executable
	verb    string // argv[1]: install, rollback or health
	m       release.Manifest
	dir     string // the release dir: working directory and SWARM_RELEASE_DIR
	prevDir string // SWARM_PREVIOUS_DIR
	timeout time.Duration
	logPath string
	lock    *os.File // the app's locked hook lock, shared with the shim; nil for a periodic health check
}

// errTimeout reports a run killed at its timeout; callers turn it into
// ErrHookTimeout or ErrHealthFailed.
var errTimeout = errors.New("killed at its timeout")

// shimSlack is how long the agent gives the shim beyond KillGrace to stop
// a run's processes and exit before it kills the shim's process group itself.
const shimSlack = 5 * time.Second

// exec runs r under the shim (see shim.go) with its output appended to
// r.logPath. It returns nil on exit status 0, an error wrapping errTimeout
// when the timeout killed it, ctx's error when ctx ended first, or the exit
// error.
//
// On timeout or cancellation the shim gets SIGTERM and stops every process
// of the run, including those that left the process group: SIGTERM, then
// SIGKILL after KillGrace. A run that fails in any way has its processes
// stopped the same way, so a failed hook leaves nothing behind. A hook that
// succeeds may leave processes running on purpose (it may start the
// service). The environment is HookEnvironment's, nothing more, and the
// output kept per run is capped at LogCap.
//
// Should the shim itself not exit within KillGrace plus shimSlack, it is
// killed with its process group (where the hook is, unless it left it):
// the fallback of the time before the shim.
func (i *Installer) exec(ctx context.Context, r run) (err error) {
	if os.Getenv(shimGuard) != "" {
		return fmt.Errorf("this program was started as the hook shim (%s) but does not run it; call installer.MaybeRunShim first in its main or TestMain", ShimCommand)
	}
	if err := mkdirSync(filepath.Dir(r.logPath)); err != nil {
		return err
	}
	logf, err := os.OpenFile(r.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	start := i.now()
	fmt.Fprintf(logf, "==== %s %s %s: app=%s version=%s release_id=%s dir=%s\n",
		start.UTC().Format(time.RFC3339), r.path, r.verb, r.m.App, r.m.Version, r.m.ReleaseID, r.dir)

	runCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, i.cfg.Shim)
	cmd.Args = []string{os.Args[0], ShimCommand, "--grace", i.cfg.KillGrace.String(),
		"--log-cap", strconv.FormatInt(i.cfg.LogCap, 10), "--", r.path, r.verb}
	cmd.Dir = r.dir
	cmd.Env = append(HookEnvironment(r.m, r.dir, r.prevDir, i.cfg.HookEnv), shimGuard+"=1")
	cmd.Stdin = nil // /dev/null
	cmd.Stdout, cmd.Stderr = logf, logf
	if r.lock != nil {
		cmd.ExtraFiles = []*os.File{r.lock} // shimLockFD
		cmd.Args = slices.Insert(cmd.Args, 2, "--lock-fd", strconv.Itoa(shimLockFD))
	}
	// Pdeathsig: should the agent die, the shim stops the run and its tree
	// as for a timeout, so that an orphaned run ends soon (and releases
	// the hook lock). Linux sends it when the thread that forked the shim
	// exits, not the process; the Go runtime ends a thread only when a
	// goroutine locked to it (runtime.LockOSThread) exits still locked,
	// which nothing in swarm does. Were it to happen, the run would fail
	// like one that was cancelled, and be retried.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = i.cfg.KillGrace + shimSlack

	err = cmd.Run()
	if err != nil && cmd.Process != nil {
		// The shim has stopped the run's processes; should it have been
		// killed before it could, this gets those still in its group.
		_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w of %v (%v)", errTimeout, r.timeout, err)
	}
	status := "ok"
	if err != nil {
		status = err.Error()
	}
	fmt.Fprintf(logf, "==== %s %s: %s after %v\n", r.path, r.verb, status, i.now().Sub(start).Round(time.Millisecond))
	return err
}

// killGroup signals the process group led by pid. It returns
// os.ErrProcessDone when the group is already gone, which tells exec.Cmd that
// there was nothing left to cancel.
func killGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
