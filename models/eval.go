package models

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Chain is every tier of a pipeline loaded, as inference functions.
type Chain struct {
	p        *pipeline.Pipeline
	sessions []*inference.Session
	funcs    []*inference.Function
	policies []inference.Policy
}

// OpenChain loads every tier's model (onnx.Init must have succeeded).
func OpenChain(p *pipeline.Pipeline) (*Chain, error) {
	c := &Chain{p: p}
	for i := range p.Tiers {
		t := &p.Tiers[i]
		s, err := inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: t.Inference.IntraOpThreads})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.sessions = append(c.sessions, s)
		f, err := inference.New(inference.Config{Pipeline: p, Tier: t.Name})
		if err == nil {
			err = f.SetSession(s)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		c.funcs = append(c.funcs, f)
		pol, err := inference.NewPolicy(t.Exit, p.Last(i))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.policies = append(c.policies, pol)
	}
	return c, nil
}

// Close releases the sessions.
func (c *Chain) Close() {
	for _, s := range c.sessions {
		s.Close()
	}
}

// TierResult is one tier's share of an evaluation.
type TierResult struct {
	Name   string `json:"name"`
	Policy string `json:"policy"`
	// Threshold is nil on the last tier, which always exits.
	Threshold *float64 `json:"threshold,omitempty"`
	Exited    int      `json:"exited"`
	ExitRatio float64  `json:"exit_ratio"`
	// Refused counts the samples the tier's function rejected, as the
	// pipeline would dead-letter them: a model output that is not finite,
	// or an exit score outside [0, 1] from a head declared probabilities.
	Refused int `json:"refused"`
	// Accuracy is over the samples that exited at this tier.
	Accuracy float64 `json:"accuracy"`
	correct  int
}

// Result is an evaluation of the whole chain.
type Result struct {
	// Transform is the spec the test set was transformed with (see
	// Transform), empty when it was used as loaded.
	Transform string  `json:"transform,omitempty"`
	Samples   int     `json:"samples"`
	Accuracy  float64 `json:"accuracy"`
	// EarlyExitRatio is the share of samples that exited before the last tier.
	EarlyExitRatio float64      `json:"early_exit_ratio"`
	Tiers          []TierResult `json:"tiers"`
	// Refused counts samples some tier rejected (see TierResult.Refused);
	// they count as wrong in Accuracy.
	Refused int `json:"refused"`
	// Warnings are ScoreWarnings on the same test set, and the first
	// reason a tier refused a sample for.
	Warnings []string `json:"warnings,omitempty"`
	// Decisions is each sample's exit, in test-set order.
	Decisions []Decision `json:"decisions,omitempty"`
	// LastTierAccuracy is the accuracy with every sample sent on to the
	// last tier (no early exit), when asked for (LastTier).
	LastTierAccuracy *float64 `json:"last_tier_accuracy,omitempty"`
}

// Decision is where one sample exited and with which class; a refused
// sample has the refusing tier, class -1 and the reason.
type Decision struct {
	Tier    string `json:"tier"`
	Class   int    `json:"class"`
	Refused string `json:"refused,omitempty"`
}

// evalBatch is how many messages Eval hands a tier at once.
const evalBatch = 256

// Messages turns a dataset into the messages a device would send: uint8
// samples as bytes, or as float32 values when the pipeline's input.dtype is
// float32; float32 samples unchanged, which needs input.dtype float32. The
// first tier then applies input.scale to them as to any device's sample.
// Every label must name one of the pipeline's classes.
func Messages(p *pipeline.Pipeline, ds *Dataset) ([]wire.Message, error) {
	want := elements(p.Input.Shape)
	if have := elements(ds.Shape); have != want {
		return nil, fmt.Errorf("test set samples have shape %v (%d elements), pipeline input.shape %v has %d", ds.Shape, have, p.Input.Shape, want)
	}
	if ds.DType == wire.Float32 && p.Input.DType != wire.Float32 {
		return nil, fmt.Errorf("test set samples are float32, pipeline input.dtype is %s: devices would send bytes; use a uint8 test set or input.dtype float32", p.Input.DType)
	}
	for i, l := range ds.Labels {
		if l >= len(p.Classes) {
			return nil, fmt.Errorf("test set label %d is %d, but the pipeline's classes are 0 to %d", i, l, len(p.Classes)-1)
		}
	}
	msgs := make([]wire.Message, len(ds.Samples))
	for i, s := range ds.Samples {
		if len(s) != want*ds.DType.Size() {
			return nil, fmt.Errorf("test set sample %d has %d bytes, want %d %s elements", i, len(s), want, ds.DType)
		}
		t := wire.Tensor{DType: ds.DType, Shape: p.Input.Shape, Data: s}
		if ds.DType == wire.Uint8 && p.Input.DType == wire.Float32 {
			v := make([]float32, len(s))
			for j, b := range s {
				v[j] = float32(b)
			}
			t = wire.Float32Tensor(p.Input.Shape, v)
		}
		msgs[i] = wire.Message{ID: strconv.Itoa(i), Tensor: t}
	}
	return msgs, nil
}

// Eval runs ds through the chain as the pipeline does: each tier's inference
// function decides per sample, forwarded tensors go to the next tier, and
// a sample a function rejects is counted as refused (the pipeline would
// dead-letter it). The result carries ScoreWarnings for the same test set.
func (c *Chain) Eval(ds *Dataset) (*Result, error) {
	msgs, err := Messages(c.p, ds)
	if err != nil {
		return nil, err
	}
	warnings, err := c.ScoreWarnings(ds)
	if err != nil {
		return nil, err
	}
	res := &Result{Samples: len(msgs), Decisions: make([]Decision, len(msgs)), Warnings: warnings}
	correct := 0
	for i, f := range c.funcs {
		t := &c.p.Tiers[i]
		tr := TierResult{Name: t.Name, Policy: t.Exit.Policy}
		if !c.p.Last(i) {
			tr.Threshold = t.Exit.Threshold
		}
		var next []wire.Message
		for start := 0; start < len(msgs); start += evalBatch {
			batch := msgs[start:min(start+evalBatch, len(msgs))]
			ds2, rej, err := f.Infer(c.sessions[i], batch)
			if err != nil {
				return nil, err
			}
			refused := make(map[int]string, len(rej))
			for _, r := range rej {
				refused[r.Index] = r.Reason
			}
			for j, d := range ds2 {
				if why, ok := refused[j]; ok {
					if tr.Refused == 0 {
						res.Warnings = append(res.Warnings, fmt.Sprintf("tier %q refused samples, as the pipeline would dead-letter them; the first (sample %s): %s", t.Name, batch[j].ID, why))
					}
					tr.Refused++
					idx, _ := strconv.Atoi(batch[j].ID)
					res.Decisions[idx] = Decision{Tier: t.Name, Class: -1, Refused: why}
					continue
				}
				if d.Exit {
					tr.Exited++
					idx, _ := strconv.Atoi(batch[j].ID)
					res.Decisions[idx] = Decision{Tier: t.Name, Class: d.Class}
					if d.Class == ds.Labels[idx] {
						tr.correct++
					}
					continue
				}
				next = append(next, wire.Message{ID: batch[j].ID, Tensor: *d.Forward})
			}
		}
		correct += tr.correct
		res.Refused += tr.Refused
		res.Tiers = append(res.Tiers, tr)
		msgs = next
	}
	if len(msgs) != 0 {
		return nil, errors.New("samples left after the last tier")
	}
	res.finish(correct)
	return res, nil
}

func (r *Result) finish(correct int) {
	if r.Samples == 0 {
		return
	}
	r.Accuracy = float64(correct) / float64(r.Samples)
	early := 0
	for i := range r.Tiers {
		t := &r.Tiers[i]
		t.ExitRatio = float64(t.Exited) / float64(r.Samples)
		if t.Exited > 0 {
			t.Accuracy = float64(t.correct) / float64(t.Exited)
		}
		if i < len(r.Tiers)-1 {
			early += t.Exited
		}
	}
	r.EarlyExitRatio = float64(early) / float64(r.Samples)
}

// Print writes the result as a table, a refused column when some tier
// refused samples, and each warning on a line of its own.
func (r *Result) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	refused := ""
	if r.Refused > 0 {
		refused = "refused\t"
	}
	if r.Transform != "" {
		fmt.Fprintf(w, "test set transformed: %s\n", r.Transform)
	}
	fmt.Fprintln(tw, "tier\tpolicy\tthreshold\texited\texit ratio\taccuracy\t"+refused)
	for _, t := range r.Tiers {
		th, pol := "-", "always"
		if t.Threshold != nil {
			th, pol = strconv.FormatFloat(*t.Threshold, 'f', -1, 64), t.Policy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.3f\t%.4f\t", t.Name, pol, th, t.Exited, t.ExitRatio, t.Accuracy)
		if r.Refused > 0 {
			fmt.Fprintf(tw, "%d\t", t.Refused)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintf(w, "samples %d, accuracy %.4f, exited before the last tier %.1f%%", r.Samples, r.Accuracy, 100*r.EarlyExitRatio)
	if r.Refused > 0 {
		fmt.Fprintf(w, ", refused %d (the pipeline would dead-letter them)", r.Refused)
	}
	fmt.Fprintln(w)
	if r.LastTierAccuracy != nil {
		fmt.Fprintf(w, "every sample sent to the last tier: accuracy %.4f\n", *r.LastTierAccuracy)
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
}

// scored holds every tier's verdict inputs for every sample, computed once so
// a sweep can try thresholds without running the models again.
type scored struct {
	labels []int
	// scores[tier][sample] is that tier's exit scores for the sample.
	scores [][][]float32
}

// score runs every sample through every tier, forwarded or not.
func (c *Chain) score(ds *Dataset) (*scored, error) {
	msgs, err := Messages(c.p, ds)
	if err != nil {
		return nil, err
	}
	sc := &scored{labels: ds.Labels, scores: make([][][]float32, len(c.sessions))}
	scale := float32(c.p.Input.Scale)
	var in []float32
	// inputs[j] is sample j's input to the current tier.
	inputs := make([][]float32, len(msgs))
	for j := range msgs {
		inputs[j] = msgs[j].Tensor.AppendFloat32s(nil, scale)
	}
	for i, s := range c.sessions {
		sc.scores[i] = make([][]float32, len(msgs))
		for start := 0; start < len(msgs); start += evalBatch {
			end := min(start+evalBatch, len(msgs))
			in = in[:0]
			for j := start; j < end; j++ {
				in = append(in, inputs[j]...)
			}
			out, err := s.Run(in, end-start)
			if err != nil {
				return nil, err
			}
			for j := start; j < end; j++ {
				k := j - start
				sc.scores[i][j] = out.Exit[k*s.Classes : (k+1)*s.Classes]
				if s.ForwardLen > 0 {
					inputs[j] = out.Forward[k*s.ForwardLen : (k+1)*s.ForwardLen]
				}
			}
		}
	}
	return sc, nil
}

// simulate applies policies to pre-computed scores, refusing what the
// functions refuse on exit scores (a forward that is not finite shows up
// as the next tier's scores).
func (sc *scored) simulate(tiers []*pipeline.Tier, policies []inference.Policy) *Result {
	res := &Result{Samples: len(sc.labels)}
	for i, t := range tiers {
		tr := TierResult{Name: t.Name, Policy: policies[i].Kind}
		if !policies[i].Always {
			th := policies[i].Threshold
			tr.Threshold = &th
		}
		res.Tiers = append(res.Tiers, tr)
	}
	correct := 0
	var scratch [64]float64
	for j, label := range sc.labels {
		for i, pol := range policies {
			if pol.CheckScores(sc.scores[i][j]) != nil {
				// Refused by the function, as in Eval.
				res.Tiers[i].Refused++
				res.Refused++
				break
			}
			v := pol.Decide(sc.scores[i][j], scratch[:])
			if !v.Exit {
				continue
			}
			res.Tiers[i].Exited++
			if v.Class == label {
				res.Tiers[i].correct++
				correct++
			}
			break
		}
	}
	res.finish(correct)
	return res
}

// SweepRow is the chain's result with one tier's threshold changed.
type SweepRow struct {
	Threshold      float64 `json:"threshold"`
	TierExitRatio  float64 `json:"tier_exit_ratio"`
	TierAccuracy   float64 `json:"tier_accuracy"`
	Accuracy       float64 `json:"accuracy"`
	EarlyExitRatio float64 `json:"early_exit_ratio"`
}

// SweepTier is the sweep of one tier's threshold, the others as shipped.
type SweepTier struct {
	Name   string     `json:"name"`
	Policy string     `json:"policy"`
	Rows   []SweepRow `json:"rows"`
}

// SweepGrid is the thresholds a sweep tries.
var SweepGrid = []float64{0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99}

// Sweep varies each early tier's threshold over SweepGrid while the other
// tiers keep the shipped ones, and reports accuracy against exit ratio.
func (c *Chain) Sweep(ds *Dataset) ([]SweepTier, error) {
	sc, err := c.score(ds)
	if err != nil {
		return nil, err
	}
	tiers := make([]*pipeline.Tier, len(c.p.Tiers))
	for i := range tiers {
		tiers[i] = &c.p.Tiers[i]
	}
	var out []SweepTier
	for i := 0; i < len(tiers)-1; i++ {
		st := SweepTier{Name: tiers[i].Name, Policy: c.policies[i].Kind}
		for _, th := range SweepGrid {
			pols := append([]inference.Policy(nil), c.policies...)
			pols[i].Threshold = th
			r := sc.simulate(tiers, pols)
			st.Rows = append(st.Rows, SweepRow{
				Threshold:      th,
				TierExitRatio:  r.Tiers[i].ExitRatio,
				TierAccuracy:   r.Tiers[i].Accuracy,
				Accuracy:       r.Accuracy,
				EarlyExitRatio: r.EarlyExitRatio,
			})
		}
		out = append(out, st)
	}
	return out, nil
}

// LastTier is the chain's result with every sample sent on to the last
// tier: no tier before it exits. Samples a tier's function would refuse
// count as wrong, as in Eval.
func (c *Chain) LastTier(ds *Dataset) (*Result, error) {
	sc, err := c.score(ds)
	if err != nil {
		return nil, err
	}
	tiers := make([]*pipeline.Tier, len(c.p.Tiers))
	pols := append([]inference.Policy(nil), c.policies...)
	for i := range tiers {
		tiers[i] = &c.p.Tiers[i]
		if !pols[i].Always {
			pols[i].Threshold = neverExit(pols[i].Kind)
		}
	}
	return sc.simulate(tiers, pols), nil
}

// neverExit is the threshold at which a policy of kind lets no sample exit:
// scores of max_prob and margin are at most 1, entropies at least 0.
func neverExit(kind string) float64 {
	if kind == pipeline.PolicyEntropy {
		return math.Inf(-1)
	}
	return math.Inf(1)
}

// PrintSweep writes sweep tables, one per tier.
func PrintSweep(w io.Writer, sweep []SweepTier) {
	for _, st := range sweep {
		fmt.Fprintf(w, "tier %s (%s), other tiers as shipped:\n", st.Name, st.Policy)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "threshold\ttier exit ratio\ttier accuracy\tearly exit ratio\taccuracy\t")
		for _, r := range st.Rows {
			fmt.Fprintf(tw, "%g\t%.3f\t%.4f\t%.3f\t%.4f\t\n", r.Threshold, r.TierExitRatio, r.TierAccuracy, r.EarlyExitRatio, r.Accuracy)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
}
