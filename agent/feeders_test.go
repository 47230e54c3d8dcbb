package agent

import (
	"fmt"
	"maps"
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

// A banned feeder's share goes to the next agent in rank, once, and every
// other feeder keeps its own: nodes that have banned it and nodes that have
// not agree on everyone else's shares.
func TestFeederShareReplacesBannedFeeders(t *testing.T) {
	var names []string
	for i := range 8 {
		names = append(names, fmt.Sprintf("node-%02d", i))
	}
	id := release.IDOf([]byte("release"))
	r := feederRank(id, names)
	type slot struct{ share, of int }
	roles := func(banned []string) map[string]slot {
		out := map[string]slot{}
		for _, n := range names {
			if slices.Contains(banned, n) {
				continue // a node never bans itself
			}
			if s, of, _ := feederShare(id, names, 4, n, banned); of > 0 {
				out[n] = slot{s, of}
			}
		}
		return out
	}
	want := map[string]slot{r[0]: {0, 4}, r[1]: {1, 4}, r[2]: {2, 4}, r[3]: {3, 4}}
	if got := roles(nil); !maps.Equal(got, want) {
		t.Fatalf("no bans: %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name   string
		banned []string
		want   map[string]slot
	}{
		{"one feeder", []string{r[1]}, map[string]slot{r[0]: {0, 4}, r[4]: {1, 4}, r[2]: {2, 4}, r[3]: {3, 4}}},
		{"a feeder and its replacement", []string{r[1], r[4]}, map[string]slot{r[0]: {0, 4}, r[5]: {1, 4}, r[2]: {2, 4}, r[3]: {3, 4}}},
		{"two feeders, in share order", []string{r[3], r[0]}, map[string]slot{r[4]: {0, 4}, r[1]: {1, 4}, r[2]: {2, 4}, r[5]: {3, 4}}},
		{"no feeder", []string{r[6]}, want},
	} {
		if got := roles(tc.banned); !maps.Equal(got, tc.want) {
			t.Errorf("%s banned: %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, _, replaced := feederShare(id, names, 4, r[4], []string{r[2]}); replaced != r[2] {
		t.Errorf("replacement names %q as the banned feeder, want %q", replaced, r[2])
	}
	// Every agent a feeder: nobody is left to take a banned one's share.
	few := r[:3]
	for _, n := range few[1:] {
		if s, of, _ := feederShare(id, few, 4, n, []string{r[0]}); of != 3 || s != slices.Index(feederRank(id, few), n) {
			t.Errorf("%s with every agent a feeder: share %d of %d", n, s, of)
		}
	}
}

func TestAddrBanned(t *testing.T) {
	banned := []string{"127.0.0.2", "fd00::1"}
	for addr, want := range map[string]bool{
		"127.0.0.2:6881": true, "[::ffff:127.0.0.2]:1": true, "[fd00::1]:6881": true,
		"127.0.0.1:6881": false, "": false, "garbage": false, "127.0.0.20:1": false,
	} {
		if got := addrBanned(addr, banned); got != want {
			t.Errorf("addrBanned(%q) = %v, want %v", addr, got, want)
		}
	}
}
