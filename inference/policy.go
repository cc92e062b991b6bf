package inference

import (
	"errors"
	"fmt"
	"math"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Policy decides, for one sample's exit scores, whether the sample leaves at
// this tier. Decisions are always per sample.
type Policy struct {
	// Kind is pipeline.PolicyMaxProb, PolicyEntropy or PolicyMargin.
	Kind string
	// Threshold is the policy's bound.
	Threshold float64
	// Logits makes Decide apply a softmax to the scores first.
	Logits bool
	// Always makes every sample exit (the last tier).
	Always bool
}

// NewPolicy builds the policy of a tier; the last tier always exits.
func NewPolicy(e pipeline.Exit, last bool) (Policy, error) {
	p := Policy{
		Kind:      e.Policy,
		Threshold: e.ThresholdOr(0),
		Logits:    e.Scores == pipeline.ScoresLogits,
		Always:    last,
	}
	switch p.Kind {
	case pipeline.PolicyMaxProb, pipeline.PolicyEntropy, pipeline.PolicyMargin:
	default:
		return Policy{}, fmt.Errorf("unknown exit policy %q", p.Kind)
	}
	return p, nil
}

// Verdict is a policy's answer for one sample.
type Verdict struct {
	Exit  bool
	Class int
	// Confidence is the top-1 probability.
	Confidence float32
	// Score is the value compared with the threshold: top-1 probability,
	// normalized entropy or margin, by policy.
	Score float64
}

// Decide applies the policy to one sample's class scores. scratch, if it has
// room for len(scores) values, avoids an allocation when scores are logits.
func (p Policy) Decide(scores []float32, scratch []float64) Verdict {
	probs := scratch[:0]
	if cap(probs) < len(scores) {
		probs = make([]float64, 0, len(scores))
	}
	probs = probs[:len(scores)]
	if p.Logits {
		softmax(scores, probs)
	} else {
		for i, s := range scores {
			probs[i] = float64(s)
		}
	}
	top1, top2 := -1, -1
	for i, v := range probs {
		switch {
		case top1 < 0 || v > probs[top1]:
			top2, top1 = top1, i
		case top2 < 0 || v > probs[top2]:
			top2 = i
		}
	}
	v := Verdict{Class: top1, Confidence: float32(probs[top1])}
	switch p.Kind {
	case pipeline.PolicyMaxProb:
		v.Score = probs[top1]
		v.Exit = v.Score >= p.Threshold
	case pipeline.PolicyMargin:
		second := 0.0
		if top2 >= 0 {
			second = probs[top2]
		}
		v.Score = probs[top1] - second
		v.Exit = v.Score >= p.Threshold
	case pipeline.PolicyEntropy:
		v.Score = NormalizedEntropy(probs)
		v.Exit = v.Score <= p.Threshold
	}
	if p.Always {
		v.Exit = true
	}
	return v
}

// NormalizedEntropy is -Σp·log p / log C, in [0, 1] for a distribution over C
// classes: 0 when one class has all the mass, 1 when uniform.
func NormalizedEntropy(probs []float64) float64 {
	if len(probs) < 2 {
		return 0
	}
	h := 0.0
	for _, p := range probs {
		if p > 0 {
			h -= p * math.Log(p)
		}
	}
	return h / math.Log(float64(len(probs)))
}

// softmax writes the softmax of logits to out, stable against overflow.
func softmax(logits []float32, out []float64) {
	maxv := math.Inf(-1)
	for _, l := range logits {
		maxv = math.Max(maxv, float64(l))
	}
	sum := 0.0
	for i, l := range logits {
		out[i] = math.Exp(float64(l) - maxv)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
}

// ErrNotProbabilities marks exit scores of a head declared probabilities
// that lie outside [0, 1]: the head most likely emits logits.
var ErrNotProbabilities = errors.New("not probabilities")

// probSlack is how far outside [0, 1] a probability may lie from float32
// rounding alone (a softmax of a confident sample can give 1 + 1 ulp).
const probSlack = 1e-5

// CheckScores says why one sample's exit scores cannot be decided on, or
// nil when they can: a value that is not finite (the record drove the
// model out of range) or, for a head declared probabilities, a value
// outside [0, 1] by more than rounding (wrapping ErrNotProbabilities).
// Values outside it by rounding alone are clamped into it, in place. A
// verdict is only made from scores that pass, so its Confidence always
// lies in [0, 1].
func (p Policy) CheckScores(scores []float32) error {
	if i, name, ok := nonFinite(scores); ok {
		return fmt.Errorf("element %d is %s", i, name)
	}
	if p.Logits {
		return nil
	}
	for i, s := range scores {
		if s < -probSlack || s > 1+probSlack {
			return fmt.Errorf("class %d has %.4g, outside [0, 1]: %w", i, s, ErrNotProbabilities)
		}
	}
	for i, s := range scores {
		scores[i] = min(max(s, 0), 1)
	}
	return nil
}

// nonFinite finds the first NaN or ±Inf of v.
func nonFinite(v []float32) (int, string, bool) {
	for i, x := range v {
		f := float64(x)
		switch {
		case math.IsNaN(f):
			return i, "NaN", true
		case math.IsInf(f, 1):
			return i, "+Inf", true
		case math.IsInf(f, -1):
			return i, "-Inf", true
		}
	}
	return 0, "", false
}
