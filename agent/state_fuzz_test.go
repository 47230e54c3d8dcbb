package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/internal/fuzzcorpus"
	"github.com/swarmdeploy/swarm/release"
)

func agentStateSeeds() []fuzzcorpus.Seed {
	id := string(release.IDOf([]byte("x")))
	return []fuzzcorpus.Seed{
		{Name: "two-apps", Args: []any{[]byte(`{"web":{"app":"web","version":"1.0.0","release_id":"` + id + `","phase":"active","healthy":true,"seq":3},` +
			`"db":{"app":"db","version":"2","release_id":"` + id + `","phase":"failed","healthy":false,"error":"hook exit 3","seq":1}}`)}},
		{Name: "empty-object", Args: []any{[]byte(`{}`)}},
		{Name: "null", Args: []any{[]byte(`null`)}},
		{Name: "filed-under-other-app", Args: []any{[]byte(`{"web":{"app":"db","phase":"active","seq":1}}`)}},
		{Name: "unknown-phase", Args: []any{[]byte(`{"web":{"app":"web","phase":"exploded","seq":1}}`)}},
		{Name: "path-as-app", Args: []any{[]byte(`{"../../etc":{"app":"../../etc","phase":"active"}}`)}},
		{Name: "bad-release-id", Args: []any{[]byte(`{"web":{"app":"web","release_id":"sha256:XYZ","phase":"downloading"}}`)}},
		{Name: "truncated", Args: []any{[]byte(`{"web":{"app":"web","vers`)}},
		{Name: "wrong-types", Args: []any{[]byte(`{"web":{"app":1,"seq":-1,"healthy":"yes"}}`)}},
	}
}

// gossipPhases are the phases gossip carries (gossip.AppState).
var gossipPhases = []gossip.Phase{"", gossip.PhaseDownloading, gossip.PhaseStaged, gossip.PhaseInstalling,
	gossip.PhaseActive, gossip.PhaseFailed, gossip.PhaseRolledBack}

var corruptRE = regexp.MustCompile(`^agent state .* is corrupt \(.*\); move it aside to start afresh$`)

// FuzzAgentStateLoad reads arbitrary bytes as the agent's state file. A
// refusal tells the operator to move the file aside. What loads is a map
// (never nil) whose every entry is filed under its own app and is one
// gossip can carry (valid app, version and release id, a known phase), and
// it survives save and load unchanged.
func FuzzAgentStateLoad(f *testing.F) {
	dir := fuzzcorpus.TempDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		file := stateFile{path: filepath.Join(dir, "agent.json")}
		if err := os.WriteFile(file.path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := file.load()
		if err != nil {
			if !corruptRE.MatchString(strings.ReplaceAll(err.Error(), "\n", " ")) {
				t.Fatalf("refused without saying what to do: %v", err)
			}
			return
		}
		if got == nil {
			t.Fatal("load returned a nil map")
		}
		for key, st := range got {
			if key != st.App {
				t.Fatalf("entry %q is about app %q", key, st.App)
			}
			if err := release.ValidateApp(st.App); err != nil {
				t.Fatal(err)
			}
			if st.Version != "" {
				if err := release.ValidateVersion(st.Version); err != nil {
					t.Fatal(err)
				}
			}
			if st.ReleaseID != "" {
				if _, err := release.ParseID(string(st.ReleaseID)); err != nil {
					t.Fatal(err)
				}
			}
			known := false
			for _, p := range gossipPhases {
				known = known || st.Phase == p
			}
			if !known {
				t.Fatalf("app %s: phase %q", key, st.Phase)
			}
		}
		if err := file.save(got); err != nil {
			t.Fatal(err)
		}
		again, err := file.load()
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("after save: %+v, %v; was %+v", again, err, got)
		}
	})
}

func TestFuzzCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzAgentStateLoad", agentStateSeeds())
}
