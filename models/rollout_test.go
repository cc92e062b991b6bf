package models

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestRolloutChains: the chains of testdata/rollout are what its README
// says. The retrained fog and the 48-wide pair fit the chain with the
// shipped cloud (forward shapes as listed), meet the sample's targets
// (accuracy 0.84, 40% early exits: a fog that misread its edge's features
// would not), and the README's table holds their `models eval` figures;
// the retrained fog keeps the shipped edge's decisions and changes some of
// the fog's. The fog that takes 20 features fails the check with the
// README's message.
func TestRolloutChains(t *testing.T) {
	readme, err := os.ReadFile("testdata/rollout/README.md")
	if err != nil {
		t.Fatal(err)
	}
	shipped := load(t, "../deploy/pipeline.yaml")
	ds := shippedData(t, shipped)
	want := eval(t, openChain(t, shipped), ds)
	for _, tc := range []struct {
		file     string
		forwards []string // each early tier's forward shape
		inputs   []string // the fog's and the cloud's input shapes
	}{
		{"../deploy/pipeline.yaml", []string{"[-1 32]", "[-1 16]"}, []string{"[-1 32]", "[-1 16]"}},
		{"testdata/rollout/retrained-fog.yaml", []string{"[-1 32]", "[-1 16]"}, []string{"[-1 32]", "[-1 16]"}},
		{"testdata/rollout/w48.yaml", []string{"[-1 48]", "[-1 16]"}, []string{"[-1 48]", "[-1 16]"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p := load(t, tc.file)
			rep, err := Check(p)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if got := fmt.Sprint(rep.Tiers[i].Heads.Forward.Shape); got != tc.forwards[i] {
					t.Errorf("tier %s forwards %s, want %s", rep.Tiers[i].Name, got, tc.forwards[i])
				}
				if got := fmt.Sprint(rep.Tiers[i+1].Heads.Input.Shape); got != tc.inputs[i] {
					t.Errorf("tier %s takes %s, want %s", rep.Tiers[i+1].Name, got, tc.inputs[i])
				}
			}
			r := eval(t, openChain(t, p), ds)
			if r.Accuracy < 0.84 || r.EarlyExitRatio < 0.40 {
				t.Errorf("accuracy %.4f, early exits %.3f: below the sample's targets 0.84, 0.40", r.Accuracy, r.EarlyExitRatio)
			}
			row := ""
			for _, tr := range r.Tiers {
				row += fmt.Sprintf(" | %.3f, %.4f", tr.ExitRatio, tr.Accuracy)
			}
			row += fmt.Sprintf(" | %.4f | %.1f%% |", r.Accuracy, 100*r.EarlyExitRatio)
			if !strings.Contains(string(readme), row) {
				t.Errorf("testdata/rollout/README.md has no row ending %q (models eval of %s)", row, tc.file)
			}
			if tc.file != "testdata/rollout/retrained-fog.yaml" {
				return
			}
			edge, fog := 0, 0
			for i, d := range r.Decisions {
				w := want.Decisions[i]
				if (d.Tier == "edge") != (w.Tier == "edge") || d.Tier == "edge" && d.Class != w.Class {
					edge++
				}
				if d.Tier != w.Tier || d.Class != w.Class {
					fog++
				}
			}
			if edge > 0 || fog == 0 {
				t.Errorf("against the shipped chain: %d edge decisions differ (want 0, same edge), %d decisions in all (want some: a retrained fog)", edge, fog)
			}
		})
	}
	_, err = Check(load(t, "testdata/rollout/broken-fog.yaml"))
	msg := `tier "edge": forward output "forward" has shape [-1 32], next tier "fog" input "features" expects [-1 20]`
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(string(readme), msg) {
		t.Errorf("broken-fog.yaml: %v, want %q, as the README says", err, msg)
	}
}
