package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/swarmdeploy/swarm/bench"
)

// Text renders a result for a terminal: an aligned two-column summary (what,
// value) with units. Cost lines (gossip, CPU, memory) appear only when the
// run measured them.
func Text(w io.Writer, r bench.Result) error {
	p := r.Params
	var lines [][2]string
	add := func(what, value string) { lines = append(lines, [2]string{what, value}) }

	add("run", kindLabel(r.Kind))
	add("nodes", strconv.Itoa(nodes(r)))
	add("bundle size (F)", bytesText(size(r)))
	if p.PieceLength > 0 {
		add("piece length", bytesText(p.PieceLength))
	}
	add("node up / down", rateText(p.NodeUp)+" / "+rateText(p.NodeDown))
	add("origin up", rateText(p.OriginUp))
	if p.MaxPeers > 0 || p.MaxConns > 0 {
		add("max peers / conns", limitText(p.MaxPeers)+" / "+limitText(p.MaxConns))
	}

	add("completion (last node)", secondsText(r.CompletionS))
	add("completion p50 / p90", secondsText(r.CompletionP50S)+" / "+secondsText(r.CompletionP90S))
	add("T* (lower bound)", secondsText(r.TStarS))
	ratio := r.CompletionRatio
	if ratio == 0 && r.TStarS > 0 {
		ratio = r.CompletionS / r.TStarS
	}
	add("completion ÷ T*", timesText(ratio))
	if r.Kind == bench.KindCentral {
		add("central bound (N·F ÷ u_s)", secondsText(bench.CentralTime(p)))
	}

	add("origin egress", fmt.Sprintf("%s (%s F)", bytesText(r.OriginBytes), timesText(r.OriginEgressRatio)))
	if r.Kind != bench.KindCentral || r.PeerBytes > 0 {
		add("from peers", fmt.Sprintf("%s (%s of useful bytes)", bytesText(r.PeerBytes), percent(r.PeerShare)))
		add("duplicate bytes", bytesText(r.DuplicateBytes))
	}

	if r.Gossip99S > 0 || r.Gossip100S > 0 {
		add("gossip 99% / 100%", secondsText(r.Gossip99S)+" / "+secondsText(r.Gossip100S))
	}
	if r.CPUSeconds > 0 {
		add("CPU", secondsText(r.CPUSeconds))
	}
	if r.PeakRSSMiB > 0 {
		add("peak RSS", strconv.FormatFloat(r.PeakRSSMiB, 'f', 1, 64)+" MiB")
	}
	if r.CPUSPerGiB > 0 {
		add("CPU per GiB delivered", sig(r.CPUSPerGiB)+" s")
	}
	if r.RSSPerAgentBytes > 0 {
		add("RSS per agent", bytesText(r.RSSPerAgentBytes)+" (process peak less before the nodes started, ÷ N; an attribution)")
	}
	if r.HostCPUFrac > 0 {
		add("host CPU", fmt.Sprintf("%s of the cores busy, host-bound: %s", percent(r.HostCPUFrac), hostBound(r)))
	}
	if r.Goroutines > 0 {
		add("goroutines", strconv.Itoa(r.Goroutines))
	}
	add("wall", secondsText(r.WallS))
	if r.Notes != "" {
		add("notes", r.Notes)
	}

	if err := writeAligned(w, lines); err != nil {
		return fmt.Errorf("write %s N=%d summary: %w", r.Kind, nodes(r), err)
	}
	return nil
}

// writeAligned writes label-value pairs as two columns, the values lined
// up after the longest label.
func writeAligned(w io.Writer, lines [][2]string) error {
	width := 0
	for _, l := range lines {
		width = max(width, utf8.RuneCountInString(l[0]))
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l[0])
		b.WriteString(strings.Repeat(" ", width-utf8.RuneCountInString(l[0])+2))
		b.WriteString(l[1])
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sig formats v with three significant digits and no exponent.
func sig(v float64) string {
	return strconv.FormatFloat(v, 'f', decimals(v), 64)
}

func secondsText(s float64) string {
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return none
	}
	return sig(s) + " s"
}

func timesText(q float64) string {
	if q == 0 || math.IsNaN(q) || math.IsInf(q, 0) {
		return none
	}
	return strconv.FormatFloat(q, 'f', 2, 64) + "×"
}

// bytesText formats a byte count in binary units, MiB for the sizes
// benchmarks usually move; whole numbers of a unit go without decimals.
func bytesText(n int64) string {
	const kib = 1 << 10
	unit := func(div float64, d int, name string) string {
		v := float64(n) / div
		if v == math.Trunc(v) {
			d = 0
		}
		return strconv.FormatFloat(v, 'f', d, 64) + " " + name
	}
	switch a := math.Abs(float64(n)); {
	case a < kib:
		return strconv.FormatInt(n, 10) + " B"
	case a < kib*kib:
		return unit(kib, 1, "KiB")
	case a < kib*kib*kib:
		return unit(kib*kib, 1, "MiB")
	default:
		return unit(kib*kib*kib, 2, "GiB")
	}
}

// rateText formats bytes per second; zero is no cap.
func rateText(bps int64) string {
	if bps == 0 {
		return "no cap"
	}
	return bytesText(bps) + "/s"
}

func limitText(n int) string {
	if n == 0 {
		return "no limit"
	}
	return strconv.Itoa(n)
}
