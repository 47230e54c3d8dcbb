package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// hookScript is every agent's install hook. It appends a start and an end
// line per run to the log named by FAULT_HOOK_LOG (outside the data dir,
// so it outlives whatever the agent does to its releases) and sleeps
// FAULT_HOOK_SLEEP seconds between them, a window to kill the agent in.
const hookScript = `#!/bin/sh
# The fault suite's install hook: one start and one end line per run.
[ "$1" = install ] || exit 0
echo "start $SWARM_RELEASE_ID $$ $(date +%s.%N)" >>"$FAULT_HOOK_LOG"
sleep "${FAULT_HOOK_SLEEP:-0}"
echo "end $SWARM_RELEASE_ID $$ $(date +%s.%N)" >>"$FAULT_HOOK_LOG"
`

// writeHook writes hookScript under dir and returns its path.
func writeHook(dir string) (string, error) {
	p := filepath.Join(dir, "install-hook.sh")
	if err := os.WriteFile(p, []byte(hookScript), 0o755); err != nil {
		return "", fmt.Errorf("hook: %w", err)
	}
	return p, nil
}

// hookRun is one run of the hook as its log shows it.
type hookRun struct {
	pid        int
	start, end float64 // unix seconds; end 0 = no end line
}

// hookRuns reads a node's hook log: the runs for release id, by start.
func hookRuns(path, id string) ([]hookRun, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byPID := map[int]*hookRun{}
	var runs []*hookRun
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 || f[1] != id {
			continue
		}
		pid, err1 := strconv.Atoi(f[2])
		t, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		switch f[0] {
		case "start":
			r := &hookRun{pid: pid, start: t}
			byPID[pid] = r
			runs = append(runs, r)
		case "end":
			if r := byPID[pid]; r != nil {
				r.end = t
			}
		}
	}
	out := make([]hookRun, 0, len(runs))
	for _, r := range runs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out, nil
}

// hookVerdict is what one node's hook runs for one release say.
type hookVerdict struct {
	completed int // runs with an end line
	cut       int // runs with none whose process is gone (killed mid-hook)
	running   int // runs with none whose process still runs
	// problem is why the runs break "no hook run twice", or "".
	problem string
}

// judgeHooks: at most one completed run, no two runs at once (a completed
// run that began before another completed run ended), and none left
// running.
func judgeHooks(runs []hookRun) hookVerdict {
	var v hookVerdict
	for i, r := range runs {
		switch {
		case r.end > 0:
			v.completed++
		case pidAlive(r.pid):
			v.running++
		default:
			v.cut++
		}
		for _, o := range runs[:i] {
			if o.end > r.start && r.end > 0 {
				v.problem = fmt.Sprintf("two hook runs overlapped: pid %d ran %.1fs, and pid %d began %.1fs after it started", o.pid, o.end-o.start, r.pid, r.start-o.start)
			}
		}
	}
	switch {
	case v.problem != "":
	case v.completed > 1:
		v.problem = fmt.Sprintf("the hook completed %d times", v.completed)
	case v.running > 0:
		v.problem = fmt.Sprintf("%d hook run(s) still running", v.running)
	}
	return v
}

// pidAlive reports whether a process with this pid exists.
func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}
