package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/bench/report"
	"github.com/swarmdeploy/swarm/bench/sim"
)

type benchReportOptions struct {
	real, sim, validate, gossip string
	procs                       string
	validateReal                string
	plots, markdown, csv        string
	prefix                      string
	command                     string
}

func newBenchReportCmd(ios streams) *cobra.Command {
	o := &benchReportOptions{}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Tables and plots from saved bench results",
		Long: `report reads results saved with --out (JSON Lines) and prints Markdown
tables: the real sweep beside the central baseline, the simulated sweep, the
simulator validated against real runs with the same parameters, gossip
convergence, and the process-level size table (--procs). With --markdown it
rewrites the matching sections of that file in place (between
<!-- bench:NAME --> markers); with --plots it draws PNGs.`,
		Example: `  swarm bench report --real real.jsonl --sim sim.jsonl --validate validate.jsonl \
    --gossip gossip.jsonl --plots docs/bench --markdown BENCHMARKS.md`,
		RunE: func(*cobra.Command, []string) error { return benchReportRun(ios, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.real, "real", "", "results of 'swarm bench real' (with their central baselines)")
	f.StringVar(&o.sim, "sim", "", "results of the simulated sweep")
	f.StringVar(&o.validate, "validate", "", "results of 'swarm bench sim' run with the same parameters as the real runs of --validate-real (or --real)")
	f.StringVar(&o.validateReal, "validate-real", "", "real results to validate against (default: --real); lets validation use other parameters than the sweep")
	f.StringVar(&o.gossip, "gossip", "", "results of 'swarm bench gossip --json'")
	f.StringVar(&o.procs, "procs", "", "results of 'swarm bench procs' (the size table: section size)")
	f.StringVar(&o.csv, "csv", "", "also write every result as CSV to this file")
	f.StringVar(&o.plots, "plots", "", "write PNG plots into this directory")
	f.StringVar(&o.markdown, "markdown", "", "rewrite the bench sections of this Markdown file")
	f.StringVar(&o.command, "command", "", "the command that produced the results, stamped above each table")
	f.StringVar(&o.prefix, "section-prefix", "", "prefix of the section names in --markdown, e.g. quick- for <!-- bench:quick-real -->")
	return cmd
}

func benchReportRun(ios streams, o *benchReportOptions) error {
	if o.real == "" && o.sim == "" && o.validate == "" && o.gossip == "" && o.procs == "" {
		return usageErrorf("bench report: give at least one of --real, --sim, --validate, --gossip, --procs")
	}
	sections := map[string]string{}
	var all []bench.Result
	if o.real != "" {
		rs, err := readResults(o.real)
		if err != nil {
			return err
		}
		all = append(all, rs...)
		sections["real"] = report.Table(rs)
	}
	if o.sim != "" {
		rs, err := readResults(o.sim)
		if err != nil {
			return err
		}
		all = append(all, rs...)
		sections["sim"] = report.Table(rs)
	}
	if o.validate != "" {
		against := o.validateReal
		if against == "" {
			against = o.real
		}
		if against == "" {
			return usageErrorf("bench report: --validate needs --validate-real or --real to compare with")
		}
		real, err := readResults(against)
		if err != nil {
			return err
		}
		simRuns, err := readResults(o.validate)
		if err != nil {
			return err
		}
		sections["validation"] = report.Validation(onlyKind(real, bench.KindReal), simRuns)
	}
	if o.gossip != "" {
		rows, err := readGossip(o.gossip)
		if err != nil {
			return err
		}
		sections["gossip"] = report.GossipTable(rows)
	}
	if o.procs != "" {
		rs, err := readProcs(o.procs)
		if err != nil {
			return err
		}
		sections["size"] = report.SizeTable(rs)
	}
	for _, name := range []string{"real", "sim", "validation", "gossip", "size"} {
		if s, ok := sections[name]; ok {
			fmt.Fprintf(ios.Out, "## %s\n\n%s\n", name, s)
		}
	}
	if o.markdown != "" {
		stamp := machineStamp(o.command)
		for name, s := range sections {
			s = stamp + "\n\n" + s
			if err := report.UpdateMarkdown(o.markdown, o.prefix+name, s); err != nil {
				return fmt.Errorf("bench report: %w", err)
			}
		}
	}
	if o.csv != "" {
		f, err := os.Create(o.csv)
		if err != nil {
			return fmt.Errorf("bench report: --csv: %w", err)
		}
		err = report.WriteCSV(f, all...)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("bench report: --csv: %w", err)
		}
	}
	if o.plots != "" && len(all) > 0 {
		if err := os.MkdirAll(o.plots, 0o755); err != nil {
			return fmt.Errorf("bench report: --plots: %w", err)
		}
		for name, plot := range map[string]func(string, []bench.Result) error{
			"origin-egress.png": report.PlotOriginEgress,
			"completion.png":    report.PlotCompletion,
			"completion-cdf.png": func(p string, rs []bench.Result) error {
				return report.PlotCDF(p, append(onlyKind(rs, bench.KindReal), onlyKind(rs, bench.KindCentral)...))
			},
		} {
			if err := plot(filepath.Join(o.plots, name), all); err != nil {
				return fmt.Errorf("bench report: plot %s: %w", name, err)
			}
		}
	}
	return nil
}

func readResults(path string) ([]bench.Result, error) { return readSaved(path, report.ReadJSON) }

func readProcs(path string) ([]bench.ProcsResult, error) {
	return readSaved(path, report.ReadProcsJSON)
}

// readSaved reads a file of saved results with read, refusing a file that
// cannot be opened or holds none.
func readSaved[T any](path string, read func(io.Reader) ([]T, error)) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("bench report: %w", err)
	}
	defer f.Close()
	rs, err := read(f)
	if err != nil {
		return nil, fmt.Errorf("bench report: %s: %w", path, err)
	}
	if len(rs) == 0 {
		return nil, usageErrorf("bench report: %s holds no results", path)
	}
	return rs, nil
}

func onlyKind(rs []bench.Result, k bench.Kind) []bench.Result {
	var out []bench.Result
	for _, r := range rs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// readGossip reads gossip-scale results (JSON Lines) and pairs each with
// the simulator's gossip model at the same N.
func readGossip(path string) ([]report.GossipRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("bench report: %w", err)
	}
	defer f.Close()
	var rows []report.GossipRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var g bench.GossipScaleResult
		if err := json.Unmarshal([]byte(line), &g); err != nil {
			return nil, fmt.Errorf("bench report: %s: %w", path, err)
		}
		p99, p100 := sim.GossipSpread(g.Nodes, sim.GossipModel{}, 1)
		rows = append(rows, report.GossipRow{Nodes: g.Nodes, Real99: g.Reach99S, Real100: g.Reach100S, Sim99: p99, Sim100: p100, IdleCores: g.CPUIdleCores})
	}
	return rows, sc.Err()
}

// machineStamp says how, where and when results were produced, for the line
// above each regenerated table.
func machineStamp(command string) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
		}
	}
	s := fmt.Sprintf("_%d cores (%s)%s, %s, %s_", runtime.NumCPU(), model, mem, runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	if command != "" {
		s = fmt.Sprintf("_Command: `%s`_  \n", command) + s
	}
	return s
}
