package bench

import (
	"math"
	"testing"
)

func TestSetCost(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		s    costSample
		want Result // only the cost fields
	}{
		{"one GiB to 4 agents on 2 idle-ish cores",
			costSample{CPUS: 8, Delivered: 4 * gib, PeakRSS: 500 * mib, BaseRSS: 100 * mib, Nodes: 4, BusyS: 9, WallS: 10, Cores: 2},
			Result{CPUSPerGiB: 2, RSSPerAgentBytes: 100 * mib, HostCPUFrac: 0.45}},
		{"just above the line is host-bound",
			costSample{CPUS: 1, Delivered: gib / 2, PeakRSS: 10 * mib, BaseRSS: 10 * mib, Nodes: 1, BusyS: 17.2, WallS: 10, Cores: 2},
			Result{CPUSPerGiB: 2, HostCPUFrac: 0.86, HostBound: true}},
		{"exactly 85% is not",
			costSample{BusyS: 8.5, WallS: 5, Cores: 2},
			Result{HostCPUFrac: 0.85}},
		{"RSS that shrank counts as none",
			costSample{PeakRSS: 90 * mib, BaseRSS: 100 * mib, Nodes: 3},
			Result{}},
		{"unknown machine CPU",
			costSample{CPUS: 3, Delivered: 3 * gib, BusyS: -1, WallS: 10, Cores: 2},
			Result{CPUSPerGiB: 1}},
		{"nothing measured", costSample{}, Result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Result
			setCost(&r, tc.s)
			if math.Abs(r.CPUSPerGiB-tc.want.CPUSPerGiB) > 1e-9 || r.RSSPerAgentBytes != tc.want.RSSPerAgentBytes ||
				math.Abs(r.HostCPUFrac-tc.want.HostCPUFrac) > 1e-9 || r.HostBound != tc.want.HostBound {
				t.Errorf("got cpu/GiB %v, rss/agent %d, host %v bound %v; want %v, %d, %v, %v",
					r.CPUSPerGiB, r.RSSPerAgentBytes, r.HostCPUFrac, r.HostBound,
					tc.want.CPUSPerGiB, tc.want.RSSPerAgentBytes, tc.want.HostCPUFrac, tc.want.HostBound)
			}
		})
	}
}
