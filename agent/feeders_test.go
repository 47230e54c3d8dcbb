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
