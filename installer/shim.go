package installer

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The shim: every hook and health check runs under a small process of its
// own, the running executable started again as [exe, ShimCommand, …]. It
// makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so that
// every process the hook starts stays below it even after setsid, a double
// fork or daemonizing: orphans are reparented to the shim, not to init.
// That makes "every process of this run" a question /proc answers (whose
// parent chain leads to the shim), with no cgroup to create and no
// privilege: the agent may run unprivileged or in a container where
// cgroups are not writable.
//
// Why a process of its own: a subreaper must reap whatever is reparented to
// it with wait4(-1), and in the agent that would race os/exec's Wait for
// the agent's other children. In the shim the only children are the hook
// and its orphans, started and reaped by the shim alone.
//
// The shim runs the hook with stdin /dev/null and stdout and stderr on a
// pipe that it copies to its own stdout (the log), at most the log cap per
// run. Then:
//
//   - the hook exits 0: the shim exits 0 and leaves running whatever the
//     hook started on purpose (a service). If processes are left, or the
//     pipe is still open, a detached drainer (the executable again, as
//     [exe, ShimCommand, "--drain"]) takes over the pipe and keeps copying
//     into the log within the same cap until the last writer closes it,
//     so that a service writing to the stdout it inherited is not killed by
//     SIGPIPE.
//   - the hook fails: every process left below the shim gets SIGTERM, and
//     SIGKILL after the grace period; then the shim exits with the hook's
//     status (128+n for a signal).
//   - the shim gets SIGTERM, SIGINT or SIGHUP (the agent's timeout or
//     cancellation): the same, the hook included.

// ShimCommand is the argument that makes a program run as the shim; see
// MaybeRunShim.
const ShimCommand = "hook-exec"

// shimGuard is set in the shim's environment (and removed from the hook's).
// An Installer that finds it in its own environment runs inside a program
// that was started as the shim but did not call MaybeRunShim, and refuses
// to run hooks rather than start itself again and again.
const shimGuard = "SWARM_HOOK_SHIM"

// selfExe is the default shim: the running executable, even when the file
// it was started from has been replaced since.
const selfExe = "/proc/self/exe"

// Exit statuses of the shim itself, as env(1) and shells use them.
const (
	shimExitError      = 125 // the shim failed before the hook ran
	shimExitCannotExec = 126
	shimExitNotFound   = 127
)

// shimOutputWait bounds how long the shim waits, once every process of a
// failed run is gone, for the last of its output: the pipe stays open
// only if a process outside the run holds it.
const shimOutputWait = time.Second

// shimHandOverWait is how long the shim goes on copying after a hook that
// succeeded and left processes running, before the drainer takes over.
const shimHandOverWait = 100 * time.Millisecond

// MaybeRunShim runs the shim and exits when this process was started as
// one (its first argument is ShimCommand), and returns at once otherwise.
// Call it first in main, and in TestMain of tests that run hooks: the
// Installer starts its own executable as the shim (Config.Shim).
func MaybeRunShim() {
	if len(os.Args) > 1 && os.Args[1] == ShimCommand {
		// syscall.Exit, not os.Exit: a test binary built with -race would
		// otherwise sleep a second at exit for late race reports, on every
		// hook run, and one built with -cover would write its profile.
		syscall.Exit(ShimMain(os.Args[2:]))
	}
}

// ShimMain runs the shim with the arguments after ShimCommand and returns
// its exit status:
//
//	--grace D --log-cap N [--lock-fd N] -- HOOK ARG…
//	                                     run HOOK, as the package doc says,
//	                                     holding the hook lock on fd N
//	                                     (hooklock.go)
//	--drain --log-cap N [--written N] [--dropped N]
//	                                     copy stdin to stdout within the cap
func ShimMain(args []string) int {
	o, argv, err := parseShimArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "swarm %s: %v\n", ShimCommand, err)
		return shimExitError
	}
	out := &capWriter{w: os.Stdout, limit: o.logCap, written: o.written, dropped: o.dropped}
	if o.drain {
		out.copyFrom(os.Stdin) //nolint:errcheck // any end of the pipe is the end
		out.note()
		return 0
	}
	if o.lockFD >= 0 {
		if err := holdLock(o.lockFD); err != nil {
			fmt.Fprintf(os.Stderr, "swarm %s: %v\n", ShimCommand, err)
			return shimExitError
		}
	}
	return (&shim{grace: o.grace, argv: argv, out: out, self: os.Getpid()}).run()
}

type shimOptions struct {
	grace                    time.Duration
	logCap, written, dropped int64
	drain                    bool
	lockFD                   int
}

func parseShimArgs(args []string) (shimOptions, []string, error) {
	var o shimOptions
	fs := flag.NewFlagSet(ShimCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.DurationVar(&o.grace, "grace", DefaultKillGrace, "time between SIGTERM and SIGKILL")
	fs.Int64Var(&o.logCap, "log-cap", DefaultLogCap, "bytes of output kept")
	fs.Int64Var(&o.written, "written", 0, "bytes of output already kept")
	fs.Int64Var(&o.dropped, "dropped", 0, "bytes of output already dropped")
	fs.BoolVar(&o.drain, "drain", false, "copy stdin to stdout within the cap")
	fs.IntVar(&o.lockFD, "lock-fd", -1, "descriptor of the locked hook lock file")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	switch {
	case o.grace < 0 || o.logCap < 0 || o.written < 0 || o.dropped < 0:
		return o, nil, errors.New("negative --grace, --log-cap, --written or --dropped")
	case o.lockFD < -1 || o.lockFD >= 0 && o.lockFD <= 2:
		return o, nil, errors.New("--lock-fd must be a descriptor above 2")
	case o.drain && fs.NArg() > 0:
		return o, nil, errors.New("--drain takes no command")
	case !o.drain && fs.NArg() == 0:
		return o, nil, fmt.Errorf("no command; usage: %s --grace D --log-cap N -- HOOK ARG…", ShimCommand)
	}
	return o, fs.Args(), nil
}

type shim struct {
	grace time.Duration
	argv  []string
	out   *capWriter
	self  int

	hook   int                // the hook's pid
	status syscall.WaitStatus // the hook's, once hookDone
	done   bool               // the hook has been reaped
}

func (s *shim) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "swarm %s: "+format+"\n", append([]any{ShimCommand}, a...)...)
}

func (s *shim) run() int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		s.logf("become a child subreaper: %v", err)
		return shimExitError
	}
	chld := make(chan os.Signal, 1)
	stop := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)

	r, err := s.start()
	if err != nil {
		s.logf("%v", err)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, exec.ErrNotFound) {
			return shimExitNotFound
		}
		return shimExitCannotExec
	}
	copied := make(chan error, 1)
	go func() { copied <- s.out.copyFrom(r) }()

	var stopped os.Signal
	for !s.done && stopped == nil {
		select {
		case <-chld:
			s.reap()
		case stopped = <-stop:
		}
	}
	// stop stays subscribed: a second SIGTERM must not end the shim
	// half way through killing.

	if s.done && s.status.Exited() && s.status.ExitStatus() == 0 {
		// Copy what the hook wrote before the drainer takes over, so that
		// it lands before the agent's footer line.
		wait := shimHandOverWait
		if left, err := descendants(s.self); err == nil && len(left) == 0 {
			wait = shimOutputWait // the pipe closes as soon as it is drained
		}
		if stopCopy(r, copied, wait) {
			s.out.note()
			r.Close()
			return 0
		}
		s.handOver(r)
		return 0
	}
	if stopped != nil {
		s.logf("%v: stopping the hook and every process it started", stopped)
	}
	s.killAll()
	stopCopy(r, copied, shimOutputWait)
	s.out.note()
	r.Close()
	if !s.done {
		return 128 + int(unix.SIGKILL)
	}
	if s.status.Signaled() {
		s.logf("hook killed by %v", s.status.Signal())
		return 128 + int(s.status.Signal())
	}
	return s.status.ExitStatus()
}

// start starts the hook on a pipe and returns the pipe's read end.
func (s *shim) start() (*os.File, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, shimGuard+"=") {
			env = append(env, kv)
		}
	}
	path, err := exec.LookPath(s.argv[0])
	if err != nil {
		r.Close()
		return nil, err
	}
	// syscall.ForkExec, not os/exec's Start: nothing but the shim's own
	// reaper may wait for this child.
	s.hook, err = syscall.ForkExec(path, s.argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{null.Fd(), w.Fd(), w.Fd()},
	})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", s.argv[0], err)
	}
	return r, nil
}

// reap collects every child that has exited, the hook and orphans alike,
// and records the hook's status.
func (s *shim) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		if pid == s.hook {
			s.status, s.done = ws, true
		}
	}
}

// killAll ends every process below the shim: SIGTERM, then SIGKILL after
// the grace period to whatever is left, round after round until nothing is
// (a process that forks while being killed has its child found in the next
// round; one killed cannot fork again).
func (s *shim) killAll() {
	left, err := descendants(s.self)
	if err != nil {
		s.logf("%v", err)
	}
	if len(left) > 0 {
		s.logf("stopping %s", describe(left))
	}
	s.signalAll(left, unix.SIGTERM)
	deadline := time.Now().Add(s.grace)
	for len(left) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		s.reap()
		left, _ = descendants(s.self)
	}
	if len(left) > 0 {
		s.logf("killing %s after %v", describe(left), s.grace)
	}
	// A process in uninterruptible sleep (a hung NFS read) cannot die
	// yet: back off rather than spin until the agent gives up on the shim.
	for pause := 5 * time.Millisecond; len(left) > 0; pause = min(2*pause, 200*time.Millisecond) {
		s.signalAll(left, unix.SIGKILL)
		time.Sleep(pause)
		s.reap()
		left, _ = descendants(s.self)
	}
	// Zombies whose parents died in the last round are the shim's now.
	s.reap()
}

func (s *shim) signalAll(ps []proc, sig unix.Signal) {
	for _, p := range ps {
		if err := p.signal(sig); err != nil {
			s.logf("signal %d (%s): %v", p.pid, p.comm, err)
		}
	}
}

// stopCopy lets the copy of the hook's output run for up to wait more, or
// until every writer has closed the pipe, and reports whether it got to
// the end. Output still in the pipe after that stays there.
func stopCopy(r *os.File, copied <-chan error, wait time.Duration) (eof bool) {
	r.SetReadDeadline(time.Now().Add(wait)) //nolint:errcheck // a pipe takes deadlines
	return errors.Is(<-copied, io.EOF)
}

// handOver passes the pipe, whose copy has stopped, to a detached drainer
// (see the package doc) that goes on from there, and returns.
func (s *shim) handOver(r *os.File) {
	defer r.Close()
	argv := []string{os.Args[0], ShimCommand, "--drain",
		"--log-cap", strconv.FormatInt(s.out.limit, 10),
		"--written", strconv.FormatInt(s.out.written, 10),
		"--dropped", strconv.FormatInt(s.out.dropped, 10)}
	_, err := syscall.ForkExec(selfExe, argv, &syscall.ProcAttr{
		Env:   []string{"PATH=" + HookPath},
		Files: []uintptr{r.Fd(), os.Stdout.Fd(), os.Stderr.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		s.logf("start the output drainer: %v; later output of processes the hook left is lost", err)
		s.out.note()
	}
}

// describe names processes for the log: "3 processes: 812 (sleep), …".
func describe(ps []proc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d process", len(ps))
	if len(ps) != 1 {
		b.WriteString("es")
	}
	for i, p := range ps {
		if i == 8 {
			b.WriteString(", …")
			break
		}
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%d (%s)", sep, p.pid, p.comm)
	}
	return b.String()
}
