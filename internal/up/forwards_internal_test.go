package up

import (
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/process"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestPlanForwards: a rollout keeps every forward readable or is refused
// before anything changes. A tier whose new model does not read the
// running previous model's forwards serves with its old replicas beside
// the new ones, when the previous tier rolls out with it on the site.
func TestPlanForwards(t *testing.T) {
	model := func(sha, version string, input, forward int, accepts ...string) tierModel {
		return tierModel{version: wire.ModelVersion{SHA: sha, Version: version}, input: input, forward: forward, accepts: accepts}
	}
	// The running chain: edge writes 32 per sample, fog reads 32 and
	// writes 16, cloud reads 16.
	running := map[string]tierModel{
		"edge":  model("aaaaaaaaaaaa", "v1", 784, 32),
		"fog":   model("bbbbbbbbbbbb", "v1", 32, 16),
		"cloud": model("cccccccccccc", "", 16, 0),
	}
	with := func(changes map[string]tierModel) map[string]tierModel {
		out := map[string]tierModel{}
		for k, v := range running {
			out[k] = v
		}
		for k, v := range changes {
			out[k] = v
		}
		return out
	}
	edgeW48, fogW48 := model("dddddddddddd", "w48", 784, 48), model("eeeeeeeeeeee", "w48", 48, 16)
	fogRetrained := model("ffffffffffff", "v2", 32, 16)
	for _, tc := range []struct {
		name     string
		rollouts []string
		next     map[string]tierModel
		onSite   []string // tiers with a runtime on the site; all when nil
		plain    []string // tiers whose runtime cannot replace beside
		beside   []string
		refused  string
	}{
		{name: "a retrained fog of the same forward width", rollouts: []string{"fog"}, next: with(map[string]tierModel{"fog": fogRetrained})},
		{name: "edge and fog with a wider forward: fog keeps its old replicas beside", rollouts: []string{"edge", "fog"},
			next: with(map[string]tierModel{"edge": edgeW48, "fog": fogW48}), beside: []string{"fog"}},
		{name: "a fog that reads only the new edge's forwards, by accepts", rollouts: []string{"edge", "fog"},
			next:   with(map[string]tierModel{"edge": model("dddddddddddd", "v2", 784, 32), "fog": model("ffffffffffff", "v2", 32, 16, "v2")}),
			beside: []string{"fog"}},
		{name: "a wider fog without its edge", rollouts: []string{"fog"}, next: with(map[string]tierModel{"fog": fogW48}),
			refused: `tier "fog": model eeeeeeeeeeee@w48 would not read the forwards of tier "edge"'s model aaaaaaaaaaaa@v1 (it takes 48 elements per sample, the forward has 32)`},
		{name: "a wider edge without its fog", rollouts: []string{"edge"}, next: with(map[string]tierModel{"edge": edgeW48}),
			refused: `tier "fog": model bbbbbbbbbbbb@v1 would not read the forwards of tier "edge"'s model dddddddddddd@w48`},
		{name: "a fog whose accepts names neither edge", rollouts: []string{"fog"}, next: with(map[string]tierModel{"fog": model("ffffffffffff", "v2", 32, 16, "v7")}),
			refused: `its accepts lists [v7]`},
		{name: "the pair, the fog on a runtime that cannot keep old replicas", rollouts: []string{"edge", "fog"}, next: with(map[string]tierModel{"edge": edgeW48, "fog": fogW48}),
			plain: []string{"fog"}, refused: `the tier's runtime cannot keep its old replicas beside the new ones`},
		{name: "the pair on two sites", rollouts: []string{"edge", "fog"}, next: with(map[string]tierModel{"edge": edgeW48, "fog": fogW48}),
			onSite: []string{"fog", "cloud"}, refused: `the two tiers run on different sites`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pipeline.Pipeline{Tiers: []pipeline.Tier{{Name: "edge"}, {Name: "fog"}, {Name: "cloud"}}}
			s := &Supervisor{runtimes: map[string]runtime.Runtime{}}
			on := tc.onSite
			if on == nil {
				on = []string{"edge", "fog", "cloud"}
			}
			for _, tier := range on {
				s.runtimes[tier] = process.New(runtime.Spec{}, process.Config{})
			}
			for _, tier := range tc.plain {
				s.runtimes[tier] = plainRuntime{}
			}
			plan := &apply.Plan{}
			for _, r := range tc.rollouts {
				plan.Rollouts = append(plan.Rollouts, apply.Rollout{Tier: r})
			}
			beside, err := s.planForwards(plan, &apply.Spec{Pipeline: p}, running, tc.next)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
				t.Fatalf("error %v, want one containing %q", err, tc.refused)
			}
			if strings.Join(beside, ",") != strings.Join(tc.beside, ",") {
				t.Errorf("beside %v, want %v", beside, tc.beside)
			}
		})
	}
}

// plainRuntime is a runtime that cannot replace its replicas beside.
type plainRuntime struct{ runtime.Runtime }
