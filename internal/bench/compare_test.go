package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	pipe := &Result{TierOrder: []string{"edge", "cloud"}, Summary: Summary{
		ThroughputPerS: 200, ElapsedS: 10, Accuracy: 0.9, Refused: 1, Lost: 2,
		All:   Percentiles{P50: 4, P95: 8, P99: 12},
		Tiers: map[string]Percentiles{"edge": {Count: 70, P50: 2, P99: 5}, "cloud": {Count: 30, P50: 9, P99: 20}},
		Links: []LinkSummary{{From: "edge", To: "cloud", Bytes: 1000}}, WANBytes: 1000,
	}}
	mono := &Result{TierOrder: []string{"edge", "cloud"}, Summary: Summary{
		ThroughputPerS: 100, ElapsedS: 20, Accuracy: 0.9,
		All:   Percentiles{P50: 8, P95: 0, P99: 24},
		Tiers: map[string]Percentiles{"cloud": {Count: 100, P50: 7, P99: 16}},
		Links: []LinkSummary{{From: "edge", To: "cloud", Bytes: 4000}}, WANBytes: 4000,
	}}
	c := Compare(pipe, mono)
	want := map[string]float64{"throughput_per_s": 2, "elapsed_s": 0.5, "p50_ms": 0.5, "p95_ms": 0, "p99_ms": 0.5, "accuracy": 1, "wan_bytes": 0.25}
	if len(c.Ratios) != len(want) {
		t.Errorf("ratios %v, want %v", c.Ratios, want)
	}
	for k, v := range want {
		if c.Ratios[k] != v {
			t.Errorf("ratio %s = %v, want %v (a ratio over 0 is 0)", k, c.Ratios[k], v)
		}
	}
	pipe.Summary.Links = nil
	if _, ok := Compare(pipe, mono).Ratios["wan_bytes"]; ok {
		t.Error("a run without a network has a wan_bytes ratio")
	}
	pipe.Summary.Links = c.Pipeline.Links

	var out bytes.Buffer
	c.Print(&out)
	for _, line := range []string{
		"throughput results/s  200.00  100.00  2.00",
		"exit edge: results      70       0",
		"exit cloud: p50 / p99 ms  9.0 / 20.0  7.0 / 16.0",
		"WAN bytes (between sites)    1000    4000  0.25",
		"bytes edge->cloud    1000    4000",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out.String()), " "), strings.Join(strings.Fields(line), " ")) {
			t.Errorf("comparison lacks %q:\n%s", line, out.String())
		}
	}

	dir := t.TempDir()
	if err := WriteComparison(dir, c, pipe, mono); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Comparison
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Ratios["throughput_per_s"] != 2 || back.Monolith.ThroughputPerS != 100 {
		t.Errorf("compare.json does not hold the comparison:\n%s", b)
	}
}
