package pipeline

import (
	"strings"
	"testing"
)

const canaryBase = "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\n" +
	"tiers:\n  - {name: a, model: a.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}, canary: %s}\n" +
	"  - {name: b, model: b.onnx, exit: {output: o}}\n"

func parseCanary(t *testing.T, canary string) (*Pipeline, error) {
	t.Helper()
	return Parse([]byte(strings.Replace(canaryBase, "%s", canary, 1)))
}

func TestCanaryDefaultsAndView(t *testing.T) {
	p, err := parseCanary(t, "{model: a2.onnx, version: v2, share: 0.1}")
	if err != nil {
		t.Fatal(err)
	}
	c := p.Tiers[0].Canary
	if c == nil || c.Model != "a2.onnx" || c.Version != "v2" || c.Share != 0.1 || c.ShadowRatio != DefaultCanaryShadowRatio {
		t.Fatalf("canary = %+v, want a2.onnx v2 share 0.1 shadow_ratio %v", c, DefaultCanaryShadowRatio)
	}
	v, err := p.CanaryView("a")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Tiers[0]; got.Model != "a2.onnx" || got.Version != "v2" || got.Canary != nil {
		t.Errorf("view's tier = model %q version %q canary %v, want a2.onnx v2 none", got.Model, got.Version, got.Canary)
	}
	if p.Tiers[0].Model != "a.onnx" || p.Tiers[0].Canary == nil {
		t.Error("the view changed the pipeline")
	}
	if _, err := v.CanaryView("b"); err == nil || !strings.Contains(err.Error(), `tier "b" has no canary`) {
		t.Errorf("view of a tier without canary: %v", err)
	}
	z, err := parseCanary(t, "{model: a2.onnx, share: 0.5, shadow_ratio: 0}")
	if err != nil {
		t.Fatal(err)
	}
	if z.Tiers[0].Canary.ShadowRatio != 0 {
		t.Errorf("an explicit shadow_ratio 0 became %v", z.Tiers[0].Canary.ShadowRatio)
	}
}

func TestCanaryInvalid(t *testing.T) {
	for _, tc := range []struct{ name, canary, want string }{
		{"no model", "{share: 0.1}", "tiers[0] (a).canary.model: required"},
		{"share 0", "{model: m.onnx, share: 0}", "tiers[0] (a).canary.share: 0 must be in (0, 1)"},
		{"share 1", "{model: m.onnx, share: 1}", "tiers[0] (a).canary.share: 1 must be in (0, 1)"},
		{"share left out", "{model: m.onnx}", "tiers[0] (a).canary.share: 0 must be in (0, 1)"},
		{"shadow ratio over 1", "{model: m.onnx, share: 0.1, shadow_ratio: 2}", "tiers[0] (a).canary.shadow_ratio: 2 must be in [0, 1]"},
		{"bad version", "{model: m.onnx, share: 0.1, version: v 2}", `tiers[0] (a).canary.version: version "v 2"`},
		{"unknown key", "{model: m.onnx, share: 0.1, weight: 3}", "tiers[0] (a).canary.weight: unknown field"},
		{"not on process replicas", "{model: m.onnx, share: 0.1}, replicas: {runtime: docker}", "tiers[0] (a).canary: a canary runs on replicas.runtime process only, not docker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCanary(t, tc.canary)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCanaryString(t *testing.T) {
	for _, tc := range []struct {
		c    *Canary
		want string
	}{
		{&Canary{Model: "m.onnx", Version: "v2", Share: 0.1, ShadowRatio: 0.2}, "model m.onnx@v2, share 0.1, shadow_ratio 0.2"},
		{&Canary{Model: "m.onnx", Share: 0.5}, "model m.onnx, share 0.5, shadow_ratio 0"},
		{nil, "unset"},
	} {
		if got := FormatSetting(tc.c); got != tc.want {
			t.Errorf("FormatSetting(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}
