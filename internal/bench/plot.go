package bench

import (
	"fmt"
	"image/color"
	"math"
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

// plot draws the run's four figures into dir.
func (res *Result) plot(dir string) error {
	title := fmt.Sprintf("%s, %s over %s, %d devices", res.Summary.Target, res.Summary.Workload, res.Summary.Protocol, res.Summary.Devices)
	for name, draw := range map[string]func(string) (*plot.Plot, error){
		PlotLatency:    res.plotLatency,
		PlotLatencyBox: res.plotLatencyBox,
		PlotThroughput: res.plotThroughput,
		PlotReplicas:   res.plotReplicas,
	} {
		p, err := draw(title)
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		if err := p.Save(20*vg.Centimeter, 11*vg.Centimeter, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
	}
	return nil
}

// plotLatency is each message's round trip over its send time, by exit tier,
// on a log scale.
func (res *Result) plotLatency(title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Round trip over time by exit tier: " + title
	p.X.Label.Text = "send time (s)"
	p.Y.Label.Text = "round trip (ms, log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
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
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color = plotutil.Color(i)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		s.GlyphStyle.Radius = vg.Points(1.2)
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("%s (%d)", tier, len(xys)), s)
	}
	if err := res.markCuts(p); err != nil {
		return nil, err
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return p, nil
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
func (res *Result) plotLatencyBox(title string) (*plot.Plot, error) {
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
			return nil, err
		}
	}
	if err := add("all", func(Row) bool { return true }); err != nil {
		return nil, err
	}
	p.NominalX(names...)
	p.Add(plotter.NewGrid())
	return p, nil
}

// plotThroughput is the messages each tier took per second over time.
func (res *Result) plotThroughput(title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Messages taken per tier: " + title
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "messages/s"
	per := res.Bucket.Seconds()
	for i, tier := range res.TierOrder {
		var xys plotter.XYs
		for b, n := range res.Processed[tier] {
			xys = append(xys, plotter.XY{X: float64(b) * per, Y: float64(n) / per})
		}
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, tier, i, xys, false); err != nil {
			return nil, err
		}
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return p, nil
}

// addLine adds tier i's line, in its color (and dashes, for lines that
// may lie on one another), with a legend entry.
func addLine(p *plot.Plot, tier string, i int, xys plotter.XYs, steps bool) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	if steps {
		l.StepStyle = plotter.PostStep
		l.Dashes = plotutil.Dashes(i)
	}
	p.Add(l)
	p.Legend.Add(tier, l)
	return nil
}

// plotReplicas is the ready replicas per tier over time, as sampled from
// the supervisor.
func (res *Result) plotReplicas(title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Ready replicas per tier: " + title
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "replicas"
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
		if err := addLine(p, tier, i, xys, true); err != nil {
			return nil, err
		}
	}
	if len(res.ReplicaSeries) == 0 {
		p.Title.Text += " (no replica lists: not a ddnn up pipeline)"
	}
	p.Y.Max = top + 1
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return p, nil
}

// ticks125 labels a log axis at 1, 2 and 5 times each power of ten, so a
// range within one decade still reads.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ts
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
	w := vg.Points(14)
	i := 0
	for _, b := range lat {
		for _, side := range []struct {
			name string
			vs   []float64
		}{{"pipeline", b.pipe}, {"monolith", b.mono}} {
			bc, err := plotter.NewBarChart(plotter.Values(side.vs), w)
			if err != nil {
				return err
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
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	if err := p.Save(20*vg.Centimeter, 11*vg.Centimeter, filepath.Join(dir, PlotCompareLatency)); err != nil {
		return fmt.Errorf("plot %s: %w", PlotCompareLatency, err)
	}

	if len(pipe.Summary.Links) == 0 {
		return nil
	}
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
	p = plot.New()
	p.Title.Text = fmt.Sprintf("Bytes per link (WAN between sites: pipeline %.2f MB, monolith %.2f MB)",
		float64(pipe.Summary.WANBytes)/1e6, float64(mono.Summary.WANBytes)/1e6)
	p.Y.Label.Text = "MB, both directions"
	for i, side := range []struct {
		name string
		vs   plotter.Values
	}{{"pipeline", pv}, {"monolith", mv}} {
		bc, err := plotter.NewBarChart(side.vs, vg.Points(20))
		if err != nil {
			return err
		}
		bc.Offset = vg.Length(2*i-1) * vg.Points(10)
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		p.Add(bc)
		p.Legend.Add(side.name, bc)
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, headroom(pv, mv)
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	if err := p.Save(20*vg.Centimeter, 11*vg.Centimeter, filepath.Join(dir, PlotCompareLinks)); err != nil {
		return fmt.Errorf("plot %s: %w", PlotCompareLinks, err)
	}
	return nil
}

// headroom is the top of a bar chart's axis: the tallest bar and room
// above it for the legend.
func headroom(series ...[]float64) float64 {
	top := 0.0
	for _, vs := range series {
		for _, v := range vs {
			top = max(top, v)
		}
	}
	return max(1, top*1.4)
}
