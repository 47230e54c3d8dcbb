package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/seeder"
)

// planFlags are the rollout plan flags shared by publish and
// promote-release.
type planFlags struct {
	plan, maxFailures, minStaged, strategy string
	bake, deadline                         time.Duration
	noAutoRollback                         bool
}

func (p *planFlags) add(f *pflag.FlagSet) {
	f.StringVar(&p.plan, "plan", "", `waves as node counts or percentages, e.g. "1,10%,50%,100%" (default: every node at once)`)
	f.DurationVar(&p.bake, "bake", 0, "how long a wave's nodes must be active and healthy before the next wave")
	f.StringVar(&p.maxFailures, "max-failures", "0", `failed nodes tolerated, as a count or a ratio ("2", "5%"); one more rolls back`)
	f.DurationVar(&p.deadline, "progress-deadline", 0, "a wave that takes longer than this stalls and pauses the rollout (0 = none)")
	f.StringVar(&p.strategy, "strategy", "waves", "waves, all-at-once or blue-green (every node stages, then all switch together)")
	f.StringVar(&p.minStaged, "min-staged", "100%", "blue-green: nodes that must have the release staged before the switch")
	f.BoolVar(&p.noAutoRollback, "no-auto-rollback", false, "when the failure budget is spent, stall instead of rolling back")
}

// build turns the flags into a plan, refusing bad input with one line.
func (p *planFlags) build() (release.Plan, error) {
	strategy, err := release.ParseStrategy(p.strategy)
	if err != nil {
		return release.Plan{}, err
	}
	steps, err := release.ParseSteps(p.plan)
	if err != nil {
		return release.Plan{}, err
	}
	if strategy != release.StrategyWaves && p.plan != "" {
		return release.Plan{}, fmt.Errorf("--plan is for --strategy waves; %s moves every node together", strategy)
	}
	if len(steps) == 0 && strategy == release.StrategyWaves {
		strategy = release.StrategyAllAtOnce
	}
	maxFail, err := release.ParseBudget(p.maxFailures)
	if err != nil {
		return release.Plan{}, fmt.Errorf("--max-failures: %w", err)
	}
	minStaged, err := release.ParseBudget(p.minStaged)
	if err != nil {
		return release.Plan{}, fmt.Errorf("--min-staged: %w", err)
	}
	if minStaged.Ratio == 1 {
		minStaged = release.Budget{} // zero means every node
	}
	if p.bake < 0 || p.deadline < 0 {
		return release.Plan{}, errors.New("--bake and --progress-deadline must not be negative")
	}
	plan := release.Plan{
		Strategy: strategy, Steps: steps, Bake: p.bake, MaxFailures: maxFail,
		ProgressDeadline: p.deadline, NoAutoRollback: p.noAutoRollback, MinStaged: minStaged,
	}
	if strategy == release.StrategyWaves && len(steps) == 1 {
		plan.Strategy, plan.Steps = release.StrategyAllAtOnce, nil
	}
	return plan, plan.Validate()
}

type rolloutOptions struct {
	api           apiFlags
	env, to, from string
	json          bool
	plan          planFlags
}

func newRolloutCmd(ios streams) *cobra.Command {
	o := &rolloutOptions{}
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow and steer an app's rollout: status, pause, resume, promote, abort, rollback",
		Long: `rollout shows and steers the rollout of one app in one environment.

States: progressing (a wave is installing), baking (the wave is active and
healthy; the bake clock runs), paused, stalled (past --progress-deadline, or
the failure budget spent with --no-auto-rollback; paused with the reason),
complete, rolling-back and rolled-back (every node that moved is sent back to
the previous release at once, and the release is marked bad: no node installs
it again until it is published anew), aborted (no further wave; nodes keep
what they run).`,
		Example: `  swarm rollout status web --env prod
  swarm rollout pause web --env prod
  swarm rollout promote web --env prod         # skip the current bake
  swarm rollout rollback web --env prod --to 1.4.1
  swarm rollout promote-release web --from staging --to prod --plan 1,10%,100% --bake 5m`,
	}
	pf := cmd.PersistentFlags()
	o.api.add(pf)
	pf.StringVar(&o.env, "env", release.DefaultEnv, "environment")
	pf.BoolVar(&o.json, "json", false, "print the rollout as one JSON object")

	verbs := []struct{ verb, short string }{
		{"status", "Show the rollout: state, wave, admitted nodes, failures, nodes per phase"},
		{seeder.VerbPause, "Stop admitting nodes; nodes installing finish"},
		{seeder.VerbResume, "Resume a paused or stalled rollout"},
		{seeder.VerbPromote, "Skip the current bake: admit the next wave now"},
		{seeder.VerbAbort, "End the rollout where it is: no further wave, nodes keep what they run"},
	}
	for _, v := range verbs {
		verb := v.verb
		cmd.AddCommand(&cobra.Command{
			Use: verb + " APP", Short: v.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return rolloutRun(cmd.Context(), ios, o, verb, args[0])
			},
		})
	}
	rb := &cobra.Command{
		Use: "rollback APP [--to VERSION]", Short: "Return every node to the previous release (or --to VERSION) at once",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rolloutRun(cmd.Context(), ios, o, seeder.VerbRollback, args[0])
		},
	}
	rb.Flags().StringVar(&o.to, "to", "", "version to return to (default: the previous release)")
	pr := &cobra.Command{
		Use:   "promote-release APP --from ENV --to ENV",
		Short: "Roll the exact release one environment runs out to another, under its own plan; no re-upload",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return promoteReleaseRun(cmd.Context(), ios, o, cmd.Flags(), args[0])
		},
	}
	pr.Flags().StringVar(&o.from, "from", "", "environment whose target release is promoted (required)")
	pr.Flags().StringVar(&o.to, "to", "", "environment it is rolled out to (required)")
	o.plan.add(pr.Flags())
	cmd.AddCommand(rb, pr)
	for _, c := range cmd.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return cmd
}

func (o *rolloutOptions) client() (*seeder.Client, error) { return o.api.client("rollout") }

func rolloutRun(ctx context.Context, ios streams, o *rolloutOptions, verb, app string) error {
	if err := release.ValidateApp(app); err != nil {
		return usageErrorf("rollout %s: %w", verb, err)
	}
	if err := release.ValidateEnv(o.env); err != nil {
		return usageErrorf("rollout %s: --env: %w", verb, err)
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var st rollout.Status
	switch {
	case verb == "status":
		st, err = client.Rollout(ctx, app, o.env)
	case verb == seeder.VerbRollback && o.to != "":
		if err := release.ValidateVersion(o.to); err != nil {
			return usageErrorf("rollout rollback: --to: %w", err)
		}
		st, err = client.RollbackTo(ctx, app, o.env, o.to)
	default:
		st, err = client.RolloutCommand(ctx, app, o.env, verb)
	}
	if err != nil {
		return rolloutError(verb, app, o.env, err)
	}
	return printRollout(ios.Out, st, o.json)
}

func promoteReleaseRun(ctx context.Context, ios streams, o *rolloutOptions, flags *pflag.FlagSet, app string) error {
	if o.from == "" || o.to == "" {
		return usageErrorf("rollout promote-release: --from and --to are required")
	}
	for _, e := range []string{o.from, o.to} {
		if err := release.ValidateEnv(e); err != nil {
			return usageErrorf("rollout promote-release: %w", err)
		}
	}
	if o.from == o.to {
		return usageErrorf("rollout promote-release: --from and --to are both %s; name two environments", o.from)
	}
	var plan *release.Plan
	if planGiven(flags) {
		p, err := o.plan.build()
		if err != nil {
			return usageErrorf("rollout promote-release: %w", err)
		}
		plan = &p
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := client.PromoteRelease(ctx, app, o.from, o.to, plan)
	if err != nil {
		return rolloutError("promote-release", app, o.to, err)
	}
	return printRollout(ios.Out, st, o.json)
}

// planGiven reports whether any plan flag was set.
func planGiven(f *pflag.FlagSet) bool {
	for _, n := range []string{"plan", "bake", "max-failures", "progress-deadline", "strategy", "min-staged", "no-auto-rollback"} {
		if f.Changed(n) {
			return true
		}
	}
	return false
}

// rolloutError turns a seeder answer into one line: refusals of what was
// asked (unknown app, nothing to roll back to, a rollout that has ended)
// exit 2, an unreachable seeder 1.
func rolloutError(verb, app, env string, err error) error {
	var refused *seeder.ErrRefused
	if errors.As(err, &refused) {
		if refused.Status/100 == 4 {
			return usageErrorf("rollout %s %s (%s): %s", verb, app, env, refused.Message)
		}
		return fmt.Errorf("rollout %s %s (%s): seeder failed (%d): %s", verb, app, env, refused.Status, refused.Message)
	}
	return fmt.Errorf("rollout %s %s (%s): %w; check --seeder and that 'swarm seeder' is running", verb, app, env, err)
}

func printRollout(w io.Writer, st rollout.Status, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "app\t%s (%s)\n", st.App, st.Env)
	fmt.Fprintf(tw, "release\t%s  %s\n", st.Version, short(string(st.ReleaseID)))
	state := string(st.State)
	if st.BakeLeftS > 0 {
		state += fmt.Sprintf(" (%ds left)", st.BakeLeftS)
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "strategy\t%s, step %d of %d\n", st.Strategy, st.Step, st.Steps)
	fmt.Fprintf(tw, "admitted\t%d of %d nodes\n", st.Admitted, st.Nodes)
	fmt.Fprintf(tw, "failures\t%d (budget %d)\n", st.Failures, st.Budget)
	if st.Reason != "" {
		fmt.Fprintf(tw, "reason\t%s\n", st.Reason)
	}
	fmt.Fprintf(tw, "nodes\t%s\n", phaseCounts(st.Phases))
	return tw.Flush()
}

// phaseOrder is the order phases are listed in.
var phaseOrder = []string{"active", "installing", "staged", "downloading", "failed", "rolled-back", rollout.PhaseOther}

func phaseCounts(ph map[string]int) string {
	keys := make([]string, 0, len(ph))
	for k := range ph {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := slices.Index(phaseOrder, keys[i]), slices.Index(phaseOrder, keys[j])
		if a < 0 {
			a = len(phaseOrder)
		}
		if b < 0 {
			b = len(phaseOrder)
		}
		return a < b || (a == b && keys[i] < keys[j])
	})
	var parts []string
	for _, k := range keys {
		switch {
		case ph[k] == 0:
		case k == rollout.PhaseOther:
			parts = append(parts, fmt.Sprintf("%d on another release", ph[k]))
		default:
			parts = append(parts, fmt.Sprintf("%d %s", ph[k], k))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
