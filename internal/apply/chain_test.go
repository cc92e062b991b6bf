package apply

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestBrokenChainRefused: a plan that gives a tier a model that does not
// fit the chain (a fog that takes 20 features after an edge that forwards
// 32) refuses that model change with the chain check's reason, naming
// both tiers and both shapes; so does an edge whose forward no longer fits
// the running fog; a model that fits rolls out.
func TestBrokenChainRefused(t *testing.T) {
	y := shipped(t)
	models := filepath.Join(testsupport.Root(t), "models")
	rollout := filepath.Join(models, "testdata", "rollout")
	running := spec(t, y)
	for _, tc := range []struct {
		name, tier, model string
		refused           []string
		reason            string
	}{
		{"fog input 20", "fog", "fog-in20.onnx", []string{"tiers[1] (fog).model"},
			`tier "edge": forward output "forward" has shape [-1 32], next tier "fog" input "features" expects [-1 20]`},
		{"edge forward 48", "edge", "edge-w48.onnx", []string{"tiers[0] (edge).model"},
			`tier "edge": forward output "forward" has shape [-1 48], next tier "fog" input "features" expects [-1 32]`},
		{"retrained fog", "fog", "fog-retrained.onnx", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := strings.Replace(y, filepath.Join(models, tc.tier+".onnx"), filepath.Join(rollout, tc.model), 1)
			plan := Compute(running, spec(t, next))
			if len(plan.Rollouts) != 1 || plan.Rollouts[0].Tier != tc.tier {
				t.Errorf("rollouts %+v, want the %s tier's", plan.Rollouts, tc.tier)
			}
			if !slices.Equal(paths(plan.Refused), tc.refused) {
				t.Fatalf("refused %+v, want %v", plan.Refused, tc.refused)
			}
			if tc.reason == "" {
				return
			}
			if why := plan.Refused[0].Reason; !strings.HasPrefix(why, chainReason) || !strings.Contains(why, tc.reason) {
				t.Errorf("reason %q, want the chain check's: %s", why, tc.reason)
			}
		})
	}
}
