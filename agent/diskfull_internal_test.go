package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// fullDiskOnce is an installer whose first installs run out of disk.
type fullDiskOnce struct {
	*fakeReleases
	fails int
}

func (f *fullDiskOnce) Install(ctx context.Context, m release.Manifest, p string) (installer.Result, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		err := &os.PathError{Op: "write", Path: "payload.bin", Err: syscall.ENOSPC}
		return installer.Result{}, fmt.Errorf("install web %s: unpack web %s: %w", m.Version, m.Version, err)
	}
	f.mu.Unlock()
	return f.fakeReleases.Install(ctx, m, p)
}

// TestInstallOutOfDiskWaitsForRoom: an install whose unpack hits a full
// disk fails the app with "disk full" and runs again by itself once the
// disk has room (here at once), instead of failing for good.
func TestInstallOutOfDiskWaitsForRoom(t *testing.T) {
	inst := &fullDiskOnce{fakeReleases: &fakeReleases{}, fails: 1}
	a := testAgent(t, inst, &fakeCluster{})
	core, logs := observer.New(zap.InfoLevel)
	a.log = zap.New(core)
	a.cfg.DiskRetry = 10 * time.Millisecond
	if err := os.MkdirAll(a.bundlesDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if a.torrent, err = swarm.New(swarm.Config{Dir: a.bundlesDir(), ListenAddr: "127.0.0.1:0"}, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	k, _ := release.GenerateKey(rand.Reader)
	_, m := signedManifest(t, k, "1")
	st := appState{App: "web", Version: "1", ReleaseID: m.ReleaseID, Phase: gossip.PhaseStaged}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.install(ctx, &st, m, a.log); err != nil {
		t.Fatalf("install: %v", err)
	}
	if inst.installs != 1 || inst.fails != 0 {
		t.Errorf("%d installs done, %d failures left; want 1 and 0", inst.installs, inst.fails)
	}
	full := logs.FilterLevelExact(zap.ErrorLevel).All()
	if len(full) != 1 || !strings.HasPrefix(full[0].Message, "disk full: need ") {
		t.Fatalf("error lines %v: want one that says disk full", full)
	}
	if st.Error != "" || st.diskFull() {
		t.Errorf("state after the install: %+v; want the failure cleared", st)
	}
}
