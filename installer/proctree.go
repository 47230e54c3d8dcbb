package installer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// proc is one process as /proc/<pid>/stat describes it.
type proc struct {
	pid, ppid int
	state     byte   // R, S, D, Z, T…
	start     uint64 // start time in clock ticks since boot: pid plus start names one process
	comm      string
}

// readProc reads /proc/<pid>/stat.
func readProc(pid int) (proc, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, err
	}
	return parseStat(pid, string(b))
}

// parseStat parses a /proc/<pid>/stat line. The command name is in
// parentheses and may itself hold spaces and parentheses, so the fields
// after it are found from the last ')'.
func parseStat(pid int, s string) (proc, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return proc{}, fmt.Errorf("stat of %d: no command name", pid)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return proc{}, fmt.Errorf("stat of %d: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return proc{}, fmt.Errorf("stat of %d: ppid: %w", pid, err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return proc{}, fmt.Errorf("stat of %d: start time: %w", pid, err)
	}
	return proc{pid: pid, ppid: ppid, state: f[0][0], start: start, comm: s[open+1 : end]}, nil
}

// descendants lists the live (not zombie) processes whose parent chain leads
// to root. In the shim, root is a child subreaper, so every process the hook
// started, through setsid, double forks or daemonizing, has its chain lead
// there: orphans are reparented to root, not to init.
func descendants(root int) ([]proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	children := make(map[int][]proc)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil {
			continue // gone since the listing
		}
		children[p.ppid] = append(children[p.ppid], p)
	}
	var out []proc
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			queue = append(queue, c.pid)
			if c.state != 'Z' {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// signal sends sig to p unless p has gone. The process is named by a pidfd
// and its start time checked after the pidfd is opened, so that a pid freed
// and reused since the listing is never signalled: once open, the pidfd
// names one process for good.
func (p proc) signal(sig unix.Signal) error {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.3: plain kill; the window for reuse is the
		// moment since the listing.
		return ignoreGone(unix.Kill(p.pid, sig))
	}
	if err != nil {
		return ignoreGone(err)
	}
	defer unix.Close(fd)
	now, err := readProc(p.pid)
	if err != nil || now.start != p.start {
		return nil // gone, and the pid maybe reused
	}
	return ignoreGone(unix.PidfdSendSignal(fd, sig, nil, 0))
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}
