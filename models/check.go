package models

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TierReport is what Check learned about one tier's model.
type TierReport struct {
	Name  string
	Model *onnx.ModelInfo
	// Heads is set when the tier's YAML matched its model.
	Heads *inference.Heads
}

// Report is Check's result, printable with Print.
type Report struct {
	Tiers []TierReport
}

// Check opens every tier's model (onnx.Init must have succeeded) and verifies
// the chain. The report holds what could be read even when the returned
// error lists problems; every problem found is reported, each naming the tier,
// the tensor and both shapes. A tier's canary is checked as the tier's
// model, and its forward output must be the current model's (checkCanaries).
func Check(p *pipeline.Pipeline) (*Report, error) {
	r, err := checkModels(p)
	return r, errors.Join(err, errors.Join(checkCanaries(p, r)...))
}

// checkModels is Check without the tiers' canaries.
func checkModels(p *pipeline.Pipeline) (*Report, error) {
	r := &Report{}
	var errs []error
	for i := range p.Tiers {
		t := &p.Tiers[i]
		tr := TierReport{Name: t.Name}
		info, err := onnx.ReadModelInfo(p.ModelPath(t))
		if err != nil {
			errs = append(errs, fmt.Errorf("tier %q: %w", t.Name, err))
			r.Tiers = append(r.Tiers, tr)
			continue
		}
		tr.Model = info
		h, err := inference.ResolveHeads(t, p.Last(i), info)
		if err != nil {
			errs = append(errs, err)
		} else {
			tr.Heads = &h
		}
		r.Tiers = append(r.Tiers, tr)
	}
	errs = append(errs, r.checkChain(p)...)
	return r, errors.Join(errs...)
}

func (r *Report) checkChain(p *pipeline.Pipeline) []error {
	var errs []error
	if h := r.Tiers[0].Heads; h != nil {
		in := inference.PerSample(h.Input.Shape)
		if inference.Elements(in) != elements(p.Input.Shape) {
			errs = append(errs, fmt.Errorf("tier %q: pipeline input.shape %v (%d elements) does not fit model input %q %v (%d elements per sample)",
				p.Tiers[0].Name, p.Input.Shape, elements(p.Input.Shape), h.Input.Name, h.Input.Shape, inference.Elements(in)))
		}
	}
	for i, tr := range r.Tiers {
		h := tr.Heads
		if h == nil {
			continue
		}
		if c := int(h.Exit.Shape[1]); c != len(p.Classes) {
			errs = append(errs, fmt.Errorf("tier %q: exit output %q has shape %v (%d classes), pipeline names %d classes",
				tr.Name, h.Exit.Name, h.Exit.Shape, c, len(p.Classes)))
		}
		if i+1 >= len(r.Tiers) || h.Forward == nil {
			continue
		}
		next := r.Tiers[i+1]
		if next.Heads == nil {
			continue
		}
		out, in := inference.PerSample(h.Forward.Shape), inference.PerSample(next.Heads.Input.Shape)
		if inference.Elements(out) != inference.Elements(in) {
			errs = append(errs, fmt.Errorf("tier %q: forward output %q has shape %v, next tier %q input %q expects %v",
				tr.Name, h.Forward.Name, h.Forward.Shape, next.Name, next.Heads.Input.Name, next.Heads.Input.Shape))
		}
	}
	return errs
}

// CheckScores runs the pipeline's test set (eval.images and eval.labels)
// through the chain and returns ScoreWarnings; none without a test set.
// The chain must have passed Check.
func CheckScores(p *pipeline.Pipeline) ([]string, error) {
	if p.Eval.Images == "" || p.Eval.Labels == "" {
		return nil, nil
	}
	ds, err := LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		return nil, err
	}
	c, err := OpenChain(p)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ScoreWarnings(ds)
}

// Warnings is what `models check`, `models eval` and `ddnn up` warn about
// for a pipeline whose chain passed Check: CheckScores' warnings, and a
// test set that cannot be read as one more (it only adds warnings, so it
// must not stop a start).
func Warnings(p *pipeline.Pipeline) []string {
	warnings, err := CheckScores(p)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("scores not checked on the test set: %v", err))
	}
	return warnings
}

// probSumTolerance is how far from 1 a row of probabilities may sum.
const probSumTolerance = 1e-3

// ScoreWarnings runs ds through every tier and returns a warning for each
// exit head declared `scores: probabilities` whose rows on ds do not look
// like probabilities: a value outside [0, 1] or a sum off 1 by more than
// 1e-3. Such a head most likely emits logits, which the exit policy would
// then compare with its threshold as if they were probabilities.
func (c *Chain) ScoreWarnings(ds *Dataset) ([]string, error) {
	sc, err := c.score(ds)
	if err != nil {
		return nil, err
	}
	var warnings []string
	for i := range c.p.Tiers {
		t := &c.p.Tiers[i]
		if t.Exit.Scores != pipeline.ScoresProbabilities {
			continue
		}
		bad, first := 0, -1
		for j, row := range sc.scores[i] {
			if isProbabilities(row) {
				continue
			}
			bad++
			if first < 0 {
				first = j
			}
		}
		if bad == 0 {
			continue
		}
		row := sc.scores[i][first]
		sum := 0.0
		for _, v := range row {
			sum += float64(v)
		}
		warnings = append(warnings, fmt.Sprintf("tier %q: exit output %q is declared scores: probabilities, but %d of %d test-set rows are not probabilities (sample %d: min %.4g, max %.4g, sum %.4g); if the model emits logits, set scores: logits",
			t.Name, t.Exit.Output, bad, len(sc.scores[i]), first, slices.Min(row), slices.Max(row), sum))
	}
	return warnings, nil
}

// isProbabilities reports whether row's values lie in [0, 1] and sum to 1
// within probSumTolerance.
func isProbabilities(row []float32) bool {
	sum := 0.0
	for _, v := range row {
		if !(v >= 0 && v <= 1) {
			return false
		}
		sum += float64(v)
	}
	return math.Abs(sum-1) <= probSumTolerance
}

func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Print writes the report: each tier's model with its inputs and outputs, and
// the heads the pipeline uses.
func (r *Report) Print(w io.Writer) {
	for _, tr := range r.Tiers {
		if tr.Model == nil {
			fmt.Fprintf(w, "tier %s: model not readable\n", tr.Name)
			continue
		}
		fmt.Fprintf(w, "tier %s: %s\n", tr.Name, tr.Model.Path)
		for _, in := range tr.Model.Inputs {
			fmt.Fprintf(w, "  input   %s%s\n", in, role(tr, in.Name, true))
		}
		for _, out := range tr.Model.Outputs {
			fmt.Fprintf(w, "  output  %s%s\n", out, role(tr, out.Name, false))
		}
	}
}

func role(tr TierReport, name string, input bool) string {
	h := tr.Heads
	if h == nil {
		return ""
	}
	var roles []string
	switch {
	case input && h.Input.Name == name:
		roles = append(roles, "fed")
	case !input && h.Exit.Name == name:
		roles = append(roles, "exit head")
	case !input && h.Forward != nil && h.Forward.Name == name:
		roles = append(roles, "forward head")
	}
	if len(roles) == 0 {
		return ""
	}
	return "  <- " + strings.Join(roles, ", ")
}
