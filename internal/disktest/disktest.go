// Package disktest gives tests a small disk to fill: a tmpfs of a chosen
// size, and a way to leave it with almost no room. Both need root; a test
// that cannot have them is skipped, saying why.
package disktest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/swarmdeploy/swarm/swarm"
)

// MountSmall mounts a tmpfs of size bytes at dir (made if missing), or skips
// the test where it cannot (not root, no tmpfs). It is unmounted in the
// test's cleanup, which runs after cleanups registered later (a daemon
// started on it has let go of its files by then). resize changes its size.
func MountSmall(t testing.TB, dir string, size int64) (resize func(int64)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("mount a %d-byte tmpfs: %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return func(size int64) {
		t.Helper()
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d", size)); err != nil {
			t.Fatalf("resize the tmpfs at %s to %d bytes: %v", dir, size, err)
		}
	}
}

// Fill writes the file path until its file system has 1 MiB left: room for
// a daemon's small state files, none for a release.
func Fill(t testing.TB, path string) {
	t.Helper()
	free, err := swarm.FreeBytes(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, max(free-1<<20, 0)), 0o644); err != nil {
		t.Fatal(err)
	}
}
