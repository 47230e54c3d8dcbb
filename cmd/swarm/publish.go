package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

type publishOptions struct {
	path, app, version, key string
	api                     apiFlags
	env                     string
	json, wait              bool
	timeout, waitTimeout    time.Duration
	plan                    planFlags
}

func newPublishCmd(ios streams, _ *globalOptions) *cobra.Command {
	o := &publishOptions{}
	cmd := &cobra.Command{
		Use:   "publish PATH --app NAME --version V --key FILE --seeder URL",
		Short: "Pack, sign and publish a release to the seeder",
		Long: `publish packs PATH (a directory, or one file) into a deterministic tar+zstd
bundle, computes its release id (sha256) and torrent infohash, signs the
manifest with --key and streams the bundle to the seeder, which stores it,
seeds it and makes it the app's desired release. It prints the release id,
the infohash and a magnet URI, so any BitTorrent client can fetch it too.`,
		Example: `  swarm publish ./build --app web --version 1.4.2 \
    --key /etc/swarm/swarm.key --seeder http://127.0.0.1:7700 --api-token-file /etc/swarm/api-token
  SWARM_API_TOKEN=$(cat token) swarm publish ./build --app web --version 1.4.3 \
    --key swarm.key --seeder https://seeder.example:7700 --tls-ca ca.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.path = args[0]
			return publishRun(cmd.Context(), ios, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.app, "app", "", "app name (required): a-z, 0-9, '.', '_', '-'")
	f.StringVar(&o.version, "version", "", "release version (required), e.g. 1.4.2")
	f.StringVar(&o.key, "key", "", "private key file that signs the manifest (required, mode 0600)")
	o.api.add(f)
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on the upload after this long")
	f.StringVar(&o.env, "env", release.DefaultEnv, "environment the release rolls out to")
	f.BoolVar(&o.wait, "wait", false, "follow the rollout: exit 0 when it completes, 1 when it is rolled back, stalled or aborted")
	f.DurationVar(&o.waitTimeout, "wait-timeout", time.Hour, "with --wait: give up (exit 1) after this long")
	o.plan.add(f)
	return cmd
}

func publishRun(ctx context.Context, ios streams, o *publishOptions) error {
	if o.app == "" || o.version == "" || o.key == "" {
		return usageErrorf("publish: --app, --version and --key are required")
	}
	if err := release.ValidateApp(o.app); err != nil {
		return usageErrorf("publish: %w", err)
	}
	if err := release.ValidateVersion(o.version); err != nil {
		return usageErrorf("publish: %w", err)
	}
	if err := release.ValidateEnv(o.env); err != nil {
		return usageErrorf("publish: --env: %w", err)
	}
	plan, err := o.plan.build()
	if err != nil {
		return usageErrorf("publish: %w", err)
	}
	if _, err := os.Stat(o.path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return usageErrorf("publish: %s does not exist; give the directory or file to release", o.path)
		}
		return usageErrorf("publish: %w", err)
	}
	key, err := release.LoadPrivateKey(o.key)
	if err != nil {
		return usageErrorf("publish: %w", err)
	}
	client, err := o.api.client("publish")
	if err != nil {
		return err
	}
	if err := client.Ping(ctx, 5*time.Second); err != nil {
		return fmt.Errorf("publish: %w; check --seeder and that 'swarm seeder' is running", err)
	}
	if err := checkAPI(ctx, "publish", client); err != nil {
		return err
	}

	bar := newBar(ios.Err, -1, "packing")
	b, err := seeder.Pack(seeder.PackOptions{
		Source: o.path, App: o.app, Version: o.version, Key: key,
		Progress: func(n int64) { _ = bar.Set64(n) },
	})
	_ = bar.Finish()
	switch {
	case errors.Is(err, release.ErrEmpty):
		return usageErrorf("publish: nothing to release in %s: it holds no regular file", o.path)
	case errors.Is(err, release.ErrUnsafeEntry):
		return usageErrorf("publish: %w; remove it from %s", err, o.path)
	case errors.Is(err, release.ErrTooManyEntries):
		return usageErrorf("publish: %s: %w", o.path, err)
	case err != nil:
		return fmt.Errorf("publish: %w", err)
	}
	defer b.Close()

	up := newBar(ios.Err, b.Manifest.BundleSize, "uploading")
	uctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	out, err := client.PublishBundle(uctx, b, up, seeder.PublishOptions{Env: o.env, Plan: &plan})
	_ = up.Finish()
	if err != nil {
		return refusal("publish", b.Manifest.App, b.Manifest.Version, err)
	}
	// A publish that reaches nobody must not pass for one that worked.
	noneReachable := out.Reachable != nil && *out.Reachable == 0 && !out.Pending
	if noneReachable {
		fmt.Fprintf(ios.Err, "warning: %s\n", unreachableText(o.env))
	}
	if o.json && !o.wait {
		enc := json.NewEncoder(ios.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	note := ""
	switch {
	case out.Pending:
		note = fmt.Sprintf(" (waiting for release signatures: %d of %d)", out.Signatures, out.Threshold)
	case out.Existed:
		note = " (already stored)"
	}
	m := b.Manifest
	fmt.Fprintf(ios.Out, "published %s %s%s\n", out.App, out.Version, note)
	fmt.Fprintf(ios.Out, "  release id  %s\n", out.ReleaseID)
	fmt.Fprintf(ios.Out, "  infohash    %s\n", out.InfoHash)
	fmt.Fprintf(ios.Out, "  magnet      %s\n", out.Magnet)
	fmt.Fprintf(ios.Out, "  size        %s (unpacked %s, %d files)\n", humanBytes(m.BundleSize), humanBytes(m.UnpackedSize), b.Files)
	fmt.Fprintf(ios.Out, "  sequence    %d\n", out.Sequence)
	fmt.Fprintf(ios.Out, "  rollout     %s in %s\n", describePlan(plan), o.env)
	if out.Note != "" {
		fmt.Fprintf(ios.Out, "  note        %s\n", out.Note)
	}
	if o.wait && out.Pending {
		fmt.Fprintf(ios.Err, "waiting for the last release signature (swarm sign) before following the rollout\n")
		if err := waitTarget(ctx, client, out.App, o.env, out.ReleaseID, o.waitTimeout); err != nil {
			return err
		}
	}
	if o.wait && noneReachable {
		if err := waitReachable(ctx, client, out.App, o.env, min(joinGrace, o.waitTimeout)); err != nil {
			return err
		}
	}
	if o.wait {
		return followRollout(ctx, ios, client, out.App, o.env, out.ReleaseID, o.waitTimeout, o.json)
	}
	return nil
}

// joinGrace is how long publish --wait gives agents to join a seeder that
// reaches none before it fails.
const joinGrace = 15 * time.Second

func unreachableText(env string) string {
	return fmt.Sprintf("no agent in env %s is reachable from the seeder; the release will reach nodes when they join", env)
}

// waitReachable polls the rollout of app in env until it counts a node, or
// fails (exit 1) once grace has passed.
func waitReachable(ctx context.Context, client *seeder.Client, app, env string, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := client.Rollout(qctx, app, env)
		qcancel()
		if err == nil && st.Nodes > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish --wait: %s after %s; start agents with --env %s and --join the seeder's gossip address, then follow with 'swarm rollout status %s --env %s'",
				unreachableText(env), grace, env, app, env)
		case <-time.After(time.Second):
		}
	}
}

// describePlan is one line about a plan, for people.
func describePlan(p release.Plan) string {
	s := string(p.Strat())
	if p.Strat() == release.StrategyWaves {
		s += " " + p.String()
	}
	if p.Bake > 0 {
		s += ", bake " + p.Bake.String()
	}
	s += ", max failures " + p.MaxFailures.String()
	if p.NoAutoRollback {
		s += ", no auto rollback"
	}
	return s
}

// waitTarget polls until id is app's target in env (a pending release got
// its last signature), or timeout passes.
func waitTarget(ctx context.Context, client *seeder.Client, app, env string, id release.ID, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := client.Rollout(qctx, app, env)
		qcancel()
		if err == nil && st.ReleaseID == id {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish --wait: %s in %s did not get its release signatures within %s; add them with 'swarm sign --app %s --version VERSION'", app, env, timeout, app)
		case <-time.After(time.Second):
		}
	}
}

// followRollout polls the rollout of id until it ends: nil when it
// completes, an error (exit 1) once it was rolled back (every moved node
// back on the previous release), stalled or aborted, or the timeout passed. Progress goes to stderr, one line per change.
func followRollout(ctx context.Context, ios streams, client *seeder.Client, app, env string, id release.ID, timeout time.Duration, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := client.Rollout(qctx, app, env)
		qcancel()
		if err == nil {
			line := fmt.Sprintf("%-12s step %d/%d  admitted %d/%d  failures %d/%d  %s", st.State, st.Step, st.Steps, st.Admitted, st.Nodes, st.Failures, st.Budget, phaseCounts(st.Phases))
			if line != last {
				fmt.Fprintf(ios.Err, "%s  %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
			if st.State.Final() || st.State == release.RolloutStalled {
				if asJSON {
					enc := json.NewEncoder(ios.Out)
					enc.SetIndent("", "  ")
					_ = enc.Encode(st)
				}
				switch {
				case st.State == release.RolloutComplete && st.ReleaseID == id:
					fmt.Fprintf(ios.Out, "rollout of %s %s in %s complete on %d nodes\n", app, st.Version, env, st.Nodes)
					return nil
				case st.State == release.RolloutComplete:
					return fmt.Errorf("publish --wait: %s in %s now targets %s: a newer publish took over", app, env, st.Version)
				case st.State == release.RolloutRolledBack:
					return fmt.Errorf("publish --wait: %s in %s rolled back to %s on %d nodes: %s", app, env, st.Version, st.Nodes, st.Reason)
				default:
					return fmt.Errorf("publish --wait: rollout of %s in %s %s: %s", app, env, st.State, st.Reason)
				}
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("publish --wait: %w", err)
			}
			return fmt.Errorf("publish --wait: rollout of %s in %s not finished after %s; follow it with 'swarm rollout status %s --env %s'", app, env, timeout, app, env)
		case <-time.After(time.Second):
		}
	}
}

// newBar is a progress bar on w when w is a terminal, and silent otherwise,
// so scripts and logs stay clean.
func newBar(w io.Writer, max int64, what string) *progressbar.ProgressBar {
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		return progressbar.DefaultBytesSilent(max, what)
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-10s", what)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionShowCount(),
	)
}

// humanBytes prints n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
