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
	plan := release.Plan{Steps: []float64{0.1, 0.5, 1}}
	for _, tc := range []struct {
		step   int
		paused bool
		want   float64 // admitted share
	}{
		{0, false, 0.1}, {1, false, 0.5}, {2, false, 1}, {2, true, 0},
	} {
		d := &release.DesiredState{Plan: plan, Step: tc.step, Paused: tc.paused}
		in := 0
		for i := range 5000 {
			if Admitted(fmt.Sprintf("n%d", i), d, id) {
				in++
			}
		}
		got := float64(in) / 5000
		if math.Abs(got-tc.want) > 0.03 {
			t.Errorf("step %d paused %v: admitted %.3f, want about %.2f", tc.step, tc.paused, got, tc.want)
		}
	}
}
