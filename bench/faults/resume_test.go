package faults

import (
	"os"
	"path/filepath"
	"testing"
)

// TestIntactPieces counts the pieces of a part file that are the bundle's:
// whole ones, not a torn or a zero one, and the short last piece.
func TestIntactPieces(t *testing.T) {
	dir := t.TempDir()
	bundle := make([]byte, 4*1024+100) // 5 pieces of 1 KiB, the last short
	for i := range bundle {
		bundle[i] = byte(i*7 + 1)
	}
	bp := filepath.Join(dir, "bundle")
	if err := os.WriteFile(bp, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, len(bundle))
	copy(part[:1024], bundle)                // piece 0 whole
	copy(part[2048:2048+512], bundle[2048:]) // piece 2 torn
	copy(part[3072:], bundle[3072:])         // pieces 3 and 4 whole
	data := filepath.Join(dir, "data")
	pp := filepath.Join(data, "bundles", "ab", "cd.tar.zst.part")
	if err := os.MkdirAll(filepath.Dir(pp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pp, part, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := intactPieces(data, bp, 1024)
	if err != nil || n != 3 {
		t.Fatalf("intact pieces %d, %v; want 3", n, err)
	}
	if n, err := intactPieces(filepath.Join(dir, "none"), bp, 1024); n != 0 || err == nil {
		t.Logf("no data dir: %d, %v", n, err)
	}
}

// TestLastResume reads the figures from an agent's console log.
func TestLastResume(t *testing.T) {
	log := filepath.Join(t.TempDir(), "agent.log")
	lines := "2026-12-07T04:00:00.000Z\tINFO\tagent.swarm\tresumed download: 9 of 20 pieces already verified (9 MiB)\t{\"pieces\": 9}\n" +
		"2026-12-07T04:00:01.000Z\tINFO\tagent.swarm\tresumed download: 12 of 20 pieces already verified (12 MiB)\t{\"pieces\": 12}\n" +
		"2026-12-07T04:00:09.000Z\tINFO\tagent.swarm\tfetch done\t{\"release_id\": \"sha256:ab\", \"took\": \"8s\", \"fetched_bytes\": 8388608, \"wasted_bytes\": 65536}\n"
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	r, f, err := lastResume(log, 0)
	if err != nil || r != 12 || f != 8<<20 {
		t.Fatalf("resumed %d fetched %d %v; want 12, %d", r, f, err, 8<<20)
	}
	if r, f, _ := lastResume(log, int64(len(lines))); r != -1 || f != -1 {
		t.Fatalf("past the end: %d %d, want -1 -1", r, f)
	}
}
