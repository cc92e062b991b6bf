package pipeline

import (
	"slices"
	"testing"
	"time"
)

// TestDiff: what differs, by YAML path, pointers by their values, inline
// sections under the same path.
func TestDiff(t *testing.T) {
	half, one := 0.5, 0.9
	type section struct {
		Exit `yaml:",inline"`
		Wait time.Duration `yaml:"max_wait"`
		List []string      `yaml:"list"`
	}
	for _, tc := range []struct {
		name     string
		old, new section
		want     []string
	}{
		{"equal", section{Wait: time.Second}, section{Wait: time.Second}, nil},
		{"equal thresholds at other addresses", section{Exit: Exit{Threshold: &half}}, section{Exit: Exit{Threshold: ptr(0.5)}}, nil},
		{"threshold", section{Exit: Exit{Threshold: &one}}, section{Exit: Exit{Threshold: &half}}, []string{"x.threshold: 0.9 -> 0.5"}},
		{"threshold set", section{}, section{Exit: Exit{Threshold: &half}}, []string{"x.threshold: unset -> 0.5"}},
		{"several", section{Wait: time.Second, List: []string{"a"}}, section{Exit: Exit{Policy: "entropy"}, List: []string{"b"}},
			[]string{`x.policy: "" -> entropy`, "x.max_wait: 1s -> 0s", "x.list: [a] -> [b]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range Diff("x", tc.old, tc.new) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestDiffLists: lists of sections compare element by element, named as
// validation names them; of different lengths, as a whole.
func TestDiffLists(t *testing.T) {
	a := []Tier{{Name: "edge", Model: "e.onnx"}, {Name: "fog", Model: "f.onnx"}}
	b := []Tier{{Name: "edge", Model: "e.onnx"}, {Name: "fog", Model: "g.onnx"}}
	got := Diff("tiers", a, b)
	if len(got) != 1 || got[0].String() != "tiers[1] (fog).model: f.onnx -> g.onnx" {
		t.Errorf("got %v", got)
	}
	if got := Diff("tiers", a, a[:1]); len(got) != 1 || got[0].String() != "tiers: 2 entries -> 1 entries" {
		t.Errorf("got %v", got)
	}
}
