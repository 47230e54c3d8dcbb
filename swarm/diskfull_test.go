package swarm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// TestFetchResumeSaysWhatItKept: a fetch that finds a part file from an
// earlier run (its first half written) says once how many pieces it kept,
// and completes.
func TestFetchResumeSaysWhatItKept(t *testing.T) {
	b := newBundle(t, 8<<20)
	origin := newOrigin(t, b, Config{})
	dir := t.TempDir()
	part := BundlePath(dir, b.m.ReleaseID) + partSuffix
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		t.Fatal(err)
	}
	half := b.m.BundleSize / 2
	if err := os.WriteFile(part, b.data[:half], 0o644); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	l := newClientLogging(t, Config{Dir: dir}, log)
	fetch(t, l, b.m, Sources{Origins: []string{origin.Addr()}})
	checkFetched(t, l, b)

	resumed := logs.FilterMessageSnippet("resumed download").All()
	if len(resumed) != 1 {
		t.Fatalf("%d lines about the resumed download, want 1", len(resumed))
	}
	pieces := int(half / b.m.PieceLength)
	of := int((b.m.BundleSize + b.m.PieceLength - 1) / b.m.PieceLength)
	f := resumed[0].ContextMap()
	if f["pieces"] != int64(pieces) || f["of"] != int64(of) || f["bytes"] != int64(pieces)*b.m.PieceLength {
		t.Errorf("resumed line %q %v: want %d of %d pieces", resumed[0].Message, f, pieces, of)
	}
	if !strings.Contains(resumed[0].Message, "of") {
		t.Errorf("resumed line %q says no figures", resumed[0].Message)
	}
	// No piece kept on disk was fetched again: what the fetch received and
	// needed is the rest of the bundle.
	done := logs.FilterMessage("fetch done").All()
	if len(done) != 1 {
		t.Fatalf("%d fetch done lines, want 1", len(done))
	}
	kept := int64(pieces) * b.m.PieceLength
	if got := done[0].ContextMap()["fetched_bytes"]; got != b.m.BundleSize-kept {
		t.Errorf("fetch done: fetched_bytes %v, want %d (the bundle less the %d bytes kept)", got, b.m.BundleSize-kept, kept)
	}
}

// TestReservePart: a new part file gets the bundle's full size on disk
// before any piece, so that the space is the fetch's; a second reservation
// of the same file is not fresh; SpaceNeeded then reports nothing more.
func TestReservePart(t *testing.T) {
	b := newBundle(t, 1<<20)
	dir := t.TempDir()
	c := newClient(t, Config{Dir: dir})
	path := BundlePath(dir, b.m.ReleaseID)
	if got := c.SpaceNeeded(b.m); got != b.m.BundleSize {
		t.Fatalf("space needed with no part file: %d, want %d", got, b.m.BundleSize)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	fresh, err := reservePart(path, b.m.BundleSize)
	if err != nil || !fresh {
		t.Fatalf("reserve: fresh %v, %v", fresh, err)
	}
	fi, err := os.Stat(path + partSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Blocks*512 < b.m.BundleSize {
		t.Skipf("this file system did not reserve (%d bytes allocated): nothing to check", st.Blocks*512)
	}
	if got := c.SpaceNeeded(b.m); got != 0 {
		t.Errorf("space needed after the reservation: %d, want 0", got)
	}
	if fresh, err := reservePart(path, b.m.BundleSize); err != nil || fresh {
		t.Errorf("second reserve: fresh %v, %v; want an old file", fresh, err)
	}
}

func TestDiskFullErrorText(t *testing.T) {
	err := error(&DiskFullError{Dir: "/data/bundles", Need: 128 << 20, Free: 90<<20 + 5})
	if got, want := err.Error(), "disk full: need 128 MiB, 90 MiB free on /data/bundles"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Error("does not wrap ENOSPC")
	}
	for n, want := range map[int64]string{0: "0 B", 1000: "1000 B", 1536: "2 KiB", 3<<20 + 1: "4 MiB", 12 << 30: "12.0 GiB"} {
		if got := SizeText(n, true); got != want {
			t.Errorf("SizeText(%d, up) = %q, want %q", n, got, want)
		}
	}
}
