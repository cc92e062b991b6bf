package bench

import (
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// plotRun is a run of n messages over three tiers in which nothing exits
// early: every tier takes every message, so their throughput lines are
// equal, and so are their replicas (one each).
func plotRun(n int) *Result {
	p := &pipeline.Pipeline{Tiers: []pipeline.Tier{{Name: "edge"}, {Name: "fog"}, {Name: "cloud"}}}
	sends := make([]Send, n)
	for i := range sends {
		sends[i] = Send{At: time.Duration(i) * 20 * time.Millisecond}
	}
	r := newRun(Config{Pipeline: p, Target: "pipeline", Protocol: "http", Workload: Workload{Kind: WorkloadConstant, Devices: 1, TimeScale: 1}}, sends)
	r.start = time.Now()
	for i := range sends {
		r.sent[i] = sendState{sent: sends[i].At, ack: time.Millisecond, done: true}
		at := r.start.Add(sends[i].At + time.Duration(40+i%50)*time.Millisecond)
		r.results[i] = resultState{n: 1, tier: "cloud", at: at,
			hops: []wire.Hop{{Tier: "edge", At: at}, {Tier: "fog", At: at}, {Tier: "cloud", At: at}}}
	}
	for _, tier := range []string{"edge", "fog", "cloud"} {
		for k := range 40 {
			r.replicas[tier] = append(r.replicas[tier], ReplicaPoint{At: time.Duration(k) * 250 * time.Millisecond, Ready: 1})
		}
	}
	return r.result(false)
}

// TestPlotTicks: every linear axis of every plot is labeled at a step of
// 1, 2 or 5 times a power of ten (not 2.5 or 7.5), with four to eleven
// labels (not two), each with no more decimals than its step needs (not
// "250.00").
func TestPlotTicks(t *testing.T) {
	res := plotRun(500)
	mono := *res
	mono.Summary.All.P99 = 247
	mono.Summary.Links = []LinkSummary{{From: "edge", To: "cloud", Bytes: 17.5e6}}
	res.Summary.Links = []LinkSummary{{From: "edge", To: "cloud", Bytes: 2.5e6}}
	type axis struct {
		name string
		a    *plot.Axis
	}
	var axes []axis
	for name, draw := range map[string]func(string) (*plot.Plot, string, error){
		PlotLatency: res.plotLatency, PlotThroughput: res.plotThroughput, PlotReplicas: res.plotReplicas,
	} {
		p, _, err := draw("t")
		if err != nil || p == nil {
			t.Fatalf("%s: %v", name, err)
		}
		axes = append(axes, axis{name + " x", &p.X})
		if name != PlotLatency { // a log axis, labeled 1-2-5 per decade
			axes = append(axes, axis{name + " y", &p.Y})
		}
	}
	for name, draw := range map[string]func(*Result, *Result) (*plot.Plot, error){
		PlotCompareLatency: compareLatencyPlot, PlotCompareLinks: compareLinksPlot,
	} {
		p, err := draw(res, &mono)
		if err != nil {
			t.Fatal(err)
		}
		axes = append(axes, axis{name + " y", &p.Y})
	}
	// Ranges of the kinds the issue saw, on a bare axis.
	for _, hi := range []float64{1, 3, 17.5, 20, 250, 350, 0.35, 1234} {
		a := plot.New().Y
		a.Min, a.Max, a.Tick.Marker = 0, hi, linearTicks{}
		axes = append(axes, axis{"0 to " + strconv.FormatFloat(hi, 'g', -1, 64), &a})
	}
	for _, ax := range axes {
		var vals []float64
		var labels []string
		for _, tk := range ax.a.Tick.Marker.Ticks(ax.a.Min, ax.a.Max) {
			if tk.Label != "" {
				vals, labels = append(vals, tk.Value), append(labels, tk.Label)
			}
		}
		least := 4
		if ax.name == PlotReplicas+" y" {
			least = 3 // 0, 1 and 2 replicas: a step of less than one is none
		}
		if len(vals) < least || len(vals) > 11 {
			t.Errorf("%s (%g to %g): %d labels %v, want %d to 11", ax.name, ax.a.Min, ax.a.Max, len(vals), labels, least)
			continue
		}
		step := vals[1] - vals[0]
		mant := step / math.Pow(10, math.Floor(math.Log10(step)+1e-9))
		if math.Abs(mant-1) > 1e-6 && math.Abs(mant-2) > 1e-6 && math.Abs(mant-5) > 1e-6 {
			t.Errorf("%s: step %g, want 1, 2 or 5 times a power of ten: %v", ax.name, step, labels)
		}
		decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
		for i, v := range vals {
			if i > 0 && math.Abs(v-vals[i-1]-step) > step*1e-6 {
				t.Errorf("%s: uneven steps %v", ax.name, labels)
				break
			}
			if want := strconv.FormatFloat(v, 'f', decimals, 64); labels[i] != want {
				t.Errorf("%s: label %q, want %q", ax.name, labels[i], want)
			}
		}
	}
}

// TestPlotNoData: a figure without data is not drawn, a file of its name
// from an earlier run in the same directory is removed, and the result
// says which and why (the monolith has no replica lists; a run without
// results has no round trips).
func TestPlotNoData(t *testing.T) {
	res := plotRun(50)
	res.Summary.Target, res.ReplicaSeries = "monolith", nil
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, PlotReplicas), []byte("an earlier run's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := res.Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, PlotReplicas)); err == nil {
		t.Errorf("%s drawn without replica lists", PlotReplicas)
	}
	if got := strings.Join(res.Unplotted, "; "); got != "replicas.png (no replica lists: the monolith is one process)" {
		t.Errorf("unplotted: %q", got)
	}
	if got := strings.Join(res.Plots, ","); got != "latency.png,latency_box.png,throughput.png" {
		t.Errorf("plots: %q", got)
	}

	none := plotRun(0)
	if err := none.Write(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if len(none.Plots) != 1 || none.Plots[0] != PlotReplicas || len(none.Unplotted) != 3 {
		t.Errorf("no results: drawn %v, not drawn %v", none.Plots, none.Unplotted)
	}
}

// TestLegendBesideData: the legend is drawn beside the axes, where it
// hides no data.
func TestLegendBesideData(t *testing.T) {
	res := plotRun(200)
	for name, draw := range map[string]func(string) (*plot.Plot, string, error){
		PlotLatency: res.plotLatency, PlotThroughput: res.plotThroughput, PlotReplicas: res.plotReplicas,
	} {
		p, _, err := draw("t")
		if err != nil {
			t.Fatal(err)
		}
		legend, axes := layout(p, draw2(plotWidth, plotHeight))
		if legend.Size().X <= 0 || legend.Size().Y <= 0 {
			t.Errorf("%s: no legend", name)
			continue
		}
		if legend.Min.X < axes.Max.X && legend.Max.X > axes.Min.X && legend.Min.Y < axes.Max.Y && legend.Max.Y > axes.Min.Y {
			t.Errorf("%s: legend %v overlaps the axes %v", name, legend, axes.Rectangle)
		}
	}
}

func draw2(w, h vg.Length) draw.Canvas { return draw.New(vgimg.New(w, h)) }

// TestLinesVisible: when every tier's line is the same (nothing exits
// early, one replica each), each tier's color is still in view on the
// drawn plot, not covered by the last tier's line.
func TestLinesVisible(t *testing.T) {
	res := plotRun(500)
	for name, fig := range map[string]func(string) (*plot.Plot, string, error){
		PlotThroughput: res.plotThroughput, PlotReplicas: res.plotReplicas,
	} {
		p, _, err := fig("t")
		if err != nil {
			t.Fatal(err)
		}
		// At 300 dpi a line's middle has its color exactly, not blended
		// with the background by anti-aliasing.
		c := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(300))
		layout(p, draw.New(c))
		img := c.Image()
		for i, tier := range res.TierOrder {
			if n := pixels(img, plotutil.Color(i)); n < 200 {
				t.Errorf("%s: %d pixels of tier %s's color, want its line in view (200 at least)", name, n, tier)
			}
		}
	}
}

// pixels counts img's pixels of color c.
func pixels(img image.Image, c color.Color) int {
	want := color.RGBAModel.Convert(c).(color.RGBA)
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == want {
				n++
			}
		}
	}
	return n
}

// TestLogTicks: a log axis has three labels at least, however narrow its
// range: 1, 2 and 5 per decade, every digit within a decade, or linear
// steps within a digit.
func TestLogTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   string
	}{
		{0.1, 1000, "0.1 0.2 0.5 1 2 5 10 20 50 100 200 500 1000"},
		{2, 30, "2 5 10 20"},
		{40, 89, "40 50 60 70 80"},
		{41, 44, "41.0 41.5 42.0 42.5 43.0 43.5 44.0"},
	} {
		var labels []string
		for _, tk := range (ticks125{}).Ticks(tc.lo, tc.hi) {
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
		}
		if got := strings.Join(labels, " "); got != tc.want {
			t.Errorf("%g to %g: %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
	}
}

func TestDevicesWording(t *testing.T) {
	for n, want := range map[int]string{1: "1 device", 5: "5 devices"} {
		if got := devices(n); got != want {
			t.Errorf("devices(%d) = %q, want %q", n, got, want)
		}
	}
}
