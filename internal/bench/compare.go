package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
)

// Comparison is compare.json: both summaries of a --compare run and their
// pipeline/monolith ratios.
type Comparison struct {
	Pipeline Summary            `json:"pipeline"`
	Monolith Summary            `json:"monolith"`
	Ratios   map[string]float64 `json:"ratios_pipeline_over_monolith"`
	// tiers are the pipeline's tiers in order, for Print.
	tiers []string
}

// Compare sets the pipeline's result against the monolith's. A ratio over
// a zero is 0.
func Compare(pipe, mono *Result) Comparison {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	p, m := pipe.Summary, mono.Summary
	c := Comparison{Pipeline: p, Monolith: m, tiers: pipe.TierOrder, Ratios: map[string]float64{
		"throughput_per_s": ratio(p.ThroughputPerS, m.ThroughputPerS),
		"elapsed_s":        ratio(p.ElapsedS, m.ElapsedS),
		"p50_ms":           ratio(p.All.P50, m.All.P50),
		"p95_ms":           ratio(p.All.P95, m.All.P95),
		"p99_ms":           ratio(p.All.P99, m.All.P99),
		"accuracy":         ratio(p.Accuracy, m.Accuracy),
	}}
	if len(p.Links) > 0 {
		c.Ratios["wan_bytes"] = ratio(float64(p.WANBytes), float64(m.WANBytes))
	}
	return c
}

// WriteComparison writes dir/compare.json and the comparison plots.
func WriteComparison(dir string, c Comparison, pipe, mono *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "compare.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return PlotComparison(dir, pipe, mono)
}

// Print writes both sides side by side: totals, the round trip per exit
// tier, and the bytes on every emulated link.
func (c Comparison) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tpipeline\tmonolith\tpipeline/monolith\t")
	row := func(name, key string, a, b float64) {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t\n", name, a, b, c.Ratios[key])
	}
	p, m := c.Pipeline, c.Monolith
	row("throughput results/s", "throughput_per_s", p.ThroughputPerS, m.ThroughputPerS)
	row("elapsed s", "elapsed_s", p.ElapsedS, m.ElapsedS)
	row("round trip p50 ms", "p50_ms", p.All.P50, m.All.P50)
	row("round trip p95 ms", "p95_ms", p.All.P95, m.All.P95)
	row("round trip p99 ms", "p99_ms", p.All.P99, m.All.P99)
	for _, t := range c.tiers {
		pt, mt := p.Tiers[t], m.Tiers[t]
		fmt.Fprintf(tw, "exit %s: results\t%d\t%d\t\t\n", t, pt.Count, mt.Count)
		fmt.Fprintf(tw, "exit %s: p50 / p99 ms\t%.1f / %.1f\t%.1f / %.1f\t\t\n", t, pt.P50, pt.P99, mt.P50, mt.P99)
	}
	row("accuracy", "accuracy", p.Accuracy, m.Accuracy)
	fmt.Fprintf(tw, "refused\t%d\t%d\t\t\n", p.Refused, m.Refused)
	fmt.Fprintf(tw, "results of refused sends\t%d\t%d\t\t\n", p.RefusedResults, m.RefusedResults)
	fmt.Fprintf(tw, "lost (accepted, no result)\t%d\t%d\t\t\n", p.Lost, m.Lost)
	if len(p.Links) > 0 {
		fmt.Fprintf(tw, "WAN bytes (between sites)\t%d\t%d\t%.2f\t\n", p.WANBytes, m.WANBytes, c.Ratios["wan_bytes"])
		bytesOn := func(ls []LinkSummary, name string) int64 {
			for _, l := range ls {
				if l.From+"->"+l.To == name {
					return l.Bytes
				}
			}
			return 0
		}
		for _, l := range p.Links {
			name := l.From + "->" + l.To
			fmt.Fprintf(tw, "bytes %s\t%d\t%d\t\t\n", name, l.Bytes, bytesOn(m.Links, name))
		}
	}
	tw.Flush()
}
