package gossip

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

func TestMetaRoundTrip(t *testing.T) {
	id := release.IDOf([]byte("bundle"))
	tests := []struct {
		name string
		apps []AppState
	}{
		{"none", nil},
		{"one", []AppState{{App: "web", Version: "1.2.3", ReleaseID: id, Phase: PhaseActive, Healthy: true, Progress: 1}}},
		{"several", []AppState{
			{App: "web", Version: "1.2.3", ReleaseID: id, Phase: PhaseDownloading, Progress: 0.25, Rate: 12 << 20},
			{App: "api", Version: "2.0.0-rc.1", ReleaseID: release.IDOf([]byte("x")), Phase: PhaseFailed, Error: "hook exited 1"},
			{App: "worker", Phase: PhaseStaged},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeMeta(RoleAgent, "10.0.0.1:6881", "", tt.apps)
			if err != nil {
				t.Fatal(err)
			}
			w, got, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if w.Role != RoleAgent || w.Torrent != "10.0.0.1:6881" {
				t.Fatalf("role %q torrent %q", w.Role, w.Torrent)
			}
			if len(tt.apps) == 0 && len(got) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.apps) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.apps)
			}
		})
	}
}

func TestMetaLimits(t *testing.T) {
	ring := release.NewKeyring(newKey(t).Public())
	n := startNode(t, testConfig("meta", ring))
	app := func(i int, errMsg string) AppState {
		return AppState{
			App:       fmt.Sprintf("application-with-a-long-name-%02d", i),
			Version:   "2025.03.01-build.1234",
			ReleaseID: release.IDOf([]byte{byte(i)}),
			Phase:     PhaseDownloading,
			Progress:  0.5,
			Error:     errMsg,
		}
	}

	// A long error is truncated to fit.
	long := []AppState{app(0, strings.Repeat("é", 2000))}
	if err := n.SetApps(long); err != nil {
		t.Fatalf("SetApps with a long error: %v", err)
	}
	self := n.Members()[0]
	if e := self.Apps[0].Error; len(e) == 0 || len(e) > 200 || !strings.HasPrefix(long[0].Error, e) {
		t.Fatalf("error gossiped as %d bytes %q", len(e), e)
	}

	var many []AppState
	for i := range 10 {
		many = append(many, app(i, ""))
	}
	if err := n.SetApps(many); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("SetApps with %d apps = %v, want ErrMetaTooLarge", len(many), err)
	}
	if got := n.Members()[0].Apps; len(got) != 1 {
		t.Fatalf("a refused update changed the gossiped state to %d apps", len(got))
	}

	// How many such apps fit, for the report.
	fit := 0
	for i := 1; i <= 10; i++ {
		if _, err := encodeMeta(RoleAgent, "10.0.0.1:6881", "", many[:i]); err != nil {
			break
		}
		fit = i
	}
	t.Logf("node meta holds %d apps with 31-byte names and 21-byte versions", fit)
}

func TestSetAppsValidates(t *testing.T) {
	ring := release.NewKeyring(newKey(t).Public())
	n := startNode(t, testConfig("v", ring))
	tests := []struct {
		name string
		apps []AppState
	}{
		{"bad app name", []AppState{{App: "Web/../x"}}},
		{"twice", []AppState{{App: "web"}, {App: "web"}}},
		{"unknown phase", []AppState{{App: "web", Phase: "dancing"}}},
		{"bad release id", []AppState{{App: "web", ReleaseID: "md5:abc"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := n.SetApps(tt.apps); err == nil {
				t.Fatal("SetApps accepted it")
			}
		})
	}
}
