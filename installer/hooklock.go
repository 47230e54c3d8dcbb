package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The hook lock: no two hook runs for one app on one node ever overlap, not
// even across a crash of the agent.
//
// Each app has a lock file, locks/<app>.hook.lock (outside releases/<app>,
// which a refused release must leave as it was). An Install or
// Rollback takes an exclusive flock on it before it touches a release
// directory or runs anything, and holds it until it returns. Every run of
// that operation gets the locked file as a descriptor of the shim's
// (--lock-fd): the shim shares the lock, marks the descriptor close-on-exec
// so that the hook and the processes it starts do not get it, and writes
// its own pid into the file. A flock belongs to the open file, not to a
// process, so it stays held while any descriptor of it is open: when the
// agent is killed during a hook, the orphaned shim still holds the lock
// until it has stopped every process of its run and exited.
//
// The shim is also started with a parent-death signal (SIGTERM), so that it
// stops its run as soon as the agent dies. Should the agent come back before
// the shim is done, or the signal not come, the restarted agent's next
// Install or Rollback finds the lock held: if the holder recorded in the
// file is a shim whose agent is gone, it gets SIGTERM (and, KillGrace plus
// shimSlack later, its whole tree SIGKILL); otherwise the operation waits.
// Either way it waits at most the hook timeout, and a hook is never started
// on a directory another run still uses.
//
// Check, the periodic health check, takes no lock: it only probes the
// current release, which no operation removes, and must not wait behind a
// long install.

// locksDirName is the directory of the apps' hook lock files in Config.Dir.
const locksDirName = "locks"

// hookLockPath is app's lock file.
func hookLockPath(root, app string) string {
	return filepath.Join(root, locksDirName, app+".hook.lock")
}

// shimLockFD is the descriptor number the locked file has in the shim.
const shimLockFD = 3

// hookLockPoll is how often a held lock is tried again.
const hookLockPoll = 20 * time.Millisecond

// lockHooks takes a's hook lock and returns the locked file; closing it
// releases the lock (unless a shim still holds a descriptor of it). A holder
// that is the orphaned shim of an earlier agent process is stopped with its
// tree; any other holder is waited for. It gives up after the hook timeout,
// or when ctx ends.
func (i *Installer) lockHooks(ctx context.Context, a *app) (*os.File, error) {
	path := hookLockPath(i.cfg.Dir, a.name)
	if err := mkdirSync(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("hook lock: %w", err)
	}
	ok, err := tryFlock(int(f.Fd()))
	if err == nil && !ok {
		err = i.waitHookLock(ctx, a, f)
	}
	if err == nil {
		// The last shim's record is stale from here on.
		err = f.Truncate(0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("hook lock %s: %w", path, err)
	}
	return f, nil
}

// tryFlock takes an exclusive flock on fd without blocking; false when
// another open file holds it.
func tryFlock(fd int) (bool, error) {
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		case !errors.Is(err, unix.EINTR):
			return false, err
		}
	}
}

// waitHookLock waits, at most the hook timeout, until f's lock is free and
// takes it, stopping the holder first when it is an orphaned shim.
func (i *Installer) waitHookLock(ctx context.Context, a *app, f *os.File) error {
	start := time.Now()
	deadline := start.Add(i.cfg.HookTimeout)
	holder, orphan := lockHolder(f)
	escalate := time.Time{}
	switch {
	case orphan:
		a.log.Warn("a hook run of an earlier agent process still holds the app's hook lock; stopping it and every process it started before going on",
			zap.Int("shim_pid", holder.pid), zap.Duration("kill_grace", i.cfg.KillGrace))
		if err := holder.signal(unix.SIGTERM); err != nil {
			a.log.Warn("signal the earlier hook run's shim", zap.Int("shim_pid", holder.pid), zap.Error(err))
		}
		escalate = start.Add(i.cfg.KillGrace + shimSlack)
	case holder.pid != 0:
		a.log.Warn("the app's hook lock is held by a hook run of another running process; waiting for it",
			zap.Int("shim_pid", holder.pid), zap.Duration("at_most", i.cfg.HookTimeout))
	default:
		a.log.Warn("the app's hook lock is held by another process (is a second agent using this data dir?); waiting for it",
			zap.Duration("at_most", i.cfg.HookTimeout))
	}
	t := time.NewTicker(hookLockPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		ok, err := tryFlock(int(f.Fd()))
		if err != nil || ok {
			if ok {
				a.log.Info("hook lock free", zap.Duration("waited", time.Since(start).Round(time.Millisecond)))
			}
			return err
		}
		now := time.Now()
		if !escalate.IsZero() && now.After(escalate) {
			left, _ := descendants(holder.pid)
			a.log.Warn("the earlier hook run did not stop; killing it and every process it started",
				zap.Int("shim_pid", holder.pid), zap.String("processes", describe(left)))
			for _, p := range left {
				_ = p.signal(unix.SIGKILL)
			}
			_ = holder.signal(unix.SIGKILL)
			escalate = now.Add(i.cfg.KillGrace) // again, for what it forked meanwhile
		}
		if now.After(deadline) {
			return fmt.Errorf("still held after %v by %s; stop that process, or wait and retry", i.cfg.HookTimeout, describeHolder(holder))
		}
	}
}

func describeHolder(p proc) string {
	if p.pid == 0 {
		return "an unknown process (no hook run recorded in the file)"
	}
	return fmt.Sprintf("hook shim %d", p.pid)
}

// shimRecord is what a shim writes into the lock file: its pid and start
// time (which together name one process for good) and its parent's pid
// when it started (the agent).
type shimRecord struct {
	pid    int
	start  uint64
	parent int
}

func (r shimRecord) String() string {
	return fmt.Sprintf("%d %d %d\n", r.pid, r.start, r.parent)
}

func parseShimRecord(b []byte) (shimRecord, bool) {
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return shimRecord{}, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	parent, err3 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || err3 != nil || pid <= 0 {
		return shimRecord{}, false
	}
	return shimRecord{pid, start, parent}, true
}

// lockHolder reads the shim recorded in the lock file f. It returns that
// shim when it still runs, is a hook shim (its command line says so) and
// is the very process that wrote the record (same start time); orphan
// reports that the agent that started it is gone (the shim was
// reparented). A zero proc means no such shim: the lock is held by an
// installer between runs, or by something else.
func lockHolder(f *os.File) (holder proc, orphan bool) {
	b := make([]byte, 128)
	n, _ := f.ReadAt(b, 0)
	rec, ok := parseShimRecord(b[:n])
	if !ok {
		return proc{}, false
	}
	p, err := readProc(rec.pid)
	if err != nil || p.start != rec.start || p.state == 'Z' || !isShim(rec.pid) {
		return proc{}, false
	}
	return p, p.ppid != rec.parent
}

// isShim reports whether pid's command line is a hook shim's,
// [exe, ShimCommand, …] (and not a drainer).
func isShim(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := bytes.Split(b, []byte{0})
	return len(args) > 2 && string(args[1]) == ShimCommand && string(args[2]) != "--drain"
}

// holdLock is the shim's side: it shares the lock on fd (inherited from the
// installer, which holds it), keeps fd from the processes it starts, and
// records itself in the file. fd stays open, raw (no *os.File whose
// finalizer could close it), until the shim exits.
func holdLock(fd int) error {
	unix.CloseOnExec(fd)
	ok, err := tryFlock(fd)
	if err != nil {
		return fmt.Errorf("hook lock on descriptor %d: %w", fd, err)
	}
	if !ok {
		return errors.New("hook lock: held by another process; the installer must pass its locked file")
	}
	self, err := readProc(os.Getpid())
	if err != nil {
		return fmt.Errorf("hook lock: %w", err)
	}
	rec := shimRecord{pid: self.pid, start: self.start, parent: os.Getppid()}
	if err := unix.Ftruncate(fd, 0); err != nil {
		return fmt.Errorf("hook lock: %w", err)
	}
	if _, err := unix.Pwrite(fd, []byte(rec.String()), 0); err != nil {
		return fmt.Errorf("hook lock: %w", err)
	}
	return nil
}
