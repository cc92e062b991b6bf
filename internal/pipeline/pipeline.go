// Package pipeline owns the pipeline description operators write in YAML: its
// types, strict decoding, defaults and validation, and the names of its
// topics and consumer groups.
//
// Load reads a file, rejects unknown keys and mistyped values with their
// YAML path and line (package yamlcheck), decodes it onto the defaults so an
// explicit value, 0 included, is never replaced (defaults.go), and
// validates the result, reporting every problem at once with the field
// that is wrong.
//
// Sites place the tiers and topics on clusters with their own Kafka (Sites,
// SiteOf, TopicsOn, Links); a pipeline without sites: is one implicit site
// and runs as it always did. The package knows nothing about ONNX Runtime,
// Kafka or HTTP: checks that need a model file opened (tensor names and
// shapes) belong to the models package.
package pipeline

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/ddnn-continuum/ddnn/internal/yamlcheck"
)

// Exit policies: how a tier decides that its prediction is final.
const (
	// PolicyMaxProb exits when the top-1 probability is at least the threshold.
	PolicyMaxProb = "max_prob"
	// PolicyEntropy exits when the normalized entropy -Σp·log p / log C is at
	// most the threshold (the DDNN paper's rule).
	PolicyEntropy = "entropy"
	// PolicyMargin exits when top-1 minus top-2 probability is at least the
	// threshold.
	PolicyMargin = "margin"
)

// Kinds of exit scores a model's exit head produces.
const (
	ScoresProbabilities = "probabilities"
	ScoresLogits        = "logits"
)

// Defaults applied to fields left out of the YAML.
const (
	DefaultIntraOpThreads  = 1
	DefaultMaxBatch        = 1024
	DefaultMaxRequestBytes = 16 << 20
)

// Pipeline is the whole description of one DDNN pipeline.
type Pipeline struct {
	// Name prefixes every topic of the pipeline; lowercase letters, digits,
	// '-' and '_'.
	Name string `yaml:"name"`
	// Input describes what devices send to the first tier.
	Input Input `yaml:"input"`
	// Classes names the model's classes, in the order of the exit heads.
	Classes []string `yaml:"classes"`
	// Tiers in order, from the devices up (edge, fog, cloud).
	Tiers []Tier `yaml:"tiers"`
	// SiteList is the sites the pipeline runs on, as declared under
	// sites:, with their defaults and inherited settings filled in. Empty
	// means one implicit site made of the top-level kafka, funnel and
	// admin sections; Sites returns the effective list either way.
	SiteList []Site `yaml:"sites"`
	// Results says which site holds <name>.results.
	Results Results `yaml:"results"`
	// Eval names a labeled test set for `ddnn models eval`; optional.
	Eval Eval `yaml:"eval"`
	// WireEncoding is how messages travel between the pipeline's parts
	// (Kafka record values, invocations, deliveries): binary (default) or
	// json.
	WireEncoding WireEncoding `yaml:"wire_encoding"`
	// Kafka, Funnel and Admin configure the streaming pipeline.
	Kafka  Kafka  `yaml:"kafka"`
	Funnel Funnel `yaml:"funnel"`
	Admin  Admin  `yaml:"admin"`
	// Auth says who may use the funnels' device and delivery zones.
	Auth Auth `yaml:"auth"`
	// Telemetry says where every role sends its traces; off by default.
	Telemetry Telemetry `yaml:"telemetry"`

	// Dir is the directory of the YAML file; relative model paths are
	// resolved against it.
	Dir string `yaml:"-"`
}

// Input is the sample devices send.
type Input struct {
	// DType is the element type on the wire: uint8 or float32.
	DType wire.DType `yaml:"dtype"`
	// Shape is one sample's shape, without a batch axis.
	Shape []int `yaml:"shape"`
	// Scale multiplies every element when it is converted to float32 for the
	// first tier's model (1/255 for images sent as bytes). Default 1.
	Scale float64 `yaml:"scale"`
}

// Eval names a labeled test set shipped with the models, relative to the
// YAML file's directory. Each file, gzipped or not, is IDX (the MNIST
// format, unsigned bytes) or a NumPy array (.npy): images uint8 or
// float32, labels integers; the reader knows them by their content.
type Eval struct {
	Images string `yaml:"images"`
	Labels string `yaml:"labels"`
}

// validate checks that images and labels are set together.
func (e Eval) validate() []error {
	if (e.Images == "") != (e.Labels == "") {
		return []error{errors.New("eval: images and labels go together: set both or neither")}
	}
	return nil
}

// Tier is one stage of the DDNN with its model and exit policy.
type Tier struct {
	Name string `yaml:"name"`
	// Site is where the tier runs: its input topic lives on that site's
	// Kafka and its replicas deliver to that site's funnel. Required when
	// the pipeline declares sites, not allowed otherwise.
	Site string `yaml:"site"`
	// Model is the ONNX file, relative to the YAML file's directory.
	Model string `yaml:"model"`
	// Version is an optional label of the model (e.g. v2), carried with
	// its sha256 prefix in every decision's records
	// (wire.ModelVersion); empty means none.
	Version string `yaml:"version"`
	// Accepts narrows which models of the previous tier the tier's model
	// reads forwards from: each entry a version label or a sha256 prefix
	// (wire.ModelVersion.Matches). Empty, the default, accepts every
	// model whose forward fits the tier's input (its elements per
	// sample). A forward that is not accepted waits for a replica that
	// accepts it; it is never fed to this model. Not allowed on the first
	// tier, which reads devices.
	Accepts []string `yaml:"accepts"`
	// InputName is the model input to feed; empty means the model's only
	// input.
	InputName string `yaml:"input"`
	Exit      Exit   `yaml:"exit"`
	// Forward names the output sent to the next tier; every tier but the
	// last has one.
	Forward   *Forward  `yaml:"forward"`
	Inference Inference `yaml:"inference"`
	Connector Connector `yaml:"connector"`
	// Replicas is how many inference replicas serve the tier, and where.
	Replicas Replicas `yaml:"replicas"`
	// Scaling tunes the tier's scaler (when replicas.min != replicas.max).
	Scaling Scaling `yaml:"scaling"`
	// Canary, when set, runs a candidate model on a share of the tier's
	// messages next to Model (see Canary).
	Canary *Canary `yaml:"canary"`
}

// Exit describes a tier's exit head and when a sample may leave there.
type Exit struct {
	// Output is the name of the ONNX output holding class scores [N, C].
	Output string `yaml:"output"`
	// Scores says whether Output holds probabilities or logits; logits go
	// through a softmax before the policy sees them.
	Scores string `yaml:"scores"`
	// Policy is max_prob, entropy or margin. The last tier always exits
	// and needs none.
	Policy string `yaml:"policy"`
	// Threshold is the policy's bound, in [0, 1].
	Threshold *float64 `yaml:"threshold"`
}

// Forward names the tensor a tier sends up.
type Forward struct {
	Output string `yaml:"output"`
}

// Inference tunes a tier's inference function.
type Inference struct {
	// IntraOpThreads is ONNX Runtime's intra-op thread count per replica.
	IntraOpThreads int `yaml:"intra_op_threads"`
	// MaxBatch is the most messages one request may carry.
	MaxBatch int `yaml:"max_batch"`
	// MaxRequestBytes bounds a request body; larger ones get 413.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// Emulate is a benchmark and test knob; see Emulate.
	Emulate Emulate `yaml:"emulate"`
}

// Load reads, decodes, defaults and validates the pipeline in path.
func Load(path string) (*Pipeline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", path, err)
	}
	p.Dir = abs
	p.resolveKafkaPaths()
	return p, nil
}

// Parse decodes YAML strictly, onto the defaults, and validates. Each pass
// reports every problem it finds at once with its YAML path: first every
// unknown key (with the nearest field name when one is close) and value of
// the wrong kind; when there are none, every invalid setting. Relative model paths stay relative to the
// current directory unless the caller sets Dir.
func Parse(b []byte) (*Pipeline, error) {
	doc, err := yamlcheck.Parse(b, reflect.TypeFor[Pipeline]())
	if err != nil {
		return nil, err
	}
	p, err := decode(doc)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(p.SiteList) == 1 {
		// One declared site runs like a pipeline without sites: the
		// top-level sections hold its effective settings.
		s := &p.SiteList[0]
		p.Kafka, p.Funnel, p.Admin = s.Kafka, s.Funnel.Funnel, s.Admin
	}
	return p, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate reports every problem in p at once, each naming its field.
func (p *Pipeline) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if p.Name == "" {
		bad("name", "required")
	} else if !nameRE.MatchString(p.Name) {
		bad("name", "%q must be lowercase letters, digits, '-' or '_' (at most 63)", p.Name)
	}
	switch p.Input.DType {
	case wire.Uint8, wire.Float32:
	case wire.DTypeInvalid:
		bad("input.dtype", "required (uint8 or float32)")
	default:
		bad("input.dtype", "%s not supported (uint8 or float32)", p.Input.DType)
	}
	if len(p.Input.Shape) == 0 {
		bad("input.shape", "required, e.g. [1, 28, 28]")
	}
	for i, d := range p.Input.Shape {
		if d < 1 {
			bad(fmt.Sprintf("input.shape[%d]", i), "dimension %d must be at least 1", d)
		}
	}
	if p.Input.Scale <= 0 || math.IsInf(p.Input.Scale, 0) || math.IsNaN(p.Input.Scale) {
		bad("input.scale", "%v must be a positive number", p.Input.Scale)
	}
	if len(p.Classes) < 2 {
		bad("classes", "need at least 2 class names, have %d", len(p.Classes))
	}
	seenClass := map[string]bool{}
	for i, c := range p.Classes {
		if c == "" {
			bad(fmt.Sprintf("classes[%d]", i), "empty name")
		} else if seenClass[c] {
			bad(fmt.Sprintf("classes[%d]", i), "duplicate name %q", c)
		}
		seenClass[c] = true
	}
	if len(p.Tiers) == 0 {
		bad("tiers", "at least one tier is required")
	}
	seenTier := map[string]bool{}
	for i := range p.Tiers {
		t := &p.Tiers[i]
		f := fmt.Sprintf("tiers[%d]", i)
		if t.Name == "" {
			bad(f+".name", "required")
		} else {
			f = fmt.Sprintf("tiers[%d] (%s)", i, t.Name)
			if !nameRE.MatchString(t.Name) {
				bad(f+".name", "%q must be lowercase letters, digits, '-' or '_'", t.Name)
			}
			if seenTier[t.Name] {
				bad(f+".name", "duplicate tier name %q", t.Name)
			}
			seenTier[t.Name] = true
		}
		if t.Model == "" {
			bad(f+".model", "required: path to the tier's ONNX file")
		}
		if t.Version != "" {
			if err := wire.CheckModelVersionLabel(t.Version); err != nil {
				bad(f+".version", "%v", err)
			}
		}
		if i == 0 && len(t.Accepts) > 0 {
			bad(f+".accepts", "not allowed on the first tier: it reads what devices send, not another tier's forwards")
		}
		for j, ref := range t.Accepts {
			if err := wire.CheckModelRef(ref); err != nil {
				bad(fmt.Sprintf("%s.accepts[%d]", f, j), "%v", err)
			}
		}
		errs = append(errs, t.Exit.validate(f+".exit", i == len(p.Tiers)-1)...)
		if t.Canary != nil {
			errs = append(errs, t.Canary.validate(f+".canary", t)...)
		}
		last := i == len(p.Tiers)-1
		switch {
		case last && t.Forward != nil:
			bad(f+".forward", "the last tier always exits and must not forward")
		case !last && (t.Forward == nil || t.Forward.Output == ""):
			bad(f+".forward.output", "required: every tier but the last forwards a tensor")
		}
		if t.Inference.IntraOpThreads < 1 || t.Inference.IntraOpThreads > 256 {
			bad(f+".inference.intra_op_threads", "%d must be in [1, 256]", t.Inference.IntraOpThreads)
		}
		if t.Inference.MaxBatch < 1 {
			bad(f+".inference.max_batch", "%d must be at least 1", t.Inference.MaxBatch)
		}
		if t.Inference.MaxRequestBytes < 1024 {
			bad(f+".inference.max_request_bytes", "%d must be at least 1024", t.Inference.MaxRequestBytes)
		}
	}
	errs = append(errs, p.Eval.validate()...)
	errs = append(errs, p.validateStreaming()...)
	return errors.Join(errs...)
}

func (e *Exit) validate(field string, last bool) []error {
	var errs []error
	if e.Output == "" {
		errs = append(errs, fmt.Errorf("%s.output: required: name of the ONNX output with class scores", field))
	}
	switch e.Scores {
	case ScoresProbabilities, ScoresLogits:
	default:
		errs = append(errs, fmt.Errorf("%s.scores: %q unknown (want %s or %s)", field, e.Scores, ScoresProbabilities, ScoresLogits))
	}
	switch e.Policy {
	case PolicyMaxProb, PolicyEntropy, PolicyMargin:
	default:
		errs = append(errs, fmt.Errorf("%s.policy: %q unknown (want %s, %s or %s)", field, e.Policy, PolicyMaxProb, PolicyEntropy, PolicyMargin))
	}
	switch {
	case e.Threshold == nil && !last:
		errs = append(errs, fmt.Errorf("%s.threshold: required for every tier but the last", field))
	case e.Threshold != nil && (math.IsNaN(*e.Threshold) || *e.Threshold < 0 || *e.Threshold > 1):
		errs = append(errs, fmt.Errorf("%s.threshold: %v must be in [0, 1]", field, *e.Threshold))
	}
	return errs
}

// Tier returns the tier called name and its index.
func (p *Pipeline) Tier(name string) (*Tier, int, error) {
	names := make([]string, len(p.Tiers))
	for i := range p.Tiers {
		if p.Tiers[i].Name == name {
			return &p.Tiers[i], i, nil
		}
		names[i] = p.Tiers[i].Name
	}
	return nil, -1, fmt.Errorf("no tier %q in pipeline %q (tiers: %v)", name, p.Name, names)
}

// Last reports whether tier i is the final tier, which always exits.
func (p *Pipeline) Last(i int) bool { return i == len(p.Tiers)-1 }

// ModelPath resolves a tier's model path against the pipeline's directory.
func (p *Pipeline) ModelPath(t *Tier) string { return p.Path(t.Model) }

// Path resolves a path from the YAML against the pipeline's directory.
func (p *Pipeline) Path(rel string) string {
	if rel == "" || filepath.IsAbs(rel) || p.Dir == "" {
		return rel
	}
	return filepath.Join(p.Dir, rel)
}

// PathFromHere is Path as a person in the working directory types it, for
// the hints ddnn prints: relative when under the working directory, else
// absolute.
func (p *Pipeline) PathFromHere(rel string) string {
	abs, err := filepath.Abs(p.Path(rel))
	if err != nil {
		return p.Path(rel)
	}
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, abs); err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return r
		}
	}
	return abs
}

// ThresholdOr returns the exit threshold, or def when none is set (the last
// tier).
func (e *Exit) ThresholdOr(def float64) float64 {
	if e.Threshold == nil {
		return def
	}
	return *e.Threshold
}

// validateStreaming checks the sections that move data: the wire encoding,
// kafka, funnel, auth, admin, sites and each tier's connector and scaling.
func (p *Pipeline) validateStreaming() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if p.WireEncoding != EncodingBinary && p.WireEncoding != EncodingJSON {
		bad("wire_encoding", "%q unknown (want %s or %s)", p.WireEncoding, EncodingBinary, EncodingJSON)
	}
	errs = append(errs, p.Kafka.validateSettings("kafka")...)
	errs = append(errs, p.Funnel.validateSettings("funnel")...)
	errs = append(errs, p.Auth.validate()...)
	errs = append(errs, p.Telemetry.validate()...)
	errs = append(errs, p.validateCoAPS()...)
	if n := p.Input.RecordBytes(); n > p.Kafka.MaxRecordBytes {
		bad("input", "a %s %v sample makes Kafka records of up to %d bytes, over kafka.max_record_bytes %d (raise it together with the brokers' message.max.bytes)",
			p.Input.DType, p.Input.Shape, n, p.Kafka.MaxRecordBytes)
	}
	if len(p.SiteList) == 0 {
		errs = append(errs, p.Kafka.validatePlacement("kafka")...)
		errs = append(errs, p.Funnel.validatePlacement("funnel")...)
		if err := checkAddr("admin.listen", p.Admin.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.validateSites()...)
	for i := range p.Tiers {
		t := &p.Tiers[i]
		f := fmt.Sprintf("tiers[%d] (%s)", i, t.Name)
		errs = append(errs, t.Connector.validate(f+".connector", t.Inference.MaxBatch)...)
		errs = append(errs, validateScaling(f, t)...)
	}
	return errs
}
