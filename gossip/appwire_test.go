package gossip

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/swarmdeploy/swarm/release"
)

// TestAppStateRunningRoundTrip: a part carries what the node runs besides
// what it works towards, and why it refused a desired state. A node whose
// install of 3.0.0 rolled back runs 1.0.0, healthy: both travel.
func TestAppStateRunningRoundTrip(t *testing.T) {
	v1, v3 := release.IDOf([]byte("1.0.0")), release.IDOf([]byte("3.0.0"))
	tests := []struct {
		name string
		in   AppState
	}{
		{"rolled back", AppState{App: "web", Version: "3.0.0", ReleaseID: v3, Phase: PhaseRolledBack, Progress: 1,
			RunningVersion: "1.0.0", RunningReleaseID: v1, Healthy: true, Error: "health check failed"}},
		{"failed, runs nothing", AppState{App: "web", Version: "3.0.0", ReleaseID: v3, Phase: PhaseFailed, Progress: 1}},
		{"downloading over a running release", AppState{App: "web", Version: "3.0.0", ReleaseID: v3, Phase: PhaseDownloading,
			Progress: 0.5, RunningVersion: "1.0.0", RunningReleaseID: v1, Healthy: true}},
		{"active on its target", AppState{App: "web", Version: "3.0.0", ReleaseID: v3, Phase: PhaseActive, Progress: 1,
			RunningVersion: "3.0.0", RunningReleaseID: v3, Healthy: true}},
		{"active, nothing runs", AppState{App: "web", Version: "3.0.0", ReleaseID: v3, Phase: PhaseActive, Progress: 1}},
		{"refused", AppState{App: "web", Version: "1.0.0", ReleaseID: v1, Phase: PhaseActive, Progress: 1,
			RunningVersion: "1.0.0", RunningReleaseID: v1, Healthy: true, Refused: RefusedUntrustedKey}},
		{"refused, no state yet", AppState{App: "web", Refused: RefusedWrongRole}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkAppExtras([]AppState{tt.in}); err != nil {
				t.Fatal(err)
			}
			p, err := newPart(1, 0, encodeAppContent(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.state, tt.in) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", p.state, tt.in)
			}
			// Through a whole record as push/pull carries it.
			var rec selfRecord
			if _, _, err := rec.update(contentsOf([]AppState{tt.in})); err != nil {
				t.Fatal(err)
			}
			_, parts, err := decodeRecord(encodeRecord(rec.header("n1"), rec.parts), true)
			if err != nil || len(parts) != 1 || !reflect.DeepEqual(parts[0].state, tt.in) {
				t.Fatalf("record round trip: %v %+v", err, parts)
			}
		})
	}
}

// oldPart encodes a part as nodes built before the running release and
// refusal fields did.
func oldPart(a AppState) []byte {
	b := binary.AppendUvarint(nil, 0)
	b = appendString(b, a.App)
	b = appendString(b, a.Version)
	flags := byte(2)
	if a.Healthy {
		flags |= 1
	}
	b = append(b, flags)
	id, _ := idBytes(a.ReleaseID)
	b = append(b, id...)
	code, _ := phaseCode(a.Phase)
	b = append(b, code)
	b = binary.AppendUvarint(b, uint64(permille(a.Progress)))
	b = binary.AppendUvarint(b, 0)
	return appendString(b, a.Error)
}

// TestAppStateOldEncoding: parts of older nodes still decode (active: they
// run their release; otherwise nothing known), a settled node's part is
// byte for byte what an older node sends (so older nodes take it), and
// unknown flags are still refused.
func TestAppStateOldEncoding(t *testing.T) {
	id := release.IDOf([]byte("2.0.0"))
	active := AppState{App: "web", Version: "2.0.0", ReleaseID: id, Phase: PhaseActive, Healthy: true, Progress: 1}
	p, err := decodePart(oldPart(active), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := active
	want.RunningVersion, want.RunningReleaseID = "2.0.0", id
	if !reflect.DeepEqual(p.state, want) {
		t.Fatalf("old active part: %+v", p.state)
	}
	if now := binary.AppendUvarint(nil, 0); !bytes.Equal(append(now, encodeAppContent(want)...), oldPart(active)) {
		t.Fatal("a settled node's part differs from the old encoding: older nodes would refuse it")
	}
	failed := AppState{App: "web", Version: "2.0.0", ReleaseID: id, Phase: PhaseRolledBack, Progress: 1, Error: "health"}
	if p, err = decodePart(oldPart(failed), 0, 1); err != nil || !reflect.DeepEqual(p.state, failed) {
		t.Fatalf("old rolled-back part: %+v %v", p.state, err)
	}
	bad := oldPart(active)
	bad[1+1+len("web")+1+len("2.0.0")] |= 32
	if _, err := decodePart(bad, 0, 1); err == nil || !strings.Contains(err.Error(), "unknown flags") {
		t.Fatalf("unknown flag: %v", err)
	}
	if err := checkAppExtras([]AppState{{App: "web", Refused: "bored"}}); err == nil {
		t.Fatal("an unknown refusal code was taken")
	}
	if err := checkAppExtras([]AppState{{App: "web", RunningVersion: "1.0.0"}}); err == nil {
		t.Fatal("a running version without its release id was taken")
	}
}
