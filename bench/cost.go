package bench

import "runtime"

// HostBoundFrac is the share of the host's cores above which a run counts
// as host-bound: its timings then measure the machine (two cores serving
// every node of the run), not the protocol.
const HostBoundFrac = 0.85

// gib is the unit of CPUSPerGiB.
const gib = 1 << 30

// costSample is what a run measured about its cost, before it is turned
// into per-node figures.
type costSample struct {
	// CPUS is the CPU seconds the measured processes used from the publish
	// to the last agent active.
	CPUS float64
	// Delivered is the bytes delivered to agents: N × F.
	Delivered int64
	// PeakRSS and BaseRSS are, in bytes, the peak resident set of the
	// process and its resident set just before the agents started (the
	// seeder alone). Nodes shares their difference.
	PeakRSS, BaseRSS int64
	Nodes            int
	// BusyS is the CPU seconds the whole machine used over WallS seconds
	// of the run (/proc/stat), on Cores cores. BusyS < 0 is unknown.
	BusyS, WallS float64
	Cores        int
}

// setCost fills r's per-node cost fields from s: CPUSPerGiB,
// RSSPerAgentBytes, HostCPUFrac and HostBound. Figures whose inputs are
// missing stay zero (not measured).
func setCost(r *Result, s costSample) {
	r.CPUSPerGiB = cpuPerGiB(s.CPUS, s.Delivered)
	if s.Nodes > 0 && s.PeakRSS > 0 && s.BaseRSS > 0 {
		r.RSSPerAgentBytes = max(s.PeakRSS-s.BaseRSS, 0) / int64(s.Nodes)
	}
	r.HostCPUFrac, r.HostBound = hostCPU(s.BusyS, s.WallS, s.Cores)
}

// cpuPerGiB is cpuS per GiB of delivered bytes, or 0 when either is
// unknown.
func cpuPerGiB(cpuS float64, delivered int64) float64 {
	if cpuS <= 0 || delivered <= 0 {
		return 0
	}
	return cpuS / (float64(delivered) / gib)
}

// hostCPU is the fraction of the host's cores the machine kept busy (every
// process, not only the run's) over wallS, and whether that is above
// HostBoundFrac. Unknown inputs give 0 and false.
func hostCPU(busyS, wallS float64, cores int) (frac float64, bound bool) {
	if busyS < 0 || wallS <= 0 || cores <= 0 {
		return 0, false
	}
	// /proc/stat counts in ticks: over a short window the quotient can
	// round past 1.
	frac = min(busyS/(wallS*float64(cores)), 1)
	return frac, frac > HostBoundFrac
}

// hostCores is the number of cores /proc/stat's busy time is spread over.
func hostCores() int { return runtime.NumCPU() }
