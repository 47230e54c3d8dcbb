package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/seeder"
)

type statusOptions struct {
	api      apiFlags
	json     bool
	wait     bool
	watch    bool
	minNodes int
	timeout  time.Duration
	interval time.Duration
}

func newStatusCmd(ios streams) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status --seeder URL",
		Short: "Show every node's release, phase and progress",
		Long: `status asks the seeder for the cluster as gossip shows it: the desired
release of every app and, for each node, the release it works on, its phase
(downloading, staged, installing, active, failed, rolled-back) and progress.
With --json it prints one object for scripts: "nodes" lists each node's
"name" and "apps" (each with "app", "version", "release_id", "phase" of the
release it works towards, "running_version" and "running_release_id" of
the release it runs, "healthy" for the running release, and "refused" when
it refused the app's desired state); each of "desired" says with "refused"
and "error" how many nodes refused it and why.
With --wait it refreshes until every node is active on every desired release,
and exits 1 at once when a rollout stalls (budget, deadline, or every node it
waits on refusing its desired state), since that waits for an operator.`,
		Example: `  swarm status --seeder http://127.0.0.1:7700
  swarm status --seeder http://127.0.0.1:7700 --json | jq '.nodes[].apps[].phase'
  swarm status --seeder http://127.0.0.1:7700 --wait --timeout 10m`,
		RunE: func(cmd *cobra.Command, _ []string) error { return statusRun(cmd.Context(), ios, o) },
	}
	f := cmd.Flags()
	o.api.add(f)
	f.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	f.BoolVar(&o.wait, "wait", false, "refresh until every node is active on every desired release; exit 1 if a rollout stalls")
	f.BoolVar(&o.watch, "watch", false, "live view of every app's rollout (step, nodes per phase, progress) until Ctrl-C")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "with --wait: give up after this long")
	f.IntVar(&o.minNodes, "min-nodes", 1, "with --wait: also wait until at least this many nodes report")
	f.DurationVar(&o.interval, "interval", time.Second, "with --wait: time between refreshes")
	return cmd
}

func statusRun(ctx context.Context, ios streams, o *statusOptions) error {
	client, err := o.api.client("status")
	if err != nil {
		return err
	}
	if o.watch && (o.json || o.wait) {
		return usageErrorf("status: --watch is a live view for people; it does not combine with --json or --wait")
	}
	if err := checkAPI(ctx, "status", client); err != nil {
		return err
	}
	if o.watch {
		return watchRun(ctx, ios, client, o.interval)
	}
	if o.wait {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	prev := 0       // lines drawn by the last refresh, to redraw in place on a terminal
	lastTable := "" // off a terminal, a table is printed only when it changed
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := client.Status(qctx)
		cancel()
		if err != nil {
			return fmt.Errorf("status: %w; check --seeder and that 'swarm seeder' is running", err)
		}
		done := converged(st, o.minNodes)
		stuck := stalled(st)
		if !o.wait || done || stuck != nil {
			switch {
			case o.json:
				enc := json.NewEncoder(ios.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			case prev > 0: // replace the last refresh on the terminal
				var b strings.Builder
				printStatus(&b, st)
				redraw(ios.Out, b.String(), prev)
			default:
				printStatus(ios.Out, st)
			}
			if o.wait && !done && stuck != nil {
				return fmt.Errorf("status: rollout of %s in %s stalled, so it will not converge: %s; fix that, then 'swarm rollout resume %s --env %s'",
					stuck.App, stuck.Env, stuck.Reason, stuck.App, stuck.Env)
			}
			return nil
		}
		if !o.json {
			var b strings.Builder
			printStatus(&b, st)
			if b.String() != lastTable {
				prev = redraw(ios.Out, b.String(), prev)
				lastTable = b.String()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("status: not every node is active on the desired release after %s; see the table above and the agents' logs", o.timeout)
		case <-time.After(o.interval):
		}
	}
}

// converged reports whether every node runs every desired release (and
// there is at least one node and one desired release).
func converged(st seeder.Status, minNodes int) bool {
	if len(st.Nodes) < max(minNodes, 1) || len(st.Desired) == 0 {
		return false
	}
	for _, d := range st.Desired {
		if d.Active != d.Nodes {
			return false
		}
	}
	return true
}

// stalled is a rollout that waits on an operator (stalled on its budget,
// its deadline or refusals), or nil: status --wait cannot end well while
// one does.
func stalled(st seeder.Status) *rollout.Status {
	for i, r := range st.Rollouts {
		if r.State == release.RolloutStalled {
			return &st.Rollouts[i]
		}
	}
	return nil
}

func printStatus(w io.Writer, st seeder.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tDESIRED\tRELEASE\tSEQ\tWAVE\tACTIVE")
	for _, d := range st.Desired {
		wave := fmt.Sprintf("%.0f%%", d.Admitted*100)
		if d.Paused {
			wave += " paused"
		}
		active := fmt.Sprintf("%d/%d", d.Active, d.Nodes)
		if n := refusedNodes(d); n > 0 {
			active += fmt.Sprintf(" (%d refused)", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.App, d.Version, short(string(d.ReleaseID)), d.Sequence, wave, active)
	}
	if len(st.Desired) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t\t\t")
	}
	tw.Flush()
	printRefusals(w, st)
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAPP\tVERSION\tRELEASE\tPHASE\tPROGRESS\tRATE\tHEALTH\tERROR")
	for _, n := range st.Nodes {
		if len(n.Apps) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tidle\t-\t-\t-\t\n", n.Name)
		}
		for _, a := range n.Apps {
			// Health is the running release's (an active node runs its
			// release also when an older seeder does not say so).
			health := "-"
			if a.RunningReleaseID != "" || a.Phase == "active" {
				health = okBad(a.Healthy)
			}
			if a.Stale {
				health += ", stale"
			}
			rate := "-"
			if a.Phase == "downloading" {
				rate = humanBytes(a.RateBps) + "/s"
			}
			errCell := a.Error
			if a.Refused != "" {
				errCell = strings.TrimSuffix("refused: "+a.Refused+"; "+a.Error, "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, a.App, orDash(a.Version), orDash(short(string(a.ReleaseID))),
				phaseCell(a), progressCell(a.Progress), rate, health, errCell)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d nodes, %d seeder(s)\n", len(st.Nodes), len(st.Seeders))
}

// phaseCell is an app's phase and, when the node runs another release
// than the one the phase is about, what it runs: "rolled-back → running
// 1.0.0 (healthy)".
func phaseCell(a seeder.AppStatus) string {
	phase := orDash(a.Phase)
	switch {
	case a.RunningReleaseID != "" && a.RunningReleaseID != a.ReleaseID:
		return fmt.Sprintf("%s → running %s (%s)", phase, a.RunningVersion, map[bool]string{true: "healthy", false: "unhealthy"}[a.Healthy])
	case a.RunningReleaseID == "" && (a.Phase == "failed" || a.Phase == "rolled-back"):
		return phase + " → running nothing"
	}
	return phase
}

func okBad(ok bool) string { return map[bool]string{true: "ok", false: "bad"}[ok] }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// refusedNodes is how many nodes refused d.
func refusedNodes(d seeder.DesiredStatus) int {
	n := 0
	for _, r := range d.Refused {
		n += r.Nodes
	}
	return n
}

// printRefusals prints one error line per desired state that nodes
// refuse: why it reaches them not.
func printRefusals(w io.Writer, st seeder.Status) {
	for _, d := range st.Desired {
		if d.Error != "" {
			fmt.Fprintf(w, "error: %s in %s: %s\n", d.App, d.Env, d.Error)
		}
	}
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// progressCell draws a ten-cell bar and a percentage.
func progressCell(p float64) string {
	if p < 0 {
		p = 0
	}
	if p > 1 {
		p = 1
	}
	n := int(p*10 + 0.5)
	return fmt.Sprintf("%s%s %3.0f%%", strings.Repeat("█", n), strings.Repeat("░", 10-n), p*100)
}

// redraw prints the status table; on a terminal it first erases the
// previous one (prevLines lines) so a --wait refresh updates in place.
// It returns how many lines it drew.
func redraw(w io.Writer, table string, prevLines int) int {
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		if prevLines > 0 {
			fmt.Fprintf(w, "\033[%dA\033[J", prevLines)
		}
		fmt.Fprint(w, table)
		return strings.Count(table, "\n")
	}
	fmt.Fprintln(w, table)
	return 0
}

// watchRun redraws every app's rollout each interval until ctx ends
// (Ctrl-C), which is a normal exit.
func watchRun(ctx context.Context, ios streams, client *seeder.Client, interval time.Duration) error {
	prev := 0
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := client.Status(qctx)
		cancel()
		var b strings.Builder
		fmt.Fprintf(&b, "swarm status --watch   %s   (Ctrl-C to quit)\n\n", time.Now().Format("15:04:05"))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(&b, "seeder unreachable: %v\n", err)
		} else {
			printRollouts(&b, st)
		}
		prev = redraw(ios.Out, b.String(), prev)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// printRollouts draws one line per rollout: its wave and a bar of the
// environment's nodes active on the target.
func printRollouts(w io.Writer, st seeder.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tENV\tVERSION\tSTATE\tSTEP\tADMITTED\tACTIVE\tFAILED\tNODES BY PHASE")
	for _, r := range st.Rollouts {
		active := r.Phases["active"]
		p := 0.0
		if r.Nodes > 0 {
			p = float64(active) / float64(r.Nodes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%d/%d\t%s\n", r.App, r.Env, r.Version, r.State,
			r.Step, r.Steps, r.Admitted, r.Nodes, progressCell(p), r.Failures, r.Budget, phaseCounts(r.Phases))
	}
	if len(st.Rollouts) == 0 {
		fmt.Fprintln(tw, "(no rollout yet: publish a release)")
	}
	tw.Flush()
	for _, r := range st.Rollouts {
		if r.Reason != "" {
			fmt.Fprintf(w, "  %s/%s: %s\n", r.App, r.Env, r.Reason)
		}
		if r.HostFaults > 0 {
			whose := "their hosts"
			if r.HostFaults == 1 {
				whose = "its host"
			}
			fmt.Fprintf(w, "error: %s in %s: %s held back by %s, not counted as failed (e.g. %s); free room there and they retry on their own\n",
				r.App, r.Env, plural(r.HostFaults, "node"), whose, r.HostFault)
		}
	}
	printRefusals(w, st)
	fmt.Fprintf(w, "\n%d nodes, %d seeder(s)\n", len(st.Nodes), len(st.Seeders))
}

// plural is n and noun, with an s unless n is 1: "1 node", "3 nodes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
