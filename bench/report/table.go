package report

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/swarmdeploy/swarm/bench"
)

// none stands in a table cell for a value that was not measured or has no
// meaning for that row.
const none = "—"

// tolerance is how far sim ÷ real may stray from 1 before Validation flags
// it: the simulator is trusted within ±25%.
const tolerance = 0.25

// Table renders a Markdown table comparing swarm with a central server by N:
// one row per swarm result (real or sim), next to the first central result
// with the same N when there is one, and a row for each N that only a
// central run measured. A "swarm" column naming the kind appears when real
// and sim results are mixed.
func Table(rs []bench.Result) string {
	central := firstByN(rs, bench.KindCentral)
	type row struct {
		n        int
		swarm    *bench.Result
		central  *bench.Result
		kindRank int
	}
	var rows []row
	kinds := make(map[bench.Kind]bool)
	covered := make(map[int]bool)
	for _, r := range rs {
		if r.Kind == bench.KindCentral {
			continue
		}
		kinds[r.Kind] = true
		n := nodes(r)
		covered[n] = true
		rw := row{n: n, swarm: &r, kindRank: kindOrder(r.Kind)}
		if c, ok := central[n]; ok {
			rw.central = &c
		}
		rows = append(rows, rw)
	}
	for n, c := range central {
		if !covered[n] {
			rows = append(rows, row{n: n, central: &c, kindRank: kindOrder(c.Kind)})
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.kindRank, b.kindRank))
	})

	// Seconds columns share a precision so their decimal points line up.
	var swarmS, tStarS, centralS []float64
	for _, rw := range rows {
		if rw.swarm != nil {
			swarmS = append(swarmS, rw.swarm.CompletionS)
			tStarS = append(tStarS, rw.swarm.TStarS)
		} else {
			tStarS = append(tStarS, rw.central.TStarS)
		}
		if rw.central != nil {
			centralS = append(centralS, rw.central.CompletionS)
		}
	}
	swarmD, tStarD, centralD := decimals(swarmS...), decimals(tStarS...), decimals(centralS...)

	mixed := len(kinds) > 1
	t := &mdTable{}
	t.col("N", true)
	if mixed {
		t.col("swarm", false)
	}
	t.col("swarm completion s", true)
	t.col("T* s", true)
	t.col("completion ÷ T*", true)
	t.col("swarm origin ÷ F", true)
	t.col("peer share", true)
	t.col("swarm CPU-s/GiB", true)
	t.col("swarm RSS/agent MiB", true)
	t.col("swarm host-bound", false)
	t.col("central completion s", true)
	t.col("central origin ÷ F", true)
	t.col("central host-bound", false)
	t.col("speed-up", true)

	for _, rw := range rows {
		cells := []string{strconv.Itoa(rw.n)}
		if mixed {
			k := none
			if rw.swarm != nil {
				k = string(rw.swarm.Kind)
			}
			cells = append(cells, k)
		}
		if s := rw.swarm; s != nil {
			ratio := s.CompletionRatio
			if ratio == 0 && s.TStarS > 0 {
				ratio = s.CompletionS / s.TStarS
			}
			cells = append(cells,
				fixed(s.CompletionS, swarmD),
				fixed(s.TStarS, tStarD),
				fixed(ratio, 2),
				fixed(s.OriginEgressRatio, 2),
				percent(s.PeerShare),
				fixed(s.CPUSPerGiB, 2),
				mibCell(s.RSSPerAgentBytes),
				hostBound(*s),
			)
		} else {
			cells = append(cells, none, fixed(rw.central.TStarS, tStarD), none, none, none, none, none, none)
		}
		if c := rw.central; c != nil {
			speedUp := none
			if rw.swarm != nil && rw.swarm.CompletionS > 0 && c.CompletionS > 0 {
				speedUp = fixed(c.CompletionS/rw.swarm.CompletionS, 2) + "×"
			}
			cells = append(cells, fixed(c.CompletionS, centralD), fixed(c.OriginEgressRatio, 2), hostBound(*c), speedUp)
		} else {
			cells = append(cells, none, none, none, none)
		}
		t.row(cells...)
	}
	return t.String()
}

// Validation renders the sim-vs-real table: for each N present in both (the
// first result of each for that N), real and sim download time (to the last
// node holding the bundle; installs are not simulated) and origin ÷ F with
// sim ÷ real for both, and the CPU cores the real run kept busy (near the
// machine's core count the real run was host-bound, which the simulator
// does not model). A ratio outside 1 ± 25% is marked with ⚠ and a
// note under the table says what the mark means.
func Validation(real, sim []bench.Result) string {
	reals, sims := firstByN(real, bench.KindReal), firstByN(sim, bench.KindSim)
	var ns []int
	for n := range reals {
		if _, ok := sims[n]; ok {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)

	var secs []float64
	for _, n := range ns {
		secs = append(secs, downloadS(reals[n]), downloadS(sims[n]))
	}
	d := decimals(secs...)

	t := &mdTable{}
	t.col("N", true)
	t.col("real download s", true)
	t.col("sim download s", true)
	t.col("download sim ÷ real", true)
	t.col("real origin ÷ F", true)
	t.col("sim origin ÷ F", true)
	t.col("origin sim ÷ real", true)
	t.col("real CPU cores", true)
	flagged := false
	for _, n := range ns {
		r, s := reals[n], sims[n]
		cr, crFlag := simRatio(downloadS(s), downloadS(r))
		or, orFlag := simRatio(s.OriginEgressRatio, r.OriginEgressRatio)
		flagged = flagged || crFlag || orFlag
		cores := none
		if r.CPUSeconds > 0 && r.CompletionS > 0 {
			cores = fixed(r.CPUSeconds/r.CompletionS, 2)
		}
		t.row(strconv.Itoa(n),
			fixed(downloadS(r), d), fixed(downloadS(s), d), cr,
			fixed(r.OriginEgressRatio, 2), fixed(s.OriginEgressRatio, 2), or, cores)
	}
	out := t.String()
	if flagged {
		out += "\n⚠ sim ÷ real is outside 1 ± 25%: the simulator does not match the real run there.\n"
	}
	return out
}

// downloadS is when r's last node had the whole bundle: DownloadS, or for
// results saved before that field existed, CompletionS. The simulator does
// not model installs, so validation compares downloads.
func downloadS(r bench.Result) float64 {
	if r.DownloadS > 0 {
		return r.DownloadS
	}
	return r.CompletionS
}

// simRatio formats sim ÷ real and says whether it is outside the tolerance.
// Non-flagged ratios are padded to the width of a flagged one so that the
// numbers line up in the raw Markdown.
func simRatio(sim, real float64) (string, bool) {
	if sim == 0 || real == 0 {
		return none, false
	}
	q := sim / real
	if math.Abs(q-1) > tolerance {
		return fixed(q, 2) + " ⚠", true
	}
	return fixed(q, 2) + "  ", false
}

// GossipRow is one line of the gossip convergence table: seconds from
// publish until 99% and 100% of Nodes accepted the desired state, for the
// real cluster and the simulator, and the cores the settled real cluster
// kept busy before the publish (near the machine's cores, the real timings
// are the host's). Zero means not measured and renders as —.
type GossipRow struct {
	Nodes           int
	Real99, Real100 float64
	Sim99, Sim100   float64
	IdleCores       float64
}

// GossipTable renders the gossip convergence table, one row per GossipRow
// sorted by Nodes.
func GossipTable(rows []GossipRow) string {
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b GossipRow) int { return cmp.Compare(a.Nodes, b.Nodes) })
	var r99, r100, s99, s100 []float64
	for _, r := range rows {
		r99, r100 = append(r99, r.Real99), append(r100, r.Real100)
		s99, s100 = append(s99, r.Sim99), append(s100, r.Sim100)
	}
	d := []int{decimals(r99...), decimals(r100...), decimals(s99...), decimals(s100...)}

	t := &mdTable{}
	t.col("N", true)
	t.col("real 99% s", true)
	t.col("real 100% s", true)
	t.col("sim 99% s", true)
	t.col("sim 100% s", true)
	t.col("cores busy before publish", true)
	for _, r := range rows {
		t.row(strconv.Itoa(r.Nodes),
			fixed(r.Real99, d[0]), fixed(r.Real100, d[1]), fixed(r.Sim99, d[2]), fixed(r.Sim100, d[3]), fixed(r.IdleCores, 2))
	}
	return t.String()
}

// mdTable is a Markdown table padded so that it also reads well as plain
// text: every column as wide as its widest cell.
type mdTable struct {
	heads []string
	right []bool
	rows  [][]string
}

func (t *mdTable) col(head string, right bool) {
	t.heads = append(t.heads, head)
	t.right = append(t.right, right)
}

func (t *mdTable) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *mdTable) String() string {
	widths := make([]int, len(t.heads))
	for i, h := range t.heads {
		widths[i] = max(utf8.RuneCountInString(h), 3)
	}
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			b.WriteString(" ")
			if t.right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	line(t.heads)
	b.WriteString("|")
	for i, w := range widths {
		if t.right[i] {
			b.WriteString(" " + strings.Repeat("-", w-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", w) + " |")
		}
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// decimals returns how many decimals give the smallest non-zero magnitude
// among vs three significant digits (two below 1, three below 0.1), between
// 0 and 3, so that one precision serves a whole column.
func decimals(vs ...float64) int {
	small := math.Inf(1)
	for _, v := range vs {
		if a := math.Abs(v); a > 0 && a < small && !math.IsInf(a, 0) {
			small = a
		}
	}
	if math.IsInf(small, 1) {
		return 1
	}
	d := 2 - int(math.Floor(math.Log10(small)))
	if small >= 0.1 {
		d = min(d, 2) // 0.61, not 0.610
	}
	return min(max(d, 0), 3)
}

// fixed formats v with d decimals, or — for zero (not measured) and for
// values that are not numbers.
func fixed(v float64, d int) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return none
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

// hostBound says whether a run kept the host's cores busier than
// bench.HostBoundFrac ("yes": its timings are the machine's, not the
// protocol's), or — where it was not measured.
func hostBound(r bench.Result) string {
	switch {
	case r.HostCPUFrac == 0:
		return none
	case r.HostBound:
		return "yes"
	}
	return "no"
}

// mibCell formats a byte count in MiB with one decimal, or — for zero.
func mibCell(n int64) string {
	return fixed(float64(n)/(1<<20), 1)
}

// percent formats a fraction as a percentage with one decimal.
func percent(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return none
	}
	return strconv.FormatFloat(100*f, 'f', 1, 64) + "%"
}
