package models

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestRobustChain: the chain of testdata/robust is what its README says.
// Its fog and cloud fit the shipped edge (forward shapes as listed) and
// `models check` passes; it meets the sample's targets on clean data; the
// README's `models eval` row is what Eval gives; and the clean rows of the
// README's transform table (each tier's own accuracy, and the chain's at
// edge thresholds 0.9, 0.99 and none), computed in Python by
// models/transforms.py, are what the Go runtime gives for both chains.
func TestRobustChain(t *testing.T) {
	readme, err := os.ReadFile("testdata/robust/README.md")
	if err != nil {
		t.Fatal(err)
	}
	p := load(t, "testdata/robust/robust.yaml")
	rep, err := Check(p)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"[-1 32]", "[-1 16]"} {
		if got := fmt.Sprint(rep.Tiers[i].Heads.Forward.Shape); got != want {
			t.Errorf("tier %s forwards %s, want %s", rep.Tiers[i].Name, got, want)
		}
		if got := fmt.Sprint(rep.Tiers[i+1].Heads.Input.Shape); got != want {
			t.Errorf("tier %s takes %s, want %s", rep.Tiers[i+1].Name, got, want)
		}
	}
	for i, want := range []string{"edge.onnx", "testdata/robust/fog-robust.onnx", "testdata/robust/cloud-robust.onnx"} {
		if got := p.PathFromHere(p.Tiers[i].Model); got != want {
			t.Errorf("tier %s runs %s, want %s", p.Tiers[i].Name, got, want)
		}
	}
	ds := shippedData(t, p)
	c := openChain(t, p)
	r := eval(t, c, ds)
	if r.Accuracy < 0.84 || r.EarlyExitRatio < 0.40 {
		t.Errorf("accuracy %.4f, early exits %.3f: below the sample's targets 0.84, 0.40", r.Accuracy, r.EarlyExitRatio)
	}
	row := "| robust (`robust.yaml`)"
	for _, tr := range r.Tiers {
		row += fmt.Sprintf(" | %.3f, %.4f", tr.ExitRatio, tr.Accuracy)
	}
	row += fmt.Sprintf(" | %.4f | %.1f%% |", r.Accuracy, 100*r.EarlyExitRatio)
	if !strings.Contains(string(readme), row) {
		t.Errorf("testdata/robust/README.md has no row %q (models eval of robust.yaml)", row)
	}
	for name, ch := range map[string]*Chain{"shipped": openChain(t, load(t, "../deploy/pipeline.yaml")), "robust": c} {
		row := cleanRow(t, ch, ds, name)
		if !strings.Contains(string(readme), row) {
			t.Errorf("testdata/robust/README.md has no row %q (the clean row of the %s chain)", row, name)
		}
	}
}

// cleanRow is the transform table's clean row of the chain, as
// models/transforms.py prints it: each tier's own accuracy, then the
// chain's accuracy and edge exit share with the edge at 0.9, 0.99 and 1.01.
func cleanRow(t *testing.T, c *Chain, ds *Dataset, name string) string {
	t.Helper()
	sc, err := c.score(ds)
	if err != nil {
		t.Fatal(err)
	}
	row := "| clean | " + name
	for _, scores := range sc.scores {
		right := 0
		for j, s := range scores {
			if slices.Index(s, slices.Max(s)) == sc.labels[j] {
				right++
			}
		}
		row += fmt.Sprintf(" | %.4f", float64(right)/float64(len(scores)))
	}
	tiers := make([]*pipeline.Tier, len(c.p.Tiers))
	for i := range tiers {
		tiers[i] = &c.p.Tiers[i]
	}
	for _, th := range []float64{0.9, 0.99, 1.01} {
		pols := append([]inference.Policy(nil), c.policies...)
		pols[0].Threshold = th
		r := sc.simulate(tiers, pols)
		row += fmt.Sprintf(" | %.4f (%.0f%%)", r.Accuracy, 100*r.Tiers[0].ExitRatio)
	}
	return row + " |"
}
