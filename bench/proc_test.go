package bench

import (
	"crypto/sha256"
	"testing"
	"time"
)

func TestProcMeter(t *testing.T) {
	m := startProcMeter(10 * time.Millisecond)
	m.markCPU()
	// Burn a little CPU and hold some memory.
	buf := make([]byte, 32<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		sha256.Sum256(buf[:1<<20])
	}
	own, others := m.cpuSince()
	var r Result
	m.finish(&r)
	m.finish(&r) // idempotent
	if own < 0.05 {
		t.Errorf("own CPU %.3fs after 200ms of hashing", own)
	}
	if others < -1 || others > 64 {
		t.Errorf("others' cores %.2f", others)
	}
	if r.PeakRSSMiB < 32 {
		t.Errorf("peak RSS %.1f MiB while holding 32 MiB", r.PeakRSSMiB)
	}
	if r.Goroutines < 1 || r.WallS < 0.2 {
		t.Errorf("goroutines %d, wall %.3fs", r.Goroutines, r.WallS)
	}
	if buf[len(buf)-1] != byte(len(buf)-1) {
		t.Fatal("buffer changed")
	}
}
