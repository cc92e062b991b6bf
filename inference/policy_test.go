package inference

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

func TestPolicyDecide(t *testing.T) {
	confident := []float32{0.02, 0.9, 0.08}
	unsure := []float32{0.4, 0.35, 0.25}
	for _, tc := range []struct {
		name      string
		policy    Policy
		scores    []float32
		exit      bool
		class     int
		score     float64
		tolerance float64
	}{
		{"max_prob above", Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.85}, confident, true, 1, 0.9, 1e-6},
		{"max_prob equal exits", Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.5}, []float32{0.5, 0.5}, true, 0, 0.5, 0},
		{"max_prob below", Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.85}, unsure, false, 0, 0.4, 1e-6},
		{"margin above", Policy{Kind: pipeline.PolicyMargin, Threshold: 0.8}, confident, true, 1, 0.82, 1e-6},
		{"margin below", Policy{Kind: pipeline.PolicyMargin, Threshold: 0.1}, unsure, false, 0, 0.05, 1e-6},
		{"entropy certain", Policy{Kind: pipeline.PolicyEntropy, Threshold: 0.1}, []float32{0, 1, 0}, true, 1, 0, 1e-12},
		{"entropy uniform", Policy{Kind: pipeline.PolicyEntropy, Threshold: 0.99}, []float32{0.25, 0.25, 0.25, 0.25}, false, 0, 1, 1e-9},
		{"entropy confident", Policy{Kind: pipeline.PolicyEntropy, Threshold: 0.5}, confident, true, 1,
			-(0.02*math.Log(0.02) + 0.9*math.Log(0.9) + 0.08*math.Log(0.08)) / math.Log(3), 1e-6},
		{"logits softmaxed", Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.7, Logits: true}, []float32{0, 2, 0}, true, 1,
			math.Exp(2) / (math.Exp(2) + 2), 1e-6},
		{"logits large stay finite", Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.99, Logits: true}, []float32{1000, -1000, 0}, true, 0, 1, 1e-9},
		{"last tier always exits", Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.99, Always: true}, unsure, true, 0, 0.4, 1e-6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.policy.Decide(tc.scores, nil)
			if v.Exit != tc.exit || v.Class != tc.class || math.Abs(v.Score-tc.score) > tc.tolerance {
				t.Errorf("Decide = %+v, want exit %v class %d score %v", v, tc.exit, tc.class, tc.score)
			}
		})
	}
}

// TestPolicyScratchIsNotShared checks that decisions made with one scratch
// buffer don't leak into each other.
func TestPolicyScratchIsNotShared(t *testing.T) {
	p := Policy{Kind: pipeline.PolicyMaxProb, Threshold: 0.5, Logits: true}
	scratch := make([]float64, 16)
	a := p.Decide([]float32{5, 0, 0}, scratch)
	b := p.Decide([]float32{0, 0, 5}, scratch)
	if a.Class != 0 || b.Class != 2 {
		t.Errorf("classes %d, %d; want 0, 2", a.Class, b.Class)
	}
}

func TestPolicyCheckScores(t *testing.T) {
	probs := Policy{Kind: pipeline.PolicyMaxProb}
	logits := Policy{Kind: pipeline.PolicyMaxProb, Logits: true}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name   string
		policy Policy
		scores []float32
		want   string // "" for usable
		notP   bool   // wraps ErrNotProbabilities
	}{
		{"probabilities", probs, []float32{0, 0.25, 0.75, 1}, "", false},
		{"one ulp above one, rounding", probs, []float32{math.Nextafter32(1, 2), 0}, "", false},
		{"a rounding below zero", probs, []float32{-1e-7, 1}, "", false},
		{"just past rounding", probs, []float32{1.001, 0}, "class 0 has 1.001, outside [0, 1]", true},
		{"negative", probs, []float32{0.5, -0.25}, "class 1 has -0.25, outside [0, 1]", true},
		{"above one", probs, []float32{1.5, 0}, "class 0 has 1.5, outside [0, 1]", true},
		{"NaN probability", probs, []float32{0.5, nan}, "element 1 is NaN", false},
		{"logits", logits, []float32{-30, 2, 1e30}, "", false},
		{"+Inf logit", logits, []float32{0, float32(math.Inf(1))}, "element 1 is +Inf", false},
		{"-Inf logit", logits, []float32{float32(math.Inf(-1)), 0}, "element 0 is -Inf", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.CheckScores(tc.scores)
			if tc.want == "" {
				if err != nil {
					t.Errorf("CheckScores = %v, want nil", err)
				}
				if v := tc.policy.Decide(tc.scores, nil); v.Confidence < 0 || v.Confidence > 1 {
					t.Errorf("confidence %v outside [0, 1]", v.Confidence)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotProbabilities) != tc.notP {
				t.Errorf("CheckScores = %v, want %q (not probabilities: %v)", err, tc.want, tc.notP)
			}
		})
	}
}
