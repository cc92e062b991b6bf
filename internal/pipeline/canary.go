package pipeline

import (
	"fmt"
	"math"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// DefaultCanaryShadowRatio is the share of a canary's batches also sent to
// the current model, to compare their answers, when the YAML leaves
// canary.shadow_ratio out.
const DefaultCanaryShadowRatio = 0.1

// Canary is a candidate model a tier runs on a share of its traffic next
// to its current one (tiers[].canary). The tier's connector sends a
// message to the candidate when a hash of its id falls under Share, and
// sends a sample of the candidate's batches to the current model too, to
// compare the two (agreement). Everything else of the tier (input, exit
// policy, forward output, inference settings) is the current model's.
type Canary struct {
	// Model is the candidate's ONNX file, relative to the YAML file's
	// directory.
	Model string `yaml:"model"`
	// Version is the candidate's optional version label, carried as the
	// tier's version is (wire.ModelVersion).
	Version string `yaml:"version"`
	// Share is the part of the tier's messages the candidate takes, in
	// (0, 1).
	Share float64 `yaml:"share"`
	// ShadowRatio is the part of the candidate's batches also sent to the
	// current model to compare their answers, in [0, 1]: 0 compares none.
	ShadowRatio float64 `yaml:"shadow_ratio"`
}

// String is the canary as a plan or a reload log shows it:
// "model m.onnx@v2, share 0.1, shadow_ratio 0.1".
func (c Canary) String() string {
	model := c.Model
	if c.Version != "" {
		model += "@" + c.Version
	}
	return fmt.Sprintf("model %s, share %v, shadow_ratio %v", model, c.Share, c.ShadowRatio)
}

// UnmarshalYAML decodes a canary onto its defaults.
func (c *Canary) UnmarshalYAML(n *yaml.Node) error {
	*c = Canary{ShadowRatio: DefaultCanaryShadowRatio}
	type plain Canary
	return n.Decode((*plain)(c))
}

// validate checks the canary of the tier at field (its path).
func (c *Canary) validate(field string, t *Tier) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{field, key}, args...)...))
	}
	if c.Model == "" {
		bad("model", "required: path to the candidate's ONNX file")
	}
	if c.Version != "" {
		if err := wire.CheckModelVersionLabel(c.Version); err != nil {
			bad("version", "%v", err)
		}
	}
	if math.IsNaN(c.Share) || c.Share <= 0 || c.Share >= 1 {
		bad("share", "%v must be in (0, 1): the part of the tier's messages the candidate takes", c.Share)
	}
	if math.IsNaN(c.ShadowRatio) || c.ShadowRatio < 0 || c.ShadowRatio > 1 {
		bad("shadow_ratio", "%v must be in [0, 1]", c.ShadowRatio)
	}
	if t.Replicas.Runtime != RuntimeProcess {
		errs = append(errs, fmt.Errorf("%s: a canary runs on replicas.runtime %s only, not %s", field, RuntimeProcess, t.Replicas.Runtime))
	}
	return errs
}

// CanaryView is p as the candidate's replicas of tier see it: a copy
// whose tier runs the canary's model and version label, everything else
// shared with p. It is an error when the tier has no canary.
func (p *Pipeline) CanaryView(tier string) (*Pipeline, error) {
	t, i, err := p.Tier(tier)
	if err != nil {
		return nil, err
	}
	if t.Canary == nil {
		return nil, fmt.Errorf("tier %q has no canary", tier)
	}
	c := *p
	c.Tiers = append([]Tier(nil), p.Tiers...)
	ct := &c.Tiers[i]
	ct.Model, ct.Version, ct.Canary = t.Canary.Model, t.Canary.Version, nil
	return &c, nil
}
