package report

import (
	"strconv"

	"github.com/swarmdeploy/swarm/bench"
)

// RollbackTable renders fleet rollback results, one row each in the order
// given: per-node seconds from the decision to back on the previous release
// (p50, p99, max = the fleet time), to the seeder seeing it (p50, p99,
// max), and, for real runs, to the rollout status reading rolled-back, with
// how busy the host's cores were.
func RollbackTable(rs []bench.RollbackResult) string {
	var back, seen []float64
	for _, r := range rs {
		back = append(back, r.Back.P50, r.Back.P99, r.Back.Max)
		seen = append(seen, r.Seen.P50, r.Seen.P99, r.Seen.Max, r.ReportedS)
	}
	db, ds := decimals(back...), decimals(seen...)
	t := &mdTable{}
	t.col("kind", false)
	t.col("trigger", false)
	t.col("N", true)
	t.col("moved", true)
	t.col("back p50 s", true)
	t.col("back p99 s", true)
	t.col("fleet s", true)
	t.col("seen p50 s", true)
	t.col("seen p99 s", true)
	t.col("seen max s", true)
	t.col("status s", true)
	t.col("host busy", true)
	for _, r := range rs {
		busy := none
		if r.HostCPUFrac > 0 {
			busy = percent(r.HostCPUFrac)
			if r.HostBound {
				busy += " (bound)"
			}
		}
		t.row(string(r.Kind), r.Trigger, strconv.Itoa(r.Nodes), strconv.Itoa(r.Moved),
			fixed(r.Back.P50, db), fixed(r.Back.P99, db), fixed(r.Back.Max, db),
			fixed(r.Seen.P50, ds), fixed(r.Seen.P99, ds), fixed(r.Seen.Max, ds), fixed(r.ReportedS, ds), busy)
	}
	return t.String()
}
