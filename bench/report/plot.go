package report

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/bench"
)

// ErrNoData is returned by the Plot functions when the results hold nothing
// that the plot can show.
var ErrNoData = errors.New("no data to plot")

// Every plot is 8×5 inches at vgimg.DefaultDPI (96): 768×480 pixels.
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 5 * vg.Inch
	plotDPI    = vgimg.DefaultDPI
)

var (
	sans     = font.Font{Typeface: "Liberation", Variant: "Sans"}
	sansBold = font.Font{Typeface: "Liberation", Variant: "Sans", Weight: xfont.WeightBold}

	// Okabe–Ito colours: distinguishable with the common colour-vision
	// deficiencies and in greyscale print.
	blue       = color.RGBA{0x00, 0x72, 0xb2, 0xff}
	vermillion = color.RGBA{0xd5, 0x5e, 0x00, 0xff}
	green      = color.RGBA{0x00, 0x9e, 0x73, 0xff}
	purple     = color.RGBA{0xcc, 0x79, 0xa7, 0xff}
	orange     = color.RGBA{0xe6, 0x9f, 0x00, 0xff}
	sky        = color.RGBA{0x56, 0xb4, 0xe9, 0xff}
	grey       = color.RGBA{0x55, 0x55, 0x55, 0xff}

	// palette is the colour order of plots with one line per result.
	palette = []color.Color{blue, vermillion, green, purple, orange, sky, grey}
)

// kindStyle is how a kind is drawn on the plots against N.
type kindStyle struct {
	color  color.Color
	dashes []vg.Length
	glyph  draw.GlyphDrawer
}

func styleOf(k bench.Kind) kindStyle {
	switch k {
	case bench.KindReal:
		return kindStyle{blue, nil, draw.CircleGlyph{}}
	case bench.KindSim:
		return kindStyle{green, []vg.Length{vg.Points(5), vg.Points(3)}, draw.TriangleGlyph{}}
	case bench.KindCentral:
		return kindStyle{vermillion, nil, draw.SquareGlyph{}}
	}
	return kindStyle{grey, []vg.Length{vg.Points(2), vg.Points(2)}, draw.CrossGlyph{}}
}

// cdfDashes tells kinds apart on the CDF plot, where colour tells N apart.
func cdfDashes(k bench.Kind) []vg.Length {
	switch k {
	case bench.KindReal:
		return nil
	case bench.KindSim:
		return []vg.Length{vg.Points(6), vg.Points(3)}
	case bench.KindCentral:
		return []vg.Length{vg.Points(1.5), vg.Points(2.5)}
	}
	return []vg.Length{vg.Points(6), vg.Points(2), vg.Points(1.5), vg.Points(2)}
}

// PlotOriginEgress writes a PNG of origin egress ÷ F against N, one line per
// kind (swarm real, swarm sim, central), so the reader sees the origin's
// load stay flat for swarm and grow with N for a central server. The N axis
// goes logarithmic when N spans more than two decades, the other axis when
// its values span more than one.
func PlotOriginEgress(path string, rs []bench.Result) error {
	series := byKind(rs, func(r bench.Result) float64 { return r.OriginEgressRatio })
	if len(series) == 0 {
		return fmt.Errorf("plot origin egress %s: %w", path, ErrNoData)
	}
	ch := newChart("Origin egress vs cluster size", paramsLine(rs),
		"nodes (N)", "origin egress ÷ F (× bundle size)")
	xs, ys := axisValues(series)
	ch.setAxes(xs, ys)
	for _, s := range series {
		if err := ch.addKind(s); err != nil {
			return fmt.Errorf("plot origin egress %s: %w", path, err)
		}
	}
	if err := ch.save(path); err != nil {
		return fmt.Errorf("plot origin egress: %w", err)
	}
	return nil
}

// PlotCompletion writes a PNG of completion time (last node) against N, one
// line per kind, with the Kumar–Ross bound T* as a dashed line: how far each
// distribution is from the best any peer-to-peer scheme could do. The N axis
// goes logarithmic when N spans more than two decades, the time axis when
// the times span more than one.
func PlotCompletion(path string, rs []bench.Result) error {
	series := byKind(rs, func(r bench.Result) float64 { return r.CompletionS })
	if len(series) == 0 {
		return fmt.Errorf("plot completion %s: %w", path, ErrNoData)
	}
	tStar := tStarSeries(rs)
	ch := newChart("Completion time vs cluster size", paramsLine(rs),
		"nodes (N)", "completion time of the last node (s)")
	xs, ys := axisValues(series)
	for _, p := range tStar {
		xs, ys = append(xs, p.X), append(ys, p.Y)
	}
	ch.setAxes(xs, ys)
	for _, s := range series {
		if err := ch.addKind(s); err != nil {
			return fmt.Errorf("plot completion %s: %w", path, err)
		}
	}
	if len(tStar) > 0 {
		l, err := plotter.NewLine(tStar)
		if err != nil {
			return fmt.Errorf("plot completion %s: T*: %w", path, err)
		}
		l.Color = color.Black
		l.Width = vg.Points(1.2)
		l.Dashes = []vg.Length{vg.Points(7), vg.Points(4)}
		ch.p.Add(l)
		ch.addLegend("T* (Kumar–Ross bound)", l)
	}
	if err := ch.save(path); err != nil {
		return fmt.Errorf("plot completion: %w", err)
	}
	return nil
}

// PlotCDF writes a PNG of the completion CDF: the fraction of nodes done
// against seconds since publish, one line per result that kept per-node
// completion times, labelled "real N=100". Colour follows N and the dash
// pattern follows the kind (real solid, sim dashed, central dotted), so runs
// of the same N sit side by side. The time axis goes logarithmic when the
// slowest run took more than ten times as long as the fastest, so that a
// central run does not squeeze the swarm runs against the left edge.
func PlotCDF(path string, rs []bench.Result) error {
	var runs []bench.Result
	for _, r := range rs {
		if len(positive(r.Completions)) > 0 {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return fmt.Errorf("plot completion CDF %s: %w (no result has per-node completion times)", path, ErrNoData)
	}
	slices.SortStableFunc(runs, func(a, b bench.Result) int {
		return cmp.Or(cmp.Compare(nodes(a), nodes(b)), cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)))
	})
	var ns []int
	first, lastMin, lastMax := math.Inf(1), math.Inf(1), 0.0
	for _, r := range runs {
		if len(ns) == 0 || ns[len(ns)-1] != nodes(r) {
			ns = append(ns, nodes(r))
		}
		pos := positive(r.Completions)
		first = min(first, slices.Min(pos))
		lastMin, lastMax = min(lastMin, slices.Max(pos)), max(lastMax, slices.Max(pos))
	}

	ch := newChart("Completion CDF", paramsLine(rs), "time since publish (s)", "fraction of nodes done")
	logX := lastMax > 10*lastMin
	if logX {
		ch.p.X.Scale, ch.p.X.Tick.Marker = plot.LogScale{}, logTicks{}
		ch.p.X.Min, ch.p.X.Max = first/1.15, lastMax*1.15
	} else {
		ch.p.X.Min, ch.p.X.Max = 0, lastMax*1.05
	}
	ch.p.Y.Min, ch.p.Y.Max = 0, 1
	ch.p.Y.Tick.Marker = plot.ConstantTicks{
		{Value: 0, Label: "0"}, {Value: 0.25, Label: "0.25"}, {Value: 0.5, Label: "0.5"},
		{Value: 0.75, Label: "0.75"}, {Value: 1, Label: "1"},
	}
	for _, r := range runs {
		cs := positive(r.Completions)
		slices.Sort(cs)
		pts := make(plotter.XYs, 0, len(cs)+2)
		if logX {
			pts = append(pts, plotter.XY{X: cs[0], Y: 0})
		} else {
			pts = append(pts, plotter.XY{X: 0, Y: 0})
		}
		for i, c := range cs {
			pts = append(pts, plotter.XY{X: c, Y: float64(i+1) / float64(len(cs))})
		}
		pts = append(pts, plotter.XY{X: ch.p.X.Max, Y: 1})
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot completion CDF %s: %s N=%d: %w", path, r.Kind, nodes(r), err)
		}
		l.StepStyle = plotter.PostStep
		l.Color = palette[slices.Index(ns, nodes(r))%len(palette)]
		l.Width = vg.Points(1.6)
		if r.Kind == bench.KindCentral {
			l.Width = vg.Points(2) // dotted lines need the weight to be seen
		}
		l.Dashes = cdfDashes(r.Kind)
		ch.p.Add(l)
		ch.addLegend(fmt.Sprintf("%s N=%d", r.Kind, nodes(r)), l)
	}
	if err := ch.save(path); err != nil {
		return fmt.Errorf("plot completion CDF: %w", err)
	}
	return nil
}

// positive keeps the values a time axis can show: above zero and finite.
func positive(vs []float64) []float64 {
	var out []float64
	for _, v := range vs {
		if v > 0 && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

// kindSeries is one kind's points against N.
type kindSeries struct {
	kind bench.Kind
	pts  plotter.XYs
}

// byKind collects (N, y) per kind, the first result per kind and N, sorted
// by N, leaving out results where y is zero (not measured).
func byKind(rs []bench.Result, y func(bench.Result) float64) []kindSeries {
	var kinds []bench.Kind
	for _, r := range rs {
		if !slices.Contains(kinds, r.Kind) {
			kinds = append(kinds, r.Kind)
		}
	}
	slices.SortStableFunc(kinds, func(a, b bench.Kind) int { return cmp.Compare(kindOrder(a), kindOrder(b)) })
	var out []kindSeries
	for _, k := range kinds {
		var pts plotter.XYs
		for n, r := range firstByN(rs, k) {
			if v := y(r); v > 0 && n > 0 && !math.IsInf(v, 0) {
				pts = append(pts, plotter.XY{X: float64(n), Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortFunc(pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		out = append(out, kindSeries{k, pts})
	}
	return out
}

// tStarSeries is T* against N, from the first result with each N that has
// a bound.
func tStarSeries(rs []bench.Result) plotter.XYs {
	seen := make(map[int]bool)
	var pts plotter.XYs
	for _, r := range rs {
		n := nodes(r)
		if seen[n] || r.TStarS <= 0 || n <= 0 {
			continue
		}
		seen[n] = true
		pts = append(pts, plotter.XY{X: float64(n), Y: r.TStarS})
	}
	slices.SortFunc(pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
	return pts
}

func axisValues(ss []kindSeries) (xs, ys []float64) {
	for _, s := range ss {
		for _, p := range s.pts {
			xs, ys = append(xs, p.X), append(ys, p.Y)
		}
	}
	return xs, ys
}

// paramsLine describes the parameters all results share, for a subtitle;
// empty when they differ.
func paramsLine(rs []bench.Result) string {
	if len(rs) == 0 {
		return ""
	}
	p0 := rs[0].Params
	for _, r := range rs[1:] {
		p := r.Params
		if size(r) != size(rs[0]) || p.NodeUp != p0.NodeUp || p.NodeDown != p0.NodeDown || p.OriginUp != p0.OriginUp {
			return ""
		}
	}
	parts := []string{"F = " + bytesText(size(rs[0]))}
	if p0.NodeUp == p0.NodeDown {
		parts = append(parts, "node up/down "+rateText(p0.NodeUp))
	} else {
		parts = append(parts, "node up "+rateText(p0.NodeUp), "node down "+rateText(p0.NodeDown))
	}
	parts = append(parts, "origin up "+rateText(p0.OriginUp))
	return strings.Join(parts, " · ")
}

// chart is a plot with its legend kept outside the data area, to the right,
// so that no legend ever hides a line. It draws the axis labels itself:
// gonum/plot places them, and pads for them, at the data midpoint, which
// on a log axis is far from the middle and shrinks the data area.
type chart struct {
	p              *plot.Plot
	legend         plot.Legend
	entries        int
	subtitle       string
	xLabel, yLabel string
}

func newChart(title, subtitle, xLabel, yLabel string) *chart {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sansBold, 15)
	p.Title.Padding = vg.Points(8)
	if subtitle != "" {
		p.Title.Padding = vg.Points(24)
	}
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Tick.Label.Font = font.From(sans, 10.5)
		a.Tick.Length = vg.Points(5)
	}
	p.X.Tick.Marker, p.Y.Tick.Marker = linearTicks{n: 8}, linearTicks{n: 6}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 0xe4}
	grid.Horizontal.Color = color.Gray{Y: 0xe4}
	grid.Vertical.Width, grid.Horizontal.Width = vg.Points(0.6), vg.Points(0.6)
	p.Add(grid)

	l := plot.NewLegend()
	l.Top, l.Left = true, true
	l.Padding = vg.Points(4)
	l.ThumbnailWidth = vg.Points(26)
	return &chart{p: p, legend: l, subtitle: subtitle, xLabel: xLabel, yLabel: yLabel}
}

// setAxes chooses linear or log scales from the values to be plotted (log N
// beyond two decades, log y beyond one) and puts tick labels at the
// measured N when they do not crowd each other.
func (c *chart) setAxes(xs, ys []float64) {
	logX, logY := spans(xs, 100), spans(ys, 10)
	ns := slices.Compact(slices.Sorted(slices.Values(xs)))
	if logX {
		c.p.X.Scale = plot.LogScale{}
	}
	c.p.X.Tick.Marker = nTicks{ns: ns, log: logX}
	if logY {
		c.p.Y.Scale, c.p.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		c.p.Y.Min, c.p.Y.Max = slices.Min(ys)/1.25, slices.Max(ys)*1.25
	} else {
		c.p.Y.Min, c.p.Y.Max = 0, slices.Max(ys)*1.08 // headroom over the top point
	}
}

func (c *chart) addKind(s kindSeries) error {
	l, sc, err := plotter.NewLinePoints(s.pts)
	if err != nil {
		return fmt.Errorf("%s: %w", s.kind, err)
	}
	st := styleOf(s.kind)
	l.Color, l.Width, l.Dashes = st.color, vg.Points(1.8), st.dashes
	sc.Color, sc.Shape, sc.Radius = st.color, st.glyph, vg.Points(3.5)
	c.p.Add(l, sc)
	c.addLegend(kindLabel(s.kind), l, sc)
	return nil
}

func (c *chart) addLegend(label string, thumbs ...plot.Thumbnailer) {
	c.legend.Add(label, thumbs...)
	c.entries++
}

// save draws the plot with its legend in a column on the right and writes
// it as a PNG, replacing path atomically so that a failed run never leaves a
// truncated image.
func (c *chart) save(path string) error {
	canvas := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))
	dc := draw.Crop(draw.New(canvas), vg.Points(10), -vg.Points(14), vg.Points(8), -vg.Points(10))

	// Smaller legend text when there are many lines, so the column fits.
	size := vg.Length(11)
	switch {
	case c.entries > 20:
		size = 8
	case c.entries > 14:
		size = 9.5
	}
	c.legend.TextStyle.Font = font.From(sans, size)
	legendW := c.legend.Rectangle(dc).Size().X
	plotArea := draw.Crop(dc, 0, -(legendW + vg.Points(16)), 0, 0)

	label := c.p.X.Tick.Label
	label.Font = font.From(sans, 12)
	label.XAlign, label.YAlign = draw.XCenter, draw.YBottom
	labelH := label.Height("N")
	descent := label.FontExtents().Descent
	inner := draw.Crop(plotArea, labelH+vg.Points(4), 0, labelH+vg.Points(4), 0)
	c.p.Draw(inner)
	data := c.p.DataCanvas(inner)
	plotArea.FillText(label, vg.Point{X: data.Center().X, Y: plotArea.Min.Y + descent}, c.xLabel)
	yl := label
	yl.Rotation = math.Pi / 2
	plotArea.FillText(yl, vg.Point{X: plotArea.Min.X + labelH - descent, Y: data.Center().Y}, c.yLabel)

	if c.subtitle != "" {
		sty := c.p.Title.TextStyle
		sty.Font = font.From(sans, 11)
		sty.Color = grey
		titleH := c.p.Title.TextStyle.Rectangle(c.p.Title.Text).Size().Y
		at := vg.Point{X: plotArea.Center().X, Y: plotArea.Max.Y - titleH - vg.Points(5)}
		plotArea.FillText(sty, at, c.subtitle)
	}

	// The legend's top level with the top of the data area.
	c.legend.Draw(draw.Crop(dc, dc.Size().X-legendW, 0, 0, data.Max.Y-dc.Max.Y))

	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: canvas}).WriteTo(&buf); err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// spans says whether the positive values span more than the ratio max ÷ min.
func spans(vs []float64, ratio float64) bool {
	lo, hi := math.Inf(1), 0.0
	for _, v := range vs {
		if v > 0 {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	return hi > 0 && hi/lo > ratio
}

// tickLabel formats a tick value without float noise (0.3, not
// 0.30000000000000004) and without trailing zeros (250, not 250.00).
func tickLabel(v float64) string {
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 10, 64), 64)
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// linearTicks put about n labels (n/2 to n+1) at round steps (1, 2, 2.5 or 5
// times a power of ten) on a linear axis, with minor ticks between;
// gonum/plot's default aims at three, which leaves a time axis hard to read.
type linearTicks struct{ n int }

// Ticks implements plot.Ticker.
func (t linearTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) || t.n < 1 {
		return nil
	}
	raw := (hi - lo) / float64(t.n)
	mag := math.Pow10(int(math.Floor(math.Log10(raw))))
	step, minors := 10*mag, 5
	for _, m := range []struct {
		mult   float64
		minors int
	}{{1, 5}, {2, 4}, {2.5, 5}, {5, 5}} {
		if m.mult*mag >= raw {
			step, minors = m.mult*mag, m.minors
			break
		}
	}
	minor := step / float64(minors)
	var ts []plot.Tick
	for i := math.Ceil(lo / minor); i*minor <= hi*(1+1e-12); i++ {
		v := i * minor
		t := plot.Tick{Value: v}
		if math.Mod(i, float64(minors)) == 0 {
			t.Label = tickLabel(v)
		}
		ts = append(ts, t)
	}
	return ts
}

// logTicks label a log axis at 1, 2 and 5 times the powers of ten when it
// spans up to three decades, at the powers of ten beyond, with minor ticks
// at the other multiples.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	labelled := func(m int) bool { return m == 1 || m == 2 || m == 5 }
	if math.Log10(hi/lo) > 3 {
		labelled = func(m int) bool { return m == 1 }
	}
	var ts []plot.Tick
	for k := int(math.Floor(math.Log10(lo))); k <= int(math.Ceil(math.Log10(hi))); k++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow10(k)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if labelled(m) {
				t.Label = tickLabel(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// nTicks labels an N axis at the measured N when the labels fit, and falls
// back to the usual ticks when they would crowd.
type nTicks struct {
	ns  []float64
	log bool
}

// Ticks implements plot.Ticker.
func (t nTicks) Ticks(lo, hi float64) []plot.Tick {
	fallback := func() []plot.Tick {
		if t.log {
			return logTicks{}.Ticks(lo, hi)
		}
		return linearTicks{n: 8}.Ticks(lo, hi)
	}
	switch {
	case len(t.ns) == 1:
		return []plot.Tick{{Value: t.ns[0], Label: tickLabel(t.ns[0])}}
	case len(t.ns) == 0 || len(t.ns) > 12:
		return fallback()
	}
	pos := func(v float64) float64 {
		if t.log {
			return (math.Log(v) - math.Log(lo)) / (math.Log(hi) - math.Log(lo))
		}
		return (v - lo) / (hi - lo)
	}
	// The data area is about 6 inches wide and a digit of the tick font
	// about 6 points: two neighbouring labels need their half-widths plus
	// a gap.
	const axisPt, digitPt, gapPt = 6 * 72, 6, 10
	ticks := make([]plot.Tick, 0, len(t.ns))
	for i, n := range t.ns {
		label := tickLabel(n)
		if i > 0 {
			prev := ticks[i-1].Label
			need := (float64(len(prev)+len(label))/2*digitPt + gapPt) / axisPt
			if pos(n)-pos(t.ns[i-1]) < need {
				return fallback()
			}
		}
		ticks = append(ticks, plot.Tick{Value: n, Label: label})
	}
	return ticks
}
