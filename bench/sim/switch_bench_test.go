package sim

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
)

// BenchmarkSwitchBack is what one node does on disk when a fleet rollback
// reaches it and it had moved to the bad release, without the hook: the
// agent records the app staged, then installing, then active again (three
// atomic replacements of its state file), and between the second and the
// third the installer's Rollback records the switch, points the current
// symlink at the previous release and records the result. defaultSwitch is
// this benchmark's time on the machine of BENCHMARKS.md.
func BenchmarkSwitchBack(b *testing.B) {
	dir := b.TempDir()
	inst, err := installer.New(installer.Config{Dir: filepath.Join(dir, "root")}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		m, path := benchBundle(b, dir, "web", v)
		if _, err := inst.Install(context.Background(), m, path); err != nil {
			b.Fatal(err)
		}
	}
	// The agent's state file for one app, as the agent writes it.
	state, err := json.MarshalIndent(map[string]any{"web": map[string]any{
		"app": "web", "version": "1.0.0", "release_id": "sha256:" + string(make([]byte, 64)),
		"phase": "active", "healthy": true, "seq": 12345,
	}}, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	statePath := filepath.Join(dir, "agent-state.json")
	save := func() {
		if err := atomicfile.WriteFile(statePath, state, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	for b.Loop() {
		save() // staged
		save() // installing
		if _, err := inst.Rollback(ctx, "web"); err != nil {
			b.Fatal(err)
		}
		save() // active
	}
}

// benchBundle packs a three-file release of app at version under dir.
func benchBundle(b *testing.B, dir, app, version string) (release.Manifest, string) {
	b.Helper()
	src := filepath.Join(dir, "src-"+version)
	for name, body := range map[string]string{"VERSION": version + "\n", "bin/run": "#!/bin/sh\n", "etc/app.cf": "app=" + app + "\n"} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(dir, app+"-"+version+".tar.zst")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	res, err := release.Pack(out, os.DirFS(src), release.PackOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return release.Manifest{
		App: app, Version: version, ReleaseID: res.ID, BundleSize: res.BundleSize,
		UnpackedSize: res.UnpackedSize, Created: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC),
	}, path
}
