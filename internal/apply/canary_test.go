package apply

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// sha is the sha256 prefix of the file at path.
func sha(t *testing.T, path string) string {
	t.Helper()
	s, err := onnx.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withFogCanary is the shipped pipeline with canary (a flow mapping) on
// the fog tier.
func withFogCanary(t *testing.T, y, canary string) string {
	t.Helper()
	out := strings.Replace(y, "  - name: fog\n", "  - name: fog\n    canary: "+canary+"\n", 1)
	if out == y {
		t.Fatal("no fog tier in the shipped pipeline")
	}
	return out
}

// TestCanaryLive: starting a canary, changing its share, shadow ratio or
// candidate and removing it are live; promoting it (the tier's model set
// to the candidate's, the canary removed) is a rollout of the tier and
// the canary's removal.
func TestCanaryLive(t *testing.T) {
	y := shipped(t)
	models := filepath.Join(testsupport.Root(t), "models")
	candidate := filepath.Join(models, "testdata", "rollout", "fog-retrained.onnx") // another sha256 than fog's, fits the chain
	edge := filepath.Join(models, "edge.onnx")
	moved := filepath.Join(t.TempDir(), "fog-retrained-copy.onnx")
	if b, err := os.ReadFile(candidate); err != nil || os.WriteFile(moved, b, 0o644) != nil {
		t.Fatal("copying the retrained fog model", err)
	}
	with := withFogCanary(t, y, "{model: "+candidate+", version: v2, share: 0.1}")
	for _, tc := range []struct {
		name          string
		from, to      string
		live, rollout []string
		old, new      string // of the first live change, when set
	}{
		{"add", y, with, []string{"tiers[1] (fog).canary"}, nil, "unset", "model " + candidate + "@v2, share 0.1, shadow_ratio 0.1"},
		{"share", with, strings.Replace(with, "share: 0.1", "share: 0.25", 1), []string{"tiers[1] (fog).canary.share"}, nil, "0.1", "0.25"},
		{"shadow ratio", with, strings.Replace(with, "share: 0.1", "share: 0.1, shadow_ratio: 1", 1), []string{"tiers[1] (fog).canary.shadow_ratio"}, nil, "0.1", "1"},
		{"candidate's version", with, strings.Replace(with, "version: v2", "version: v3", 1), []string{"tiers[1] (fog).canary.version"}, nil, "v2", "v3"},
		{"candidate's model", with, strings.Replace(with, candidate, edge, 1), []string{"tiers[1] (fog).canary.model"}, nil, "sha256 " + sha(t, candidate), "sha256 " + sha(t, edge) + " (" + edge + ")"},
		{"candidate moved", with, strings.Replace(with, candidate, moved, 1), nil, nil, "", ""},
		{"remove", with, y, []string{"tiers[1] (fog).canary"}, nil, "model " + candidate + "@v2, share 0.1, shadow_ratio 0.1", "unset"},
		{"promote", with, strings.Replace(y, "model: "+filepath.Join(models, "fog.onnx"), "model: "+candidate+"\n    version: v2", 1),
			[]string{"tiers[1] (fog).canary"}, []string{"tiers[1] (fog).model", "tiers[1] (fog).version"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Compute(spec(t, tc.from), spec(t, tc.to))
			if !plan.OK() {
				t.Fatalf("refused: %+v", plan.Refused)
			}
			if got := paths(plan.Live); !slices.Equal(got, tc.live) && len(got)+len(tc.live) > 0 {
				t.Errorf("live %v, want %v", got, tc.live)
			}
			var rolled []string
			for _, r := range plan.Rollouts {
				rolled = append(rolled, paths(r.Changes)...)
			}
			if !slices.Equal(rolled, tc.rollout) {
				t.Errorf("rollouts %v, want %v", rolled, tc.rollout)
			}
			if tc.old != "" && len(plan.Live) > 0 && (plan.Live[0].Old != tc.old || plan.Live[0].New != tc.new) {
				t.Errorf("%s: %q -> %q, want %q -> %q", plan.Live[0].Path, plan.Live[0].Old, plan.Live[0].New, tc.old, tc.new)
			}
		})
	}
}
