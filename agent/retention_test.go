package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

func TestPruneChoice(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := func(app, id string, ageH int, size int64) heldBundle {
		return heldBundle{bundleRecord: bundleRecord{App: app, ReleaseID: release.ID(id), Size: size, Fetched: t0.Add(-time.Duration(ageH) * time.Hour)}}
	}
	// web: w1 newest … w5 oldest; api: a1 newer than a2.
	held := []heldBundle{
		b("web", "w3", 3, 100), b("web", "w1", 1, 100), b("api", "a2", 2, 50),
		b("web", "w5", 5, 100), b("web", "w2", 2, 100), b("web", "w4", 4, 100), b("api", "a1", 1, 50),
	}
	prot := func(ids ...string) map[release.ID]bool {
		m := map[release.ID]bool{}
		for _, id := range ids {
			m[release.ID(id)] = true
		}
		return m
	}
	tests := []struct {
		name          string
		protected     map[release.ID]bool
		keep          int
		free, minFree int64
		want          []string
		wantShort     int64
	}{
		{"keep 3 per app", prot("w1", "w2"), 3, 1000, 0, []string{"w4", "w5"}, 0},
		{"keep 2, never the protected old one", prot("w1", "w5"), 2, 1000, 0, []string{"w3", "w4"}, 0},
		{"every app counts alone", prot(), 1, 1000, 0, []string{"w2", "w3", "w4", "w5", "a2"}, 0},
		// Watermark: 150 short after keep-based removal frees 200; the
		// oldest removable (w3, then a2) go next, never w1/w2 (protected).
		{"watermark takes oldest removable", prot("w1", "w2"), 3, 0, 350, []string{"w4", "w5", "w3", "a2"}, 0},
		{"watermark met by keep alone", prot("w1", "w2"), 3, 200, 350, []string{"w4", "w5"}, 0},
		{"watermark cannot be met", prot("w1", "w2", "a1"), 5, 0, 10000, []string{"w3", "w4", "w5", "a2"}, 10000 - 350},
		{"nothing to do", prot(), 5, 1000, 500, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm, short := pruneChoice(held, tt.protected, nil, tt.keep, tt.free, tt.minFree)
			var got []string
			for _, r := range rm {
				if tt.protected[r.ReleaseID] {
					t.Errorf("removed protected %s", r.ReleaseID)
				}
				got = append(got, string(r.ReleaseID))
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("removed %v, want %v", got, want)
			}
			if short != tt.wantShort {
				t.Errorf("short %d, want %d", short, tt.wantShort)
			}
		})
	}
}

// Part files of downloads that did not complete go unless their release is
// wanted (a desired target or in flight), whatever keep says, and do not
// count toward an app's keep; what they free counts toward the watermark.
func TestPruneChoicePartFiles(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := func(id string, ageH int, size int64, partial bool) heldBundle {
		return heldBundle{bundleRecord: bundleRecord{App: "web", ReleaseID: release.ID(id), Size: size, Fetched: t0.Add(-time.Duration(ageH) * time.Hour)},
			partial: partial, bytes: size / 2}
	}
	held := []heldBundle{
		b("cur", 3, 100, false), b("old", 5, 100, false),
		b("superseded", 2, 400, true), b("target", 1, 400, true), b("orphan", 4, 0, true),
	}
	set := func(ids ...string) map[release.ID]bool {
		m := map[release.ID]bool{}
		for _, id := range ids {
			m[release.ID(id)] = true
		}
		return m
	}
	ids := func(hs []heldBundle) []string {
		var out []string
		for _, h := range hs {
			out = append(out, string(h.ReleaseID))
		}
		slices.Sort(out)
		return out
	}
	// keep 1: the superseded and orphan part files go, the target's stays;
	// part files do not make "cur" count as second.
	rm, short := pruneChoice(held, set("cur", "target"), set("target"), 1, 1000, 0)
	if got, want := ids(rm), []string{"old", "orphan", "superseded"}; !slices.Equal(got, want) {
		t.Errorf("keep 1: removed %v, want %v", got, want)
	}
	if short != 0 {
		t.Errorf("keep 1: short %d", short)
	}
	// A part file protected as a previous release is still dropped when no
	// state targets it; its 200 bytes on disk meet the watermark.
	rm, _ = pruneChoice(held, set("cur", "old", "superseded", "target"), set("target"), 5, 0, 200)
	if got, want := ids(rm), []string{"orphan", "superseded"}; !slices.Equal(got, want) {
		t.Errorf("watermark: removed %v, want %v", got, want)
	}
}
