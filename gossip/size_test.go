package gossip

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// TestDesiredStateSize measures what one desired state with target and
// previous manifests costs on the wire, against the one-packet limit.
func TestDesiredStateSize(t *testing.T) {
	k := newKey(t)
	state := func(app, version string) release.SignedDesiredState {
		t.Helper()
		now := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
		prev := manifest(t, k, app, version+"-prev")
		d := release.DesiredState{
			App: app, Sequence: 123456, Target: manifest(t, k, app, version), Previous: &prev,
			Plan: release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}}}, Step: 1,
			Issued: now, Expires: now.Add(24 * time.Hour),
		}
		sd, err := release.SignDesired(d, k)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	tests := []struct {
		name, app, version string
	}{
		{"typical", "billing-worker", "1.5.0-rc.1"},
		{"longest names", strings.Repeat("a", 63), strings.Repeat("1", 43)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sd := state(tt.app, tt.version)
			js, _ := json.Marshal(sd)
			for _, encrypted := range []bool{false, true} {
				limit := maxBroadcast(encrypted)
				msg, err := encodeDesired(sd, limit)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: JSON %d bytes; message %d bytes (type %d); limit %d (encrypted %v)",
					tt.name, len(js), len(msg), msg[0], limit, encrypted)
				if len(msg) > limit {
					t.Errorf("does not fit one packet")
				}
				got, err := decodeDesired(msg)
				if err != nil || !sameEnvelope(got, sd) {
					t.Fatalf("round trip: %v", err)
				}
			}
		})
	}
}
