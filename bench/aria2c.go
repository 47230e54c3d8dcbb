package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// aria2cArgs are the flags that make aria2c a plain client of one known
// peer: no DHT, no local discovery, no peer exchange, no seeding after the
// download, no preallocation, quiet.
func aria2cArgs(dir, logFile string, p Params, magnet string) []string {
	args := []string{
		"--dir", dir, "--log", logFile, "--log-level=info",
		"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--seed-time=0", "--file-allocation=none", "--disable-ipv6=true",
		"--summary-interval=0", "--console-log-level=warn", "--show-console-readout=false",
		"--bt-save-metadata=false", "--auto-save-interval=0",
	}
	if p.NodeDown > 0 {
		args = append(args, "--max-overall-download-limit="+strconv.FormatInt(p.NodeDown, 10))
	}
	if p.NodeUp > 0 {
		args = append(args, "--max-overall-upload-limit="+strconv.FormatInt(p.NodeUp, 10))
	}
	return append(args, magnet)
}

// aria2c fetches the published release with aria2c from the seeder alone
// (the agents are stopped), by the magnet URI the publish returned, then
// checks the file against the release id. aria2c 1.36 ignores the magnet's
// x.pe peer hints, so the magnet gets a tracker that names the seeder.
func (run *procsRun) aria2c(ctx context.Context, r *ProcsResult) (ClientRun, error) {
	cr := ClientRun{Client: "aria2c"}
	if !strings.Contains(run.magnet, "x.pe=") {
		return cr, fmt.Errorf("the publish's magnet URI names no peer (x.pe): %s", run.magnet)
	}
	tr, err := startPeerTracker(run.seederTorrent)
	if err != nil {
		return cr, err
	}
	defer tr.Close()
	magnet := tr.withTracker(run.magnet)
	out := filepath.Join(run.cfg.Dir, "aria2c")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return cr, err
	}
	st0, err := run.status(ctx)
	if err != nil {
		return cr, err
	}
	busy0 := machineBusySeconds()
	run.progress(ProcsProgress{Stage: "aria2c", Total: 1})
	start := time.Now()
	c, err := StartChild("aria2c", filepath.Join(run.logs, "aria2c.log"), run.cfg.Aria2c, aria2cArgs(out, filepath.Join(run.logs, "aria2c-info.log"), run.cfg.Params, magnet)...)
	if err != nil {
		return cr, err
	}
	defer c.Stop(stopGrace)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastSize, grewAt := int64(-1), time.Now()
wait:
	for {
		select {
		case <-c.done:
			break wait
		case <-ctx.Done():
			return cr, fmt.Errorf("did not finish after %.0fs: %w", time.Since(start).Seconds(), ctx.Err())
		case <-tick.C:
			if run.seeder.Exited() {
				return cr, run.seeder.Failure()
			}
			n := dirBytes(out)
			if n != lastSize {
				lastSize, grewAt = n, time.Now()
			} else if time.Since(grewAt) > run.cfg.StallTimeout {
				return cr, fmt.Errorf("stalled: nothing written for %s (%d bytes so far): %s", run.cfg.StallTimeout, n, lastLogLine(c.log))
			}
			run.progress(ProcsProgress{Stage: "aria2c", Total: 1, Progress: float64(n) / float64(max(r.BundleBytes, 1)), Elapsed: time.Since(start)})
		}
	}
	cr.WallS = time.Since(start).Seconds()
	busy1 := machineBusySeconds()
	st1, err := run.status(ctx)
	if err != nil {
		return cr, err
	}
	if c.err != nil {
		return cr, fmt.Errorf("exited with %v: %s", c.err, lastLogLine(c.log))
	}
	if ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cr.CPUS = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		cr.PeakRSSBytes = ru.Maxrss * 1024 // KiB on Linux
	}
	cr.CPUSPerGiB = cpuPerGiB(cr.CPUS, r.BundleBytes)
	cr.MiBPerS = float64(r.BundleBytes) / (1 << 20) / cr.WallS
	cr.OriginBytes = max(st1.OriginBytesSent-st0.OriginBytesSent, 0)
	cr.OriginEgressRatio = float64(cr.OriginBytes) / float64(r.BundleBytes)
	if busy0 >= 0 && busy1 >= 0 {
		cr.HostCPUFrac, cr.HostBound = hostCPU(busy1-busy0, cr.WallS, hostCores())
	}
	addProcsNote(r, "aria2c's wall includes its start, a tracker announce, the metadata fetch (BEP 9) and its one-second engine ticks: seconds that matter only for small releases")
	if err := checkFetched(out, run.releaseID); err != nil {
		return cr, err
	}
	return cr, nil
}

// checkFetched verifies that dir holds one file whose sha256 is the
// release id.
func checkFetched(dir string, id release.ID) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var files []string
	for _, e := range es {
		if e.Type().IsRegular() {
			files = append(files, e.Name())
		}
	}
	if len(files) != 1 {
		return fmt.Errorf("want one downloaded file in %s, found %v", dir, files)
	}
	f, err := os.Open(filepath.Join(dir, files[0]))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := release.IDFromHash(h); got != id {
		return fmt.Errorf("%s is %s, not the release %s", files[0], got, id)
	}
	return nil
}

// dirBytes is the disk space the files directly in dir take (sparse files
// count what is written).
func dirBytes(dir string) int64 {
	es, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range es {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, e.Name()), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// addProcsNote appends one remark to r.Notes.
func addProcsNote(r *ProcsResult, note string) {
	if r.Notes != "" {
		r.Notes += "; "
	}
	r.Notes += note
}
