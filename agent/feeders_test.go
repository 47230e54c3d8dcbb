package agent

import (
	"fmt"
	"slices"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

// Every node ranks the same members the same way whatever order it lists
// them in, and releases get different feeders.
func TestFeederRank(t *testing.T) {
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("node-%02d", i))
	}
	id1, id2 := release.IDOf([]byte("one")), release.IDOf([]byte("two"))
	a := feederRank(id1, names)
	rev := slices.Clone(names)
	slices.Reverse(rev)
	if b := feederRank(id1, rev); !slices.Equal(a, b) {
		t.Fatalf("rank depends on the input order:\n%v\n%v", a, b)
	}
	if slices.Equal(a[:4], feederRank(id2, names)[:4]) {
		t.Errorf("two releases got the same four feeders %v", a[:4])
	}
	if slices.Equal(a, names) {
		t.Errorf("rank is the name order")
	}
}

// Half the peers a node is told of (rounded up) are holders when there are
// that many; the rest come from everyone left; nobody twice.
func TestPickPeers(t *testing.T) {
	names := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%02d", prefix, i))
		}
		return out
	}
	for _, tc := range []struct {
		holders, others, limit int
		wantLen, minHolders    int
	}{
		{holders: 3, others: 30, limit: 20, wantLen: 20, minHolders: 3},
		{holders: 40, others: 30, limit: 20, wantLen: 20, minHolders: 10},
		{holders: 40, others: 0, limit: 5, wantLen: 5, minHolders: 5},
		{holders: 0, others: 30, limit: 20, wantLen: 20, minHolders: 0},
		{holders: 2, others: 3, limit: 20, wantLen: 5, minHolders: 2},
		{holders: 0, others: 0, limit: 20, wantLen: 0, minHolders: 0},
	} {
		for range 20 {
			got := pickPeers(names("h", tc.holders), names("o", tc.others), tc.limit)
			held := 0
			for _, p := range got {
				if p[0] == 'h' {
					held++
				}
			}
			if len(got) != tc.wantLen || held < tc.minHolders {
				t.Fatalf("%+v: picked %v (%d holders)", tc, got, held)
			}
			sorted := slices.Clone(got)
			slices.Sort(sorted)
			if len(slices.Compact(sorted)) != len(got) {
				t.Fatalf("%+v: picked a peer twice: %v", tc, got)
			}
		}
	}
}
