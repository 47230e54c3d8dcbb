package faults

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// faultWait bounds each wait for the moment of a fault (a download at
// 40%, a hook started).
const faultWait = 2 * time.Minute

// baseline: no fault; the reference for the other scenarios' figures.
func baseline(ctx context.Context, s *scenarioRun) error {
	if err := s.begin(ctx, nil); err != nil {
		return err
	}
	s.note("none")
	return s.converge(ctx)
}

// kill9 kills an agent's daemon (not its hook) and notes it.
func (s *scenarioRun) kill9(a *agentProc, why string) {
	a.proc.kill9()
	s.note("kill -9 %s %s (%.0fs)", a.node.Name, why, time.Since(s.t0).Seconds())
}

// killDownload: kill -9 one agent at 40% of its download, restart it.
func killDownload(ctx context.Context, s *scenarioRun) error {
	if err := s.begin(ctx, nil); err != nil {
		return err
	}
	a := s.f.agents[1]
	var at float64
	if err := s.waitFor(ctx, a.node.Name+" at 40%", faultWait, func(now map[string]Bytes) (bool, error) {
		at = s.rxFraction(now, a)
		if s.f.onRelease(a) {
			return false, fmt.Errorf("%s finished before the kill: make the release larger or the rate lower", a.node.Name)
		}
		return at >= 0.4, nil
	}); err != nil {
		return err
	}
	s.kill9(a, fmt.Sprintf("at %.0f%% received", 100*at))
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	intact, err := intactPieces(a.data, s.f.bundle.Path, s.f.bundle.Manifest.PieceLength)
	if err != nil {
		return err
	}
	logFrom := logSize(a.log)
	if err := s.f.startAgent(ctx, a); err != nil {
		return err
	}
	if err := s.converge(ctx); err != nil {
		return err
	}
	s.checkResume(a, intact, logFrom)
	return nil
}

// killHook: kill -9 one agent while its hook runs, restart it.
func killHook(ctx context.Context, s *scenarioRun) error {
	sleepEnv := fmt.Sprintf("FAULT_HOOK_SLEEP=%.1f", s.cfg.HookSleep.Seconds())
	for _, a := range s.f.agents {
		a.env = append(a.env, sleepEnv)
	}
	if err := s.begin(ctx, nil); err != nil {
		return err
	}
	a := s.f.agents[1]
	if err := s.waitFor(ctx, a.node.Name+"'s hook to start", faultWait, func(map[string]Bytes) (bool, error) {
		runs, err := hookRuns(a.hookLog, string(s.f.releaseID))
		return len(runs) > 0 && runs[0].end == 0, err
	}); err != nil {
		return err
	}
	s.kill9(a, "during its hook")
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	if err := s.f.startAgent(ctx, a); err != nil {
		return err
	}
	return s.converge(ctx)
}

func seederJoin(ctx context.Context, s *scenarioRun) error   { return seederRestart(ctx, s, true) }
func seederNoJoin(ctx context.Context, s *scenarioRun) error { return seederRestart(ctx, s, false) }

// seederRestart: kill -9 the seeder at 30% of the rollout, keep it down,
// restart it with its store, with or without --join.
func seederRestart(ctx context.Context, s *scenarioRun, join bool) error {
	if err := s.begin(ctx, nil); err != nil {
		return err
	}
	var at float64
	if err := s.waitFor(ctx, "the rollout at 30%", faultWait, func(now map[string]Bytes) (bool, error) {
		at = s.meanRX(now)
		return at >= 0.3, nil
	}); err != nil {
		return err
	}
	s.f.seeder.kill9()
	s.note("kill -9 seeder at %.0f%% (%.0fs), down %s", 100*at, time.Since(s.t0).Seconds(), s.cfg.SeederDown)
	if err := sleep(ctx, s.cfg.SeederDown); err != nil {
		return err
	}
	var joinTo []string
	if join {
		joinTo = []string{s.f.agents[0].node.Addr + ":" + gossipPort}
		s.note("restarted with --join %s", joinTo[0])
	} else {
		s.note("restarted without --join")
	}
	if err := s.f.startSeeder(ctx, joinTo...); err != nil {
		return err
	}
	return s.converge(ctx)
}

// partition: a two-step rollout; at 25% of it, a third of the agents lose
// their links for cfg.Partition; then they come back.
func partition(ctx context.Context, s *scenarioRun) error {
	plan := &release.Plan{Steps: []release.Step{{Percent: 34}, {Percent: 100}}, Bake: 2 * time.Second}
	if err := s.begin(ctx, plan); err != nil {
		return err
	}
	var cut []*agentProc
	for i, a := range s.f.agents {
		if i%3 == 2 {
			cut = append(cut, a)
		}
	}
	var at float64
	var now map[string]Bytes
	if err := s.waitFor(ctx, "the rollout at 25%", faultWait, func(n map[string]Bytes) (bool, error) {
		at, now = s.meanRX(n), n
		return at >= 0.25, nil
	}); err != nil {
		return err
	}
	// The pieces the cut agents hold may be theirs alone: the rest may
	// have to fetch them from the origin again.
	for _, a := range cut {
		s.forced += min(s.delta(now, a.node.Name).RXPayload(), s.r.BundleBytes)
	}
	s.forced = min(s.forced, s.r.BundleBytes)
	var names []string
	for _, a := range cut {
		if err := s.f.lab.SetLink(ctx, a.node, false); err != nil {
			return err
		}
		names = append(names, a.node.Name)
	}
	s.note("links of %s down at %.0f%% (%.0fs) for %s", strings.Join(names, ","), 100*at, time.Since(s.t0).Seconds(), s.cfg.Partition)
	if err := sleep(ctx, s.cfg.Partition); err != nil {
		return err
	}
	for _, a := range cut {
		if err := s.f.lab.SetLink(ctx, a.node, true); err != nil {
			return err
		}
	}
	return s.converge(ctx)
}

// diskFullWait bounds the wait for the full agent to fail or stall.
const diskFullWait = 30 * time.Second

// diskFull: one agent's data dir is a tmpfs half the bundle's size. Once
// it has failed (or stopped receiving), the tmpfs grows to room for the
// bundle and its unpacked copy; the agent must then finish by itself.
func diskFull(ctx context.Context, s *scenarioRun) error {
	a := s.f.agents[2]
	small := s.r.BundleBytes / 2
	if err := s.f.lab.MountTmpfs(a.data, small); err != nil {
		return err
	}
	s.note("%s's data dir on a %.0f MiB tmpfs", a.node.Name, mib(small))
	if err := s.begin(ctx, nil); err != nil {
		return err
	}
	var last int64
	lastAt := time.Now()
	said := ""
	err := s.waitFor(ctx, a.node.Name+" to fail or stall on its full disk", diskFullWait, func(now map[string]Bytes) (bool, error) {
		if st, err := s.f.status(ctx); err == nil {
			for _, n := range st.Nodes {
				for _, ap := range n.Apps {
					if n.Name == a.node.Name && ap.App == app && ap.Phase == "failed" {
						said = ap.Error
					}
				}
			}
		}
		if said != "" {
			return true, nil
		}
		if rx := s.delta(now, a.node.Name).RX; rx != last {
			last, lastAt = rx, time.Now()
		}
		return float64(last) > 0.4*float64(s.r.BundleBytes) && time.Since(lastAt) > 5*time.Second, nil
	})
	switch {
	case errors.Is(err, errWaitTimeout):
		s.note("in %s it neither reported failed nor stopped receiving", diskFullWait)
		s.problems = append(s.problems, fmt.Sprintf("%s never reported failed while its disk was full (the issue asks for a failed phase saying disk full)", a.node.Name))
	case err != nil:
		return err
	case said != "":
		s.note("it reported failed: %q", said)
	default:
		s.note("it stopped receiving")
		s.problems = append(s.problems, fmt.Sprintf("%s stopped on its full disk without reporting failed", a.node.Name))
	}
	big := 3*s.r.BundleBytes + 64<<20
	if err := s.f.lab.ResizeTmpfs(a.data, big); err != nil {
		return err
	}
	s.note("tmpfs grown to %.0f MiB at %.0fs", mib(big), time.Since(s.t0).Seconds())
	return s.converge(ctx)
}

// corruptPeer: one agent fetches the release alone; then its bundle is
// overwritten in every piece on disk, and the other agents start and
// fetch from the origin and from it.
func corruptPeer(ctx context.Context, s *scenarioRun) error {
	bad := s.f.agents[0]
	if err := s.f.startSeeder(ctx); err != nil {
		return err
	}
	if err := s.f.startAgents(ctx, bad); err != nil {
		return err
	}
	if err := s.f.publish(ctx, nil); err != nil {
		return err
	}
	if err := s.waitFor(ctx, bad.node.Name+" to run the release", faultWait, func(map[string]Bytes) (bool, error) {
		return s.f.onRelease(bad), nil
	}); err != nil {
		return err
	}
	n, err := corruptBundle(bad.data, s.f.bundle.Manifest.PieceLength)
	if err != nil {
		return err
	}
	s.note("%s's bundle corrupted in %d pieces after it finished", bad.node.Name, n)
	if err := s.mark(ctx); err != nil {
		return err
	}
	if err := s.f.startAgents(ctx, s.f.agents[1:]...); err != nil {
		return err
	}
	if err := s.converge(ctx); err != nil {
		return err
	}
	now, err := s.f.lab.Counters(ctx)
	if err != nil {
		return err
	}
	s.rxExtra = s.delta(now, bad.node.Name).TX
	s.note("it sent %.1f MiB meanwhile", mib(s.rxExtra))
	return nil
}

// corruptBundle overwrites 64 bytes in every piece of the one complete
// bundle under dataDir/bundles, and returns how many pieces it hit.
func corruptBundle(dataDir string, pieceLen int64) (int, error) {
	var path string
	var size int64
	err := filepath.WalkDir(filepath.Join(dataDir, "bundles"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".part") {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Size() > size {
			path, size = p, fi.Size()
		}
		return nil
	})
	if err != nil || path == "" {
		return 0, fmt.Errorf("corrupt: no bundle under %s: %v", dataDir, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("corrupt: %w", err)
	}
	junk := make([]byte, 64)
	for i := range junk {
		junk[i] = byte(0xA5 ^ i)
	}
	n := 0
	for off := int64(0); off+int64(len(junk)) <= size; off += pieceLen {
		if _, err := f.WriteAt(junk, off+min(pieceLen/2, size-off-int64(len(junk)))); err != nil {
			f.Close()
			return n, fmt.Errorf("corrupt: %w", err)
		}
		n++
	}
	return n, f.Close()
}

// churnRounds bounds the churn scenario's kills.
const churnRounds = 8

// churn: every 4 s during the rollout, kill -9 10% of the agents (at
// least one) and restart them a second later; at most churnRounds rounds.
func churn(ctx context.Context, s *scenarioRun) error {
	if err := s.begin(ctx, nil); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 14))
	per := max(1, (len(s.f.agents)+9)/10)
	kills := 0
	for round := 0; round < churnRounds; round++ {
		if err := sleep(ctx, 4*time.Second); err != nil {
			return err
		}
		if err := s.f.checkAlive(); err != nil {
			return err
		}
		if len(s.behind(ctx)) == 0 {
			break
		}
		var hit []*agentProc
		for _, i := range rng.Perm(len(s.f.agents))[:per] {
			a := s.f.agents[i]
			a.proc.kill9()
			hit = append(hit, a)
			kills++
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		for _, a := range hit {
			if err := s.f.startAgent(ctx, a); err != nil {
				return err
			}
		}
	}
	s.note("%d kill -9 and restarts over %.0fs, %d a round", kills, time.Since(s.t0).Seconds(), per)
	return s.converge(ctx)
}
