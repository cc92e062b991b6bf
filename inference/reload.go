package inference

import (
	"fmt"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// replicaSettings is the part of a tier a replica serves from: what it
// compares on reload. The connector, replicas and scaling sections belong
// to other roles.
type replicaSettings struct {
	Name      string             `yaml:"name"`
	Site      string             `yaml:"site"`
	Model     string             `yaml:"model"`
	InputName string             `yaml:"input"`
	Exit      pipeline.Exit      `yaml:"exit"`
	Forward   *pipeline.Forward  `yaml:"forward"`
	Inference pipeline.Inference `yaml:"inference"`
}

func settingsOf(t *pipeline.Tier) replicaSettings {
	return replicaSettings{Name: t.Name, Site: t.Site, Model: t.Model, InputName: t.InputName,
		Exit: t.Exit, Forward: t.Forward, Inference: t.Inference}
}

// live says whether a replica applies a change of the setting at path in
// place: the exit policy and its threshold. Everything else it serves
// from (the model, its outputs, the inference section) needs a rollout.
func live(path string) bool {
	return path == "exit.policy" || path == "exit.threshold"
}

// Reload applies p's exit policy and threshold of the served tier from
// the next call on, and logs them with what else of the tier changed
// and was ignored because it needs a rollout. When p has no such tier, or
// its policy cannot be built, nothing changes and the error says why.
func (f *Function) Reload(p *pipeline.Pipeline) error {
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	t, i, err := p.Tier(f.tier.Name)
	if err != nil {
		return err
	}
	if i != f.index {
		return fmt.Errorf("tier %q: now tier %d of the pipeline, was %d: a restart is needed", t.Name, i+1, f.index+1)
	}
	// Scores (logits or probabilities) go with the model: kept as served.
	exit := f.applied.Exit
	exit.Policy, exit.Threshold = t.Exit.Policy, t.Exit.Threshold
	pol, err := NewPolicy(exit, p.Last(i))
	if err != nil {
		return fmt.Errorf("tier %q: %w", t.Name, err)
	}
	var applied, ignored []pipeline.Difference
	for _, c := range pipeline.Diff("", settingsOf(&f.applied), settingsOf(t)) {
		if live(c.Path) {
			applied = append(applied, c)
		} else {
			ignored = append(ignored, c)
		}
	}
	f.policy.Store(&pol)
	f.applied.Exit = exit
	command.LogChanges(f.log, applied, ignored, "needs a rollout of the tier's replicas")
	return nil
}
