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
// current model's dtype and shape, which the next tier's current model
// reads, unless the next tier runs a candidate that reads it (the chain
// with both candidates passes) with a share at least as large: a
// message's share is by its id, the same at every tier, so each message
// the candidate decides and forwards goes on to the next tier's
// candidate. r is the report of the current chain.
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
		if err == nil {
			cur, cand := r.Tiers[i].Heads, cr.Tiers[i].Heads
			if cur == nil || cur.Forward == nil || cand.Forward == nil {
				continue // the current chain's own problem, or the last tier
			}
			err = sameForward(cur.Forward, cand.Forward, p.Tiers[i+1].Name)
		}
		if err == nil || pairs(p, i) {
			continue
		}
		if i+1 < len(p.Tiers) {
			if nextErr := nextCandidateReads(p, i); nextErr != nil {
				err = fmt.Errorf("%w; and %w", err, nextErr)
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", prefix, err))
	}
	return errs
}

// pairs says whether the candidate of tier i travels with the previous or
// the next tier's candidate: it reads what the previous one forwards, or
// the next one reads what it forwards and takes every message it does.
func pairs(p *pipeline.Pipeline, i int) bool {
	if i > 0 && p.Tiers[i-1].Canary != nil && nextCandidateReads(p, i-1) == nil {
		return true
	}
	return i+1 < len(p.Tiers) && nextCandidateReads(p, i) == nil
}

// sameForward says whether a candidate's forward output cand is the
// current model's cur (dtype and shape; the name is the tier's
// forward.output for both), which the next tier reads.
func sameForward(cur, cand *onnx.TensorInfo, next string) error {
	if cur.DType == cand.DType && slices.Equal(cur.Shape, cand.Shape) {
		return nil
	}
	return fmt.Errorf("forward output %s differs from the current model's %s, which the next tier %q reads", cand, cur, next)
}

// pairView is p as the candidates of tiers i and i+1 see it: both in
// place of their tiers' models, no other canary.
func pairView(p *pipeline.Pipeline, i int) (*pipeline.Pipeline, error) {
	view, err := p.CanaryView(p.Tiers[i].Name)
	if err == nil {
		view, err = view.CanaryView(p.Tiers[i+1].Name)
	}
	if err != nil {
		return nil, err
	}
	for j := range view.Tiers {
		view.Tiers[j].Canary = nil
	}
	return view, nil
}

// nextCandidateReads says why the candidate of tier i cannot hand its
// forwards to the next tier's candidate: the next tier runs none, one with
// a smaller share (a message's share is by its id, the same at every
// tier), or one whose model does not read them. nil when it can.
func nextCandidateReads(p *pipeline.Pipeline, i int) error {
	t, next := &p.Tiers[i], &p.Tiers[i+1]
	switch {
	case next.Canary == nil:
		return fmt.Errorf("tier %q runs no canary that reads it (replace both tiers' models together, or run a canary of %q with one that does)", next.Name, next.Name)
	case next.Canary.Share < t.Canary.Share:
		return fmt.Errorf("tier %q's canary takes a share of %g, less than %g: some of the forwards would reach its current model", next.Name, next.Canary.Share, t.Canary.Share)
	}
	view, err := pairView(p, i)
	if err != nil {
		return err
	}
	if _, err := checkModels(view); err != nil {
		return fmt.Errorf("tier %q's canary does not read it: %w", next.Name, err)
	}
	return nil
}
