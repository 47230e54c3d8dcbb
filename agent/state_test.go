package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

func TestStateFileRoundTrip(t *testing.T) {
	f := stateFile{path: filepath.Join(t.TempDir(), "agent.json")}
	got, err := f.load()
	if err != nil || len(got) != 0 {
		t.Fatalf("load of a missing file: %v %v", got, err)
	}
	want := map[string]appState{
		"web": {App: "web", Version: "1.0.0", ReleaseID: release.IDOf([]byte("x")), Phase: gossip.PhaseActive, Healthy: true, Seq: 3},
		"db":  {App: "db", Version: "2", ReleaseID: release.IDOf([]byte("y")), Phase: gossip.PhaseFailed, Error: "hook exit 3", Seq: 1},
	}
	if err := f.save(want); err != nil {
		t.Fatal(err)
	}
	got, err = f.load()
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
}

func TestStateFileCorrupt(t *testing.T) {
	for _, body := range []string{
		`{not json`,
		`{"web":{"app":"db","phase":"active"}}`,
		`{"../x":{"app":"../x"}}`,
		`{"web":{"app":"web","phase":"exploded"}}`,
		`{"web":{"app":"web","version":"../1"}}`,
		`{"web":{"app":"web","release_id":"sha256:00"}}`,
	} {
		p := filepath.Join(t.TempDir(), "agent.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := stateFile{path: p}.load()
		if err == nil || !strings.Contains(err.Error(), "move it aside") {
			t.Errorf("corrupt state %s: %v", body, err)
		}
	}
}

func TestStateFileNull(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, []byte("null"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := stateFile{path: p}.load()
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("null state: %v, %v; want an empty map", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	key := func() release.PublicKey {
		k, err := release.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	rel, roll := key(), key()
	pub := func() release.Trust {
		return release.Trust{Release: release.NewKeyring(rel), Rollout: release.NewKeyring(roll)}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no data", Config{Trust: pub()}, "--data"},
		{"no trust", Config{DataDir: "x"}, "--trust-release"},
		{"no rollout key", Config{DataDir: "x", Trust: release.Trust{Release: release.NewKeyring(rel)}}, "--trust-rollout"},
		{"one key in both roles", Config{DataDir: "x", Trust: release.Trust{Release: release.NewKeyring(rel), Rollout: release.NewKeyring(rel)}}, "one role"},
		{"negative rate", Config{DataDir: "x", Trust: pub(), UploadRate: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want mention of %q", err, tc.want)
			}
		})
	}
	c := Config{DataDir: "x", Trust: pub(), Name: "n1"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.GossipAddr == "" || c.TorrentAddr == "" || c.Keep != 3 || c.MaxPeers != 20 {
		t.Errorf("defaults not applied: %+v", c)
	}
}
