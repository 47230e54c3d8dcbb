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

	"github.com/swarmdeploy/swarm/bench/faults"
)

type benchFaultsOptions struct {
	scenario   string
	agents     int
	size, rate string
	seed       uint64
	bin        string
	json       bool
	out        string
	timeout    time.Duration
	partition  time.Duration
	seederDown time.Duration
}

func newBenchFaultsCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &benchFaultsOptions{}
	var names []string
	var docs strings.Builder
	for _, sc := range faults.Scenarios() {
		names = append(names, sc.Name)
		fmt.Fprintf(&docs, "  %-14s %s\n", sc.Name, sc.Doc)
	}
	cmd := &cobra.Command{
		Use:   "faults",
		Short: "Inject faults into rollouts of real processes in network namespaces (root)",
		Long: `faults runs the seeder and --nodes agents as separate processes, each in a
network namespace of its own with its own address, joined by veth pairs to
a bridge, every link end capped by tc tbf at --rate. Per scenario it
publishes a random release of --size, injects one fault and waits until
every agent runs the release and the seeder shows each one active. Then
it checks, from the kernel's byte counters and each agent's hook log:

  - every agent runs the release
  - no verified piece fetched twice: each agent's payload received over all
    its lives ÷ the bytes it lacked is at most the run's median agent's
    (1.10 at least) + 0.25, + 2 MiB (frame headers are taken out; the
    torrent client receives some blocks twice anyway: FAULTS.md)
  - no hook run twice: at most one completed run per agent, none at once
  - origin egress (the seeder link's bytes) within 1.2 × the bundle, plus
    what a partition forced

It prints one line per scenario and exits non-zero if any failed; a failed
scenario's logs are kept and named. Needs root and iproute2 (ip, tc).

Scenarios:
` + docs.String(),
		Example: `  swarm bench faults
  swarm bench faults --scenario kill-download,partition --nodes 6 --size 32MiB
  swarm bench faults --json --out faults.jsonl`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchFaultsRun(cmd.Context(), ios, g, o, cmd.Flag("log-level").Changed)
		},
	}
	d := faults.DefaultConfig("")
	f := cmd.Flags()
	f.StringVar(&o.scenario, "scenario", "all", "scenarios to run, comma-separated: all or "+strings.Join(names, ", "))
	f.IntVar(&o.agents, "nodes", d.Agents, "number of agent processes (at least 3)")
	f.StringVar(&o.size, "size", "64MiB", "release payload size")
	f.StringVar(&o.rate, "rate", d.Rate, "tc rate of every link, each way (e.g. 50mbit)")
	f.Uint64Var(&o.seed, "seed", d.Seed, "seed of the payload and of churn's choices")
	f.StringVar(&o.bin, "bin", "", "swarm binary the daemons run (default: this one)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per scenario instead of the table")
	f.StringVar(&o.out, "out", "", "also append the results to this file (JSON Lines)")
	f.DurationVar(&o.timeout, "timeout", d.Timeout, "how long each scenario may take to converge after its fault")
	f.DurationVar(&o.partition, "partition", d.Partition, "how long the partition lasts")
	f.DurationVar(&o.seederDown, "seeder-down", d.SeederDown, "how long the seeder stays dead")
	return cmd
}

func benchFaultsRun(ctx context.Context, ios streams, g *globalOptions, o *benchFaultsOptions, logLevelSet bool) error {
	size, err := parseBytes(o.size)
	if err != nil || size <= 0 {
		return usageErrorf("bench faults: --size %q: give a positive size such as 64MiB", o.size)
	}
	if o.agents < 3 {
		return usageErrorf("bench faults: --nodes %d: need at least 3 agents (a third is partitioned)", o.agents)
	}
	var run []faults.Scenario
	for _, sc := range faults.Scenarios() {
		if o.scenario == "all" || strings.Contains(","+o.scenario+",", ","+sc.Name+",") {
			run = append(run, sc)
		}
	}
	if len(run) == 0 {
		return usageErrorf("bench faults: --scenario %q names no scenario; see swarm bench faults --help", o.scenario)
	}
	if err := faults.Check(); err != nil {
		return fmt.Errorf("bench faults: %w", err)
	}
	bin := o.bin
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("bench faults: find this binary: %w; give --bin", err)
		}
	}
	cfg := faults.DefaultConfig(bin)
	cfg.Agents, cfg.SizeBytes, cfg.Rate, cfg.Seed = o.agents, size, o.rate, o.seed
	cfg.Timeout, cfg.Partition, cfg.SeederDown = o.timeout, o.partition, o.seederDown
	log, err := benchLogger(g, ios, logLevelSet)
	if err != nil {
		return err
	}
	var tw *tabwriter.Writer
	if !o.json {
		tw = tabwriter.NewWriter(ios.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
		faultsHeader(tw)
	}
	failed := 0
	for _, sc := range run {
		fmt.Fprintf(ios.Err, "faults: %s: running (%s)\n", sc.Name, sc.Doc)
		r, err := faults.Run(ctx, cfg, sc, log)
		if err != nil {
			return fmt.Errorf("bench faults: %s: %w", sc.Name, err)
		}
		if !r.Pass {
			failed++
		}
		if o.out != "" {
			if err := appendJSONLine(o.out, r); err != nil {
				return fmt.Errorf("bench faults: --out: %w", err)
			}
		}
		if o.json {
			if err := json.NewEncoder(ios.Out).Encode(r); err != nil {
				return err
			}
			continue
		}
		faultsLine(tw, r)
		tw.Flush()
		faultsDetail(ios.Err, r)
		if ctx.Err() != nil {
			return fmt.Errorf("bench faults: %w", ctx.Err())
		}
	}
	if failed > 0 {
		return fmt.Errorf("bench faults: %d of %d scenarios failed", failed, len(run))
	}
	return nil
}

// faultsHeader writes the table's header.
func faultsHeader(w io.Writer) {
	fmt.Fprintln(w, "scenario\tnodes\tF MiB\tconverge s\torigin/F\tbound\tworst rx/missing\trx bound\thooks ok/cut\tresult\t")
}

// faultsLine writes one scenario's row.
func faultsLine(w io.Writer, r faults.Result) {
	conv := "never"
	if r.ConvergeS > 0 {
		conv = fmt.Sprintf("%.1f", r.ConvergeS)
	}
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s\t%d\t%.0f\t%s\t%.2f\t%.2f\t%.2f %s\t%.2f\t%d/%d\t%s\t\n", r.Scenario, r.Nodes, float64(r.BundleBytes)/(1<<20),
		conv, r.OriginRatio, r.OriginLimit, r.WorstRX, r.WorstNode, r.RXBound, r.HookRuns, r.HookCut, verdict)
}

// faultsDetail writes what was injected and, for a failure, why.
func faultsDetail(w io.Writer, r faults.Result) {
	if r.Fault != "" {
		fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.Fault)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  %s: FAIL: %s\n", r.Scenario, p)
	}
	if r.Logs != "" {
		fmt.Fprintf(w, "  %s: logs kept in %s\n", r.Scenario, r.Logs)
	}
}
