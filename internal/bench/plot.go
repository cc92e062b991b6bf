package bench

import (
	"errors"
	"fmt"
	"image/color"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot files written into --out.
const (
	PlotLatency    = "latency.png"
	PlotLatencyBox = "latency_box.png"
	PlotThroughput = "throughput.png"
	PlotReplicas   = "replicas.png"
)

// plot draws the run's figures into dir. A figure without data is not
// drawn (an older file of its name is removed, so none is mistaken for
// this run's): res.Plots names the files written, res.Unplotted the others
// and why.
func (res *Result) plot(dir string) error {
	title := fmt.Sprintf("%s, %s over %s, %s", res.Summary.Target, res.Summary.Workload, res.Summary.Protocol, devices(res.Summary.Devices))
	res.Plots, res.Unplotted = nil, nil
	for _, fig := range []struct {
		name string
		draw func(string) (*plot.Plot, string, error)
	}{
		{PlotLatency, res.plotLatency},
		{PlotLatencyBox, res.plotLatencyBox},
		{PlotThroughput, res.plotThroughput},
		{PlotReplicas, res.plotReplicas},
	} {
		path := filepath.Join(dir, fig.name)
		p, noData, err := fig.draw(title)
		if err != nil {
			return fmt.Errorf("plot %s: %w", fig.name, err)
		}
		if p == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("plot %s: %w", fig.name, err)
			}
			res.Unplotted = append(res.Unplotted, fig.name+" ("+noData+")")
			continue
		}
		if err := save(p, path); err != nil {
			return fmt.Errorf("plot %s: %w", fig.name, err)
		}
		res.Plots = append(res.Plots, fig.name)
	}
	return nil
}

// Plots are 20 by 11 cm.
const plotWidth, plotHeight = 20 * vg.Centimeter, 11 * vg.Centimeter

// save writes p as a PNG to path with its legend beside the data, right of
// it, where it cannot hide any (inside the axes it would lie over the
// points of one corner); the title spans both.
func save(p *plot.Plot, path string) error {
	c, err := draw.NewFormattedCanvas(plotWidth, plotHeight, "png")
	if err != nil {
		return err
	}
	layout(p, draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// layout draws p on dc with its title across the top and its legend in a
// column right of the axes; it returns where the legend went (empty
// without entries) and the canvas of the axes and data.
func layout(p *plot.Plot, dc draw.Canvas) (legend vg.Rectangle, axes draw.Canvas) {
	if t := p.Title; t.Text != "" {
		dc.FillText(t.TextStyle, vg.Point{X: dc.Center().X, Y: dc.Max.Y + t.TextStyle.FontExtents().Descent}, t.Text)
		dc.Max.Y -= t.TextStyle.Rectangle(t.Text).Size().Y + t.Padding
	}
	leg := p.Legend
	p.Legend, p.Title.Text = plot.NewLegend(), ""
	defer func() { p.Legend = leg }()
	axes = dc
	if size := leg.Rectangle(dc).Size(); size.X > 0 {
		gap := vg.Points(8)
		axes = draw.Crop(dc, 0, -(size.X + 2*gap), 0, 0)
		lc := draw.Crop(dc, dc.Size().X-size.X-gap, -gap, 0, -gap)
		leg.Top, leg.Left = true, true
		leg.Draw(lc)
		legend = vg.Rectangle{Min: vg.Point{X: lc.Min.X, Y: lc.Max.Y - size.Y}, Max: vg.Point{X: lc.Min.X + size.X, Y: lc.Max.Y}}
	}
	p.Draw(axes)
	return legend, axes
}

// plotLatency is each message's round trip over its send time, by exit tier,
// on a log scale; each tier has its own color and glyph.
func (res *Result) plotLatency(title string) (*plot.Plot, string, error) {
	p := plot.New()
	p.Title.Text = "Round trip over time by exit tier: " + title
	p.X.Label.Text = "send time (s)"
	p.X.Tick.Marker = linearTicks{}
	p.Y.Label.Text = "round trip (ms, log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	points := 0
	for i, tier := range res.TierOrder {
		var xys plotter.XYs
		for _, r := range res.Rows {
			if r.Results > 0 && r.Tier == tier {
				xys = append(xys, plotter.XY{X: r.Sent.Seconds(), Y: max(0.1, ms(r.Latency))})
			}
		}
		if len(xys) == 0 {
			continue
		}
		points += len(xys)
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return nil, "", err
		}
		s.GlyphStyle.Color = plotutil.Color(i)
		s.GlyphStyle.Shape = plotutil.Shape(i)
		s.GlyphStyle.Radius = vg.Points(1.5)
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("%s (%d)", tier, len(xys)), s)
	}
	if points == 0 {
		return nil, "no results", nil
	}
	if err := res.markCuts(p); err != nil {
		return nil, "", err
	}
	p.X.Min = min(p.X.Min, 0) // from the start
	p.Add(plotter.NewGrid())
	return p, "", nil
}

// markCuts draws each outage of the network as two vertical lines over the
// round trips, its start and its end.
func (res *Result) markCuts(p *plot.Plot) error {
	lo, hi := 0.1, 0.1
	for _, r := range res.Rows {
		if r.Results > 0 {
			hi = max(hi, ms(r.Latency))
		}
	}
	for i, c := range res.Summary.Cuts {
		for _, x := range []float64{c.AtS, c.AtS + c.ForS} {
			l, err := plotter.NewLine(plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}})
			if err != nil {
				return err
			}
			l.Color = color.Gray{Y: 96}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			if i == 0 && x == c.AtS {
				p.Legend.Add("cut "+strings.Join(c.Links, ", "), l)
			}
		}
	}
	return nil
}

// plotLatencyBox is the distribution of round trips per exit tier and over
// all messages, on a log scale.
func (res *Result) plotLatencyBox(title string) (*plot.Plot, string, error) {
	p := plot.New()
	p.Title.Text = "Round trip by exit tier: " + title
	p.Y.Label.Text = "round trip (ms, log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	var names []string
	add := func(name string, keep func(Row) bool) error {
		var vs plotter.Values
		for _, r := range res.Rows {
			if r.Results > 0 && keep(r) {
				vs = append(vs, max(0.1, ms(r.Latency)))
			}
		}
		if len(vs) == 0 {
			return nil
		}
		b, err := plotter.NewBoxPlot(vg.Points(40), float64(len(names)), vs)
		if err != nil {
			return err
		}
		b.FillColor = plotutil.Color(len(names))
		p.Add(b)
		names = append(names, fmt.Sprintf("%s (%d)", name, len(vs)))
		return nil
	}
	for _, tier := range res.TierOrder {
		if err := add(tier, func(r Row) bool { return r.Tier == tier }); err != nil {
			return nil, "", err
		}
	}
	if err := add("all", func(Row) bool { return true }); err != nil {
		return nil, "", err
	}
	if len(names) == 0 {
		return nil, "no results", nil
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5 // no box against an edge
	p.Add(plotter.NewGrid())
	return p, "", nil
}

// plotThroughput is the messages each tier took per second over time.
func (res *Result) plotThroughput(title string) (*plot.Plot, string, error) {
	p := plot.New()
	p.Title.Text = "Messages taken per tier: " + title
	p.X.Label.Text = "time (s)"
	p.X.Tick.Marker = linearTicks{}
	p.Y.Label.Text = "messages/s"
	p.Y.Min = 0
	p.Y.Tick.Marker = linearTicks{}
	per := res.Bucket.Seconds()
	taken := 0
	for i, tier := range res.TierOrder {
		var xys plotter.XYs
		for b, n := range res.Processed[tier] {
			xys = append(xys, plotter.XY{X: float64(b) * per, Y: float64(n) / per})
			taken += n
		}
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, tier, i, len(res.TierOrder), xys, false); err != nil {
			return nil, "", err
		}
	}
	if taken == 0 {
		return nil, "no results: no tier's hops to count", nil
	}
	p.X.Min = min(p.X.Min, 0)
	p.Add(plotter.NewGrid())
	return p, "", nil
}

// addLine adds tier i's line (of n), with its legend entry. Tiers' lines
// often lie on one another (one replica each; equal rates when nothing
// exits early), so each differs in more than its color: an earlier tier's
// line is wider, so that a later one drawn on it leaves its edges in
// view, each has its own dashes, and its own glyph at some points (offset
// per tier, so glyphs of equal lines do not cover one another either).
func addLine(p *plot.Plot, tier string, i, n int, xys plotter.XYs, steps bool) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.2 + float64(max(0, n-1-i)))
	l.Dashes = plotutil.Dashes(i)
	if steps {
		l.StepStyle = plotter.PostStep
	}
	p.Add(l)
	var marks plotter.XYs
	every := max(1, len(xys)/10)
	for k := (i * every) / max(1, n); k < len(xys); k += every {
		marks = append(marks, xys[k])
	}
	g, err := plotter.NewScatter(marks)
	if err != nil {
		return err
	}
	g.GlyphStyle = draw.GlyphStyle{Color: plotutil.Color(i), Shape: plotutil.Shape(i), Radius: vg.Points(3)}
	p.Add(g)
	p.Legend.Add(tier, l, g)
	return nil
}

// plotReplicas is the ready replicas per tier over time, as sampled from
// the supervisor.
func (res *Result) plotReplicas(title string) (*plot.Plot, string, error) {
	if len(res.ReplicaSeries) == 0 {
		if res.Summary.Target == "monolith" {
			return nil, "no replica lists: the monolith is one process", nil
		}
		return nil, "no replica lists: not a ddnn up pipeline, or its admin address unknown", nil
	}
	p := plot.New()
	p.Title.Text = "Ready replicas per tier: " + title
	p.X.Label.Text = "time (s)"
	p.X.Tick.Marker = linearTicks{}
	p.Y.Label.Text = "replicas"
	p.Y.Tick.Marker = linearTicks{integers: true}
	p.Y.Min = 0
	top := 1.0
	for i, tier := range res.TierOrder {
		pts := res.ReplicaSeries[tier]
		if len(pts) == 0 {
			continue
		}
		var xys plotter.XYs
		for _, pt := range pts {
			xys = append(xys, plotter.XY{X: pt.At.Seconds(), Y: float64(pt.Ready)})
			top = max(top, float64(pt.Ready))
		}
		if err := addLine(p, tier, i, len(res.TierOrder), xys, true); err != nil {
			return nil, "", err
		}
	}
	p.Y.Max = top + 1
	p.X.Min = min(p.X.Min, 0)
	p.Add(plotter.NewGrid())
	return p, "", nil
}

// linearTicks labels a linear axis at steps of 1, 2 or 5 times a power of
// ten, about six steps over the range (see niceStep), with an
// unlabeled tick halfway between; labels have as many decimals as the
// step needs. With integers the step is 1 at least (replica counts).
type linearTicks struct{ integers bool }

func (t linearTicks) Ticks(lo, hi float64) []plot.Tick {
	step := niceStep(hi - lo)
	if t.integers {
		step = max(1, step)
	}
	decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	first := math.Ceil(lo/step - 1e-9)
	var ts []plot.Tick
	for k := first; k*step <= hi+step*1e-9; k++ {
		v := k * step
		if v == 0 {
			v = 0 // not -0, which is labeled "-0"
		}
		label := strconv.FormatFloat(v, 'f', decimals, 64)
		ts = append(ts, plot.Tick{Value: v, Label: label})
		if mid := v + step/2; mid <= hi && !(t.integers && step == 1) {
			ts = append(ts, plot.Tick{Value: mid})
		}
	}
	if m := first*step - step/2; m >= lo && !(t.integers && step == 1) {
		ts = append(ts, plot.Tick{Value: m})
	}
	return ts
}

// niceStep is the step of 1, 2 or 5 times a power of ten that cuts span
// (a positive width) into the nearest to six steps, and at most ten; 1
// for a span of nothing.
func niceStep(span float64) float64 {
	if !(span > 0) || math.IsInf(span, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(span/6)))
	best, bestD := 0.0, math.Inf(1)
	for _, m := range []float64{1, 2, 5, 10} {
		step := m * mag
		n := span / step
		if d := math.Abs(math.Log(n / 6)); n <= 10 && d < bestD {
			best, bestD = step, d
		}
	}
	return best
}

// ticks125 labels a log axis at 1, 2 and 5 times each power of ten, so a
// range within one decade still reads; a range too narrow for three such
// labels is labeled at every digit times a power of ten, and one too
// narrow for that as a linear axis.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	for _, mants := range [][]float64{{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}} {
		var ts []plot.Tick
		for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
			for _, m := range mants {
				if v := m * math.Pow(10, e); v >= lo && v <= hi {
					ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
				}
			}
		}
		if len(ts) >= 3 {
			return ts
		}
	}
	return linearTicks{}.Ticks(lo, hi)
}

// Comparison plots written into --out by bench --compare with --network.
const (
	PlotCompareLatency = "compare_latency.png"
	PlotCompareLinks   = "compare_links.png"
)

// PlotComparison draws the pipeline and the cloud-only baseline side by
// side into dir: the p50 and p99 round trip per exit tier and over all
// messages, and, when the runs crossed an emulated network, the bytes on
// each link.
func PlotComparison(dir string, pipe, mono *Result) error {
	p, err := compareLatencyPlot(pipe, mono)
	if err != nil {
		return fmt.Errorf("plot %s: %w", PlotCompareLatency, err)
	}
	if err := save(p, filepath.Join(dir, PlotCompareLatency)); err != nil {
		return fmt.Errorf("plot %s: %w", PlotCompareLatency, err)
	}
	if len(pipe.Summary.Links) == 0 {
		return nil
	}
	if p, err = compareLinksPlot(pipe, mono); err != nil {
		return fmt.Errorf("plot %s: %w", PlotCompareLinks, err)
	}
	if err := save(p, filepath.Join(dir, PlotCompareLinks)); err != nil {
		return fmt.Errorf("plot %s: %w", PlotCompareLinks, err)
	}
	return nil
}

// compareLatencyPlot is the p50 and p99 round trips of both runs per exit
// tier and over all messages.
func compareLatencyPlot(pipe, mono *Result) (*plot.Plot, error) {
	type bars struct {
		name string
		pipe []float64
		mono []float64
	}
	var groups []string
	lat := []bars{{name: "p50"}, {name: "p99"}}
	add := func(name string, a, b Percentiles) {
		groups = append(groups, name)
		lat[0].pipe, lat[0].mono = append(lat[0].pipe, a.P50), append(lat[0].mono, b.P50)
		lat[1].pipe, lat[1].mono = append(lat[1].pipe, a.P99), append(lat[1].mono, b.P99)
	}
	for _, t := range pipe.TierOrder {
		add("exit "+t, pipe.Summary.Tiers[t], mono.Summary.Tiers[t])
	}
	add("all", pipe.Summary.All, mono.Summary.All)
	p := plot.New()
	p.Title.Text = "Round trip, pipeline across sites vs cloud-only monolith"
	p.Y.Label.Text = "round trip (ms)"
	p.Y.Tick.Marker = linearTicks{}
	w := vg.Points(14)
	i := 0
	for _, b := range lat {
		for _, side := range []struct {
			name string
			vs   []float64
		}{{"pipeline", b.pipe}, {"monolith", b.mono}} {
			bc, err := plotter.NewBarChart(plotter.Values(side.vs), w)
			if err != nil {
				return nil, err
			}
			bc.Offset = vg.Length(i-2)*w + w/2
			bc.Color = plotutil.Color(i)
			bc.LineStyle.Width = 0
			p.Add(bc)
			p.Legend.Add(side.name+" "+b.name, bc)
			i++
		}
	}
	p.NominalX(groups...)
	p.Y.Min, p.Y.Max = 0, headroom(lat[0].pipe, lat[0].mono, lat[1].pipe, lat[1].mono)
	p.Add(plotter.NewGrid())
	return p, nil
}

// compareLinksPlot is the bytes both runs put on each emulated link.
func compareLinksPlot(pipe, mono *Result) (*plot.Plot, error) {
	var names []string
	var pv, mv plotter.Values
	for _, l := range pipe.Summary.Links {
		name := l.From + "->" + l.To
		names = append(names, name)
		pv = append(pv, float64(l.Bytes)/1e6)
		mv = append(mv, 0)
		for _, m := range mono.Summary.Links {
			if m.From+"->"+m.To == name {
				mv[len(mv)-1] = float64(m.Bytes) / 1e6
			}
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Bytes per link (WAN between sites: pipeline %.2f MB, monolith %.2f MB)",
		float64(pipe.Summary.WANBytes)/1e6, float64(mono.Summary.WANBytes)/1e6)
	p.Y.Label.Text = "MB, both directions"
	p.Y.Tick.Marker = linearTicks{}
	for i, side := range []struct {
		name string
		vs   plotter.Values
	}{{"pipeline", pv}, {"monolith", mv}} {
		bc, err := plotter.NewBarChart(side.vs, vg.Points(20))
		if err != nil {
			return nil, err
		}
		bc.Offset = vg.Length(2*i-1) * vg.Points(10)
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		p.Add(bc)
		p.Legend.Add(side.name, bc)
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, headroom(pv, mv)
	p.Add(plotter.NewGrid())
	return p, nil
}

// headroom is the top of a bar chart's axis: a little above the tallest
// bar (the legend is beside the axes, not over them).
func headroom(series ...[]float64) float64 {
	top := 0.0
	for _, vs := range series {
		for _, v := range vs {
			top = max(top, v)
		}
	}
	return max(1, top*1.1)
}
