package models

import (
	"fmt"
	"slices"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// checkCanaries checks each tier's canary (tiers[].canary) as the tier's
// model: the chain with the candidate in place of the current model must
// pass checkModels, and the candidate's forward output must have the
// current model's dtype and shape. The candidate's forwards go to the
// next tier's current replicas, so a candidate whose forward differs is
// refused: a model pair that must travel together is a rollout of both
// tiers, not a canary. r is the report of the current chain.
func checkCanaries(p *pipeline.Pipeline, r *Report) []error {
	var errs []error
	for i := range p.Tiers {
		t := &p.Tiers[i]
		if t.Canary == nil {
			continue
		}
		prefix := fmt.Sprintf("tier %q canary %s", t.Name, t.Canary.Model)
		view, err := p.CanaryView(t.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The other tiers' canaries are checked on their own.
		for j := range view.Tiers {
			view.Tiers[j].Canary = nil
		}
		cr, err := checkModels(view)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", prefix, err))
			continue
		}
		cur, cand := r.Tiers[i].Heads, cr.Tiers[i].Heads
		if cur == nil || cur.Forward == nil || cand.Forward == nil {
			continue // the current chain's own problem, or the last tier
		}
		if err := sameForward(cur.Forward, cand.Forward, p.Tiers[i+1].Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", prefix, err))
		}
	}
	return errs
}

// sameForward says whether a candidate's forward output cand is the
// current model's cur (dtype and shape; the name is the tier's
// forward.output for both), which the next tier reads.
func sameForward(cur, cand *onnx.TensorInfo, next string) error {
	if cur.DType == cand.DType && slices.Equal(cur.Shape, cand.Shape) {
		return nil
	}
	return fmt.Errorf("forward output %s differs from the current model's %s, which the next tier %q reads: a candidate must forward what the current model does (replace both tiers' models together instead)",
		cand, cur, next)
}
