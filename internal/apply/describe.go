package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Spec is a pipeline with the identity of each tier's model: what a plan
// compares, on the running side and in the file to apply.
type Spec struct {
	Pipeline *pipeline.Pipeline
	// ModelSHA256 maps each tier to its model file's sha256 prefix
	// (onnx.FileSHA256), and each tier's canary (CanaryKey) to its
	// candidate's.
	ModelSHA256 map[string]string
}

// CanaryKey is the key of tier's canary's model in a Spec's ModelSHA256
// (a tier's name has no '/').
func CanaryKey(tier string) string { return tier + "/canary" }

// Description is a Spec as `ddnn up` serves it on its admin address
// (httpapi.PathPipeline): the pipeline's settings as the YAML names them,
// in JSON, with every credential setting redacted, and the models' sha256.
type Description struct {
	// Pipeline is the effective pipeline (defaults and inherited settings
	// filled in) as a YAML document written in JSON.
	Pipeline json.RawMessage `json:"pipeline"`
	// ModelSHA256 maps each tier to its model file's sha256 prefix, and
	// each tier's canary (CanaryKey) to its candidate's.
	ModelSHA256 map[string]string `json:"model_sha256"`
}

// credentialKeys are the YAML keys whose values lead to a secret: a
// password, a token, a private key or the device credentials. A
// Description carries a fingerprint of each value instead (redactedPrefix
// and 12 hex digits of its sha256), never the value: enough to see that
// it changed, nothing to use.
var credentialKeys = map[string]bool{
	"password":             true,
	"password_file":        true,
	"password_env":         true,
	"token_file":           true,
	"key_file":             true,
	"devices_file":         true,
	"devices_psk_key_file": true,
	"service_token_file":   true,
}

// redactedPrefix starts a redacted value; the rest is upper-case hex, so
// the value is still a valid environment variable name for password_env.
const redactedPrefix = "REDACTED_"

// Describe reads the sha256 of each tier's model and writes p as a
// Description.
func Describe(p *pipeline.Pipeline) (*Description, error) {
	sums := make(map[string]string, len(p.Tiers))
	for i := range p.Tiers {
		t := &p.Tiers[i]
		sum, err := onnx.FileSHA256(p.ModelPath(t))
		if err != nil {
			return nil, fmt.Errorf("tier %q: %w", t.Name, err)
		}
		sums[t.Name] = sum
		if t.Canary != nil {
			sum, err := onnx.FileSHA256(p.Path(t.Canary.Model))
			if err != nil {
				return nil, fmt.Errorf("tier %q: canary: %w", t.Name, err)
			}
			sums[CanaryKey(t.Name)] = sum
		}
	}
	return (&Spec{Pipeline: p, ModelSHA256: sums}).Describe()
}

// Describe writes s as a Description, with the models' sha256 it holds.
func (s *Spec) Describe() (*Description, error) {
	p, sums := s.Pipeline, s.ModelSHA256
	y, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(y, &doc); err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
	}
	redact(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
	}
	return &Description{Pipeline: b, ModelSHA256: sums}, nil
}

// redact replaces the value of every credential key in v, at any depth,
// by its fingerprint.
func redact(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && credentialKeys[k] && s != "" {
				sum := sha256.Sum256([]byte(s))
				v[k] = redactedPrefix + strings.ToUpper(hex.EncodeToString(sum[:])[:12])
				continue
			}
			redact(e)
		}
	case []any:
		for _, e := range v {
			redact(e)
		}
	}
}

// Spec decodes the description: the pipeline strictly, with its
// validation, as a YAML file is.
func (d *Description) Spec() (*Spec, error) {
	p, err := pipeline.Parse(d.Pipeline)
	if err != nil {
		return nil, err
	}
	for i := range p.Tiers {
		if d.ModelSHA256[p.Tiers[i].Name] == "" {
			return nil, fmt.Errorf("tier %q: no model sha256", p.Tiers[i].Name)
		}
	}
	return &Spec{Pipeline: p, ModelSHA256: d.ModelSHA256}, nil
}

// Load describes p and decodes the description, so that a file to apply
// is compared in the form the running pipeline is served in, its
// credential settings redacted the same way.
func Load(p *pipeline.Pipeline) (*Spec, error) {
	d, err := Describe(p)
	if err != nil {
		return nil, err
	}
	return d.Spec()
}
