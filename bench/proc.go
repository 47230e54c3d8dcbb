package bench

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cpuSeconds is the user plus system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// machineBusySeconds is the CPU time all processes have used (the non-idle
// columns of the "cpu" line of /proc/stat), or -1 where there is none.
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return -1
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		n, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return -1
		}
		busy += n
	}
	return busy / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// peakRSSMiB is this process's peak resident set size (VmHWM in
// /proc/self/status) in MiB, or 0 where there is no /proc. It is
// process-wide: everything the process ran counts, not only one run, unless
// resetPeakRSS ran before it.
func peakRSSMiB() float64 {
	return procStatusMiB("VmHWM:")
}

// rssMiB is this process's resident set size now (VmRSS), in MiB.
func rssMiB() float64 {
	return procStatusMiB("VmRSS:")
}

// procStatusMiB is a field of /proc/self/status (in KiB there) in MiB, or
// 0 where there is none.
func procStatusMiB(field string) float64 {
	b, err := procField("/proc/self/status", field, 1)
	if err != nil {
		return 0
	}
	return float64(b) / 1024
}

// resetPeakRSS sets the kernel's peak RSS (VmHWM) back to the current RSS
// (Linux 4.0 and later), so that the next peakRSSMiB covers one run only. It
// first returns freed heap to the OS: after an earlier run in the same
// process the current RSS would otherwise still hold that run's memory. It
// reports whether the reset worked.
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// procMeter measures what a run costs this process: CPU seconds over a
// window the caller marks, peak RSS, and the peak number of goroutines,
// sampled.
type procMeter struct {
	began     time.Time
	interval  time.Duration
	rssReset  bool
	peakG     atomic.Int64
	peakRSS   atomic.Uint64 // sampled VmRSS in KiB, when VmHWM cannot be reset
	stop      chan struct{}
	wg        sync.WaitGroup
	stopOnce  sync.Once
	cpuMarked float64 // CPU seconds at mark
	busyMark  float64 // machine CPU seconds at mark
	wallMark  time.Time
}

// startProcMeter resets the peak RSS where it can and samples goroutines
// (and RSS) every interval until stop.
func startProcMeter(interval time.Duration) *procMeter {
	m := &procMeter{began: time.Now(), interval: interval, rssReset: resetPeakRSS(), stop: make(chan struct{})}
	m.sample()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *procMeter) sample() {
	if g := int64(runtime.NumGoroutine()); g > m.peakG.Load() {
		m.peakG.Store(g)
	}
	if !m.rssReset {
		if kb := uint64(rssMiB() * 1024); kb > m.peakRSS.Load() {
			m.peakRSS.Store(kb)
		}
	}
}

// markCPU records the CPU time now; cpuSince reports the CPU seconds used
// after it.
func (m *procMeter) markCPU() {
	m.cpuMarked, m.busyMark, m.wallMark = cpuSeconds(), machineBusySeconds(), time.Now()
}

// cpuSince reports the CPU seconds this process used since markCPU, and
// how many cores other processes kept busy meanwhile on average (-1 if
// unknown): a run that shared the machine measured less than the machine.
func (m *procMeter) cpuSince() (own, othersCores float64) {
	own = cpuSeconds() - m.cpuMarked
	busy, wall := machineBusySeconds(), time.Since(m.wallMark).Seconds()
	if busy < 0 || m.busyMark < 0 || wall <= 0 {
		return own, -1
	}
	return own, max(0, (busy-m.busyMark-own)/wall)
}

// hostSince reports the CPU seconds every process on the machine used
// since markCPU (-1 if unknown) and the wall seconds since it.
func (m *procMeter) hostSince() (busyS, wallS float64) {
	wallS = time.Since(m.wallMark).Seconds()
	busy := machineBusySeconds()
	if busy < 0 || m.busyMark < 0 {
		return -1, wallS
	}
	return busy - m.busyMark, wallS
}

// noteContention records in r that other processes used the CPU during the
// measured window, when they used a tenth of a core or more.
func noteContention(r *Result, othersCores float64) {
	if othersCores >= 0.1 {
		addNote(r, fmt.Sprintf("other processes kept %.1f of %d cores busy during the run: timings are pessimistic", othersCores, runtime.NumCPU()))
	}
}

// finish stops sampling and fills r's cost fields: PeakRSSMiB, Goroutines
// and WallS (since startProcMeter). CPUSeconds is the caller's, from
// cpuSince. Safe to call more than once.
func (m *procMeter) finish(r *Result) {
	m.stopOnce.Do(func() { close(m.stop) })
	m.wg.Wait()
	m.sample()
	r.Goroutines = int(m.peakG.Load())
	r.WallS = time.Since(m.began).Seconds()
	if m.rssReset {
		r.PeakRSSMiB = peakRSSMiB()
		return
	}
	r.PeakRSSMiB = float64(m.peakRSS.Load()) / 1024
	addNote(r, fmt.Sprintf("peak RSS sampled every %s: VmHWM could not be reset", m.interval))
}

// addNote appends one remark to r.Notes.
func addNote(r *Result, note string) {
	if r.Notes != "" {
		r.Notes += "; "
	}
	r.Notes += note
}
