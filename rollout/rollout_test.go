package rollout

import (
	"fmt"
	"math"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

func TestBucketUniformAndStable(t *testing.T) {
	id := release.IDOf([]byte("bundle"))
	const n = 20000
	var bins [10]int
	for i := range n {
		b := Bucket(fmt.Sprintf("node-%d", i), id)
		if b < 0 || b >= 1 {
			t.Fatalf("bucket %v outside [0,1)", b)
		}
		if b != Bucket(fmt.Sprintf("node-%d", i), id) {
			t.Fatal("bucket not stable")
		}
		bins[int(b*10)]++
	}
	for i, c := range bins {
		if math.Abs(float64(c)-n/10) > 0.1*n/10 {
			t.Errorf("bin %d holds %d of %d; want about %d", i, c, n, n/10)
		}
	}
}

func TestBucketDependsOnRelease(t *testing.T) {
	a, b := release.IDOf([]byte("a")), release.IDOf([]byte("b"))
	same := 0
	for i := range 100 {
		n := fmt.Sprintf("node-%d", i)
		if Bucket(n, a) == Bucket(n, b) {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("%d nodes kept their bucket across releases", same)
	}
}

func TestAdmitted(t *testing.T) {
	id := release.IDOf([]byte("x"))
	for _, tc := range []struct {
		admit  float64
		paused bool
		bad    bool
		want   float64 // admitted share
	}{
		{0.1, false, false, 0.1}, {0.5, false, false, 0.5}, {1, false, false, 1}, {1, true, false, 0}, {1, false, true, 0}, {0, false, false, 0},
	} {
		d := &release.DesiredState{Admit: tc.admit, Paused: tc.paused}
		if tc.bad {
			d.MarkBad(id)
		}
		in := 0
		for i := range 5000 {
			if Admitted(fmt.Sprintf("n%d", i), d, id) {
				in++
			}
		}
		got := float64(in) / 5000
		if math.Abs(got-tc.want) > 0.03 {
			t.Errorf("admit %v paused %v bad %v: admitted %.3f, want about %.2f", tc.admit, tc.paused, tc.bad, got, tc.want)
		}
	}
}

func TestThresholdAdmitsExactly(t *testing.T) {
	id := release.IDOf([]byte("y"))
	var nodes []string
	for i := range 37 {
		nodes = append(nodes, fmt.Sprintf("node-%02d", i))
	}
	for n := 0; n <= len(nodes)+1; n++ {
		d := &release.DesiredState{Admit: Threshold(nodes, id, n)}
		in := 0
		for _, name := range nodes {
			if Admitted(name, d, id) {
				in++
			}
		}
		if want := min(n, len(nodes)); in != want {
			t.Errorf("Threshold(%d of %d) admits %d", n, len(nodes), in)
		}
	}
	// Admission grows with the step: the first wave stays admitted.
	small := &release.DesiredState{Admit: Threshold(nodes, id, 3)}
	big := &release.DesiredState{Admit: Threshold(nodes, id, 10)}
	for _, name := range nodes {
		if Admitted(name, small, id) && !Admitted(name, big, id) {
			t.Errorf("%s admitted at 3 nodes but not at 10", name)
		}
	}
}
