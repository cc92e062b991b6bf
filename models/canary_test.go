package models

import (
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestCheckCanary: a tier's candidate is checked as the tier's model, in
// the chain; one that does not fit is refused naming the canary.
func TestCheckCanary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model string
		wants []string // none: the check passes
	}{
		{"same graph as the current model", "../models/fog.onnx", nil},
		{"no forward output", "../models/cloud.onnx",
			[]string{`tier "fog" canary ../models/cloud.onnx: tier "fog": model`, `has no output "forward" for forward.output`}},
		{"missing file", "../models/nope.onnx", []string{`tier "fog" canary ../models/nope.onnx`, "nope.onnx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, "../deploy/pipeline.yaml")
			p.Tiers[1].Canary = &pipeline.Canary{Model: tc.model, Share: 0.1}
			_, err := Check(p)
			checkErr(t, err, tc.wants)
		})
	}
}

// TestSameForward: a candidate forwarding another shape or dtype than
// the current model is refused, naming both and the next tier.
func TestSameForward(t *testing.T) {
	cur := onnx.TensorInfo{Name: "forward", Shape: []int64{-1, 32}, DType: 1, Tensor: true}
	if err := sameForward(&cur, &cur, "fog"); err != nil {
		t.Fatalf("the current forward refused: %v", err)
	}
	for _, cand := range []onnx.TensorInfo{
		{Name: "forward", Shape: []int64{-1, 48}, DType: 1, Tensor: true},
		{Name: "forward", Shape: []int64{-1, 2, 16}, DType: 1, Tensor: true},
		{Name: "forward", Shape: []int64{-1, 32}, DType: 11, Tensor: true},
	} {
		err := sameForward(&cur, &cand, "fog")
		if err == nil {
			t.Errorf("forward %s accepted for %s", cand, cur)
			continue
		}
		for _, w := range []string{cand.String(), cur.String(), `next tier "fog"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q: %v", w, err)
			}
		}
	}
}

// TestCheckCanaryPair: an edge candidate forwarding another width than
// the current edge is refused unless the fog runs a candidate that reads
// it, with a share at least as large (each message's share is by its id,
// so every forward the edge candidate writes goes on to the fog's); that
// fog candidate, which reads none of the current edge's forwards, passes
// as the pair's.
func TestCheckCanaryPair(t *testing.T) {
	const w48 = "../models/testdata/rollout/"
	for _, tc := range []struct {
		name  string
		fog   *pipeline.Canary
		wants []string
	}{
		{"the fog's candidate reads it", &pipeline.Canary{Model: w48 + "fog-w48.onnx", Share: 0.2}, nil},
		{"no fog candidate", nil, []string{`tier "edge" canary`, `next tier "fog" input "features" expects [-1 32]`, `tier "fog" runs no canary that reads it`}},
		{"a smaller fog share", &pipeline.Canary{Model: w48 + "fog-w48.onnx", Share: 0.05},
			[]string{`tier "fog"'s canary takes a share of 0.05, less than 0.1`}},
		{"a fog candidate that does not read it", &pipeline.Canary{Model: w48 + "fog-retrained.onnx", Share: 0.2},
			[]string{`tier "fog"'s canary does not read it`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, "../deploy/pipeline.yaml")
			p.Tiers[0].Canary = &pipeline.Canary{Model: w48 + "edge-w48.onnx", Share: 0.1}
			p.Tiers[1].Canary = tc.fog
			_, err := Check(p)
			checkErr(t, err, tc.wants)
		})
	}
}

// checkErr: err is nil when wants is empty, else contains each of wants.
func checkErr(t *testing.T, err error, wants []string) {
	t.Helper()
	if len(wants) == 0 {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err == nil {
		t.Fatal("check passed")
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}
