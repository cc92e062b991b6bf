package inference

import (
	"fmt"
	"slices"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Session runs one tier's ONNX model. It holds a single
// DynamicAdvancedSession that is safe to share between goroutines: every
// Run call brings its own tensors.
type Session struct {
	sess *ort.DynamicAdvancedSession

	// Tier is the tier's name, for errors.
	Tier string
	// InputName is the model input fed, InputShape its per-sample shape.
	InputName  string
	InputShape []int64
	// Classes is the exit head's class count.
	Classes int
	// ForwardShape is the forward head's per-sample shape (nil on the last
	// tier); ForwardLen its element count.
	ForwardShape []int64
	ForwardLen   int
	// Model is the first 12 hex digits of the model file's sha256 and
	// the tier's version label, which the function names in its answers
	// (httpapi.HeaderModel).
	Model wire.ModelVersion

	inputLen int
	outputs  int // 1 (exit) or 2 (exit, forward)
}

// Heads are the resolved tensors of a tier's model: the input it is fed and
// its exit and forward outputs, each with per-sample shapes (batch axis cut).
type Heads struct {
	Input   onnx.TensorInfo
	Exit    onnx.TensorInfo
	Forward *onnx.TensorInfo
}

// ResolveHeads matches a tier's YAML to its model's inputs and outputs. Errors
// name the tier and list the names the model has.
func ResolveHeads(t *pipeline.Tier, last bool, info *onnx.ModelInfo) (Heads, error) {
	var h Heads
	switch {
	case t.InputName != "":
		in, ok := info.Input(t.InputName)
		if !ok {
			return h, fmt.Errorf("tier %q: model %s has no input %q (inputs: %q)", t.Name, info.Path, t.InputName, info.InputNames())
		}
		h.Input = in
	case len(info.Inputs) == 1:
		h.Input = info.Inputs[0]
	default:
		return h, fmt.Errorf("tier %q: model %s has %d inputs %q; name the one to feed in tiers[].input", t.Name, info.Path, len(info.Inputs), info.InputNames())
	}
	ex, ok := info.Output(t.Exit.Output)
	if !ok {
		return h, fmt.Errorf("tier %q: model %s has no output %q for exit.output (outputs: %q)", t.Name, info.Path, t.Exit.Output, info.OutputNames())
	}
	h.Exit = ex
	if !last && t.Forward != nil {
		fw, ok := info.Output(t.Forward.Output)
		if !ok {
			return h, fmt.Errorf("tier %q: model %s has no output %q for forward.output (outputs: %q)", t.Name, info.Path, t.Forward.Output, info.OutputNames())
		}
		h.Forward = &fw
	}
	for _, ti := range h.all() {
		if !ti.Tensor || ti.DType != ort.TensorElementDataTypeFloat {
			return h, fmt.Errorf("tier %q: model tensor %s must be a float32 tensor", t.Name, ti)
		}
		if len(ti.Shape) < 2 {
			return h, fmt.Errorf("tier %q: model tensor %s needs a batch axis and at least one more", t.Name, ti)
		}
		for _, d := range ti.Shape[1:] {
			if d < 1 {
				return h, fmt.Errorf("tier %q: model tensor %s has a dynamic axis besides the batch axis", t.Name, ti)
			}
		}
	}
	if len(h.Exit.Shape) != 2 {
		return h, fmt.Errorf("tier %q: exit output %s must have shape [N, classes]", t.Name, h.Exit)
	}
	return h, nil
}

func (h Heads) all() []onnx.TensorInfo {
	all := []onnx.TensorInfo{h.Input, h.Exit}
	if h.Forward != nil {
		all = append(all, *h.Forward)
	}
	return all
}

// PerSample drops the batch axis of a model shape.
func PerSample(shape []int64) []int64 { return slices.Clone(shape[1:]) }

// Elements is the element count of a per-sample shape.
func Elements(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// SessionOptions tune a session.
type SessionOptions struct {
	// IntraOpThreads is ONNX Runtime's intra-op thread count (default 1).
	IntraOpThreads int
}

// NewSession loads tier i of p. onnx.Init must have succeeded.
func NewSession(p *pipeline.Pipeline, i int, opts SessionOptions) (*Session, error) {
	t := &p.Tiers[i]
	path := p.ModelPath(t)
	info, err := onnx.ReadModelInfo(path)
	if err != nil {
		return nil, fmt.Errorf("tier %q: %w", t.Name, err)
	}
	h, err := ResolveHeads(t, p.Last(i), info)
	if err != nil {
		return nil, err
	}
	digest, err := onnx.FileSHA256(path)
	if err != nil {
		return nil, fmt.Errorf("tier %q: %w", t.Name, err)
	}
	outNames := []string{h.Exit.Name}
	if h.Forward != nil {
		outNames = append(outNames, h.Forward.Name)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("tier %q: session options: %w", t.Name, err)
	}
	defer so.Destroy()
	threads := opts.IntraOpThreads
	if threads < 1 {
		threads = 1
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("tier %q: intra-op threads: %w", t.Name, err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("tier %q: inter-op threads: %w", t.Name, err)
	}
	sess, err := ort.NewDynamicAdvancedSession(path, []string{h.Input.Name}, outNames, so)
	if err != nil {
		return nil, fmt.Errorf("tier %q: model %s: %w", t.Name, path, err)
	}
	s := &Session{
		sess:       sess,
		Tier:       t.Name,
		InputName:  h.Input.Name,
		InputShape: PerSample(h.Input.Shape),
		Classes:    int(h.Exit.Shape[1]),
		outputs:    len(outNames),
		Model:      wire.ModelVersion{SHA: digest, Version: t.Version},
	}
	s.inputLen = Elements(s.InputShape)
	if h.Forward != nil {
		s.ForwardShape = PerSample(h.Forward.Shape)
		s.ForwardLen = Elements(s.ForwardShape)
	}
	return s, nil
}

// InputLen is the element count of one sample's input.
func (s *Session) InputLen() int { return s.inputLen }

// Output holds a batch's results, row-major: Exit is n×Classes scores,
// Forward n×ForwardLen (empty on the last tier).
type Output struct {
	Exit    []float32
	Forward []float32
}

// Run feeds n samples (len(in) == n*InputLen()) through the model. Safe for
// concurrent use.
func (s *Session) Run(in []float32, n int) (Output, error) {
	if n < 1 || len(in) != n*s.inputLen {
		return Output{}, fmt.Errorf("tier %q: run with %d samples needs %d input elements, have %d", s.Tier, n, n*s.inputLen, len(in))
	}
	input, err := ort.NewTensor(batchShape(n, s.InputShape), in)
	if err != nil {
		return Output{}, fmt.Errorf("tier %q: input tensor: %w", s.Tier, err)
	}
	defer input.Destroy()

	out := Output{Exit: make([]float32, n*s.Classes)}
	exit, err := ort.NewTensor(ort.NewShape(int64(n), int64(s.Classes)), out.Exit)
	if err != nil {
		return Output{}, fmt.Errorf("tier %q: exit tensor: %w", s.Tier, err)
	}
	defer exit.Destroy()
	outputs := []ort.Value{exit}
	if s.outputs == 2 {
		out.Forward = make([]float32, n*s.ForwardLen)
		fwd, err := ort.NewTensor(batchShape(n, s.ForwardShape), out.Forward)
		if err != nil {
			return Output{}, fmt.Errorf("tier %q: forward tensor: %w", s.Tier, err)
		}
		defer fwd.Destroy()
		outputs = append(outputs, fwd)
	}
	if err := s.sess.Run([]ort.Value{input}, outputs); err != nil {
		return Output{}, fmt.Errorf("tier %q: run: %w", s.Tier, err)
	}
	return out, nil
}

// Close releases the session.
func (s *Session) Close() error {
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	return err
}

func batchShape(n int, perSample []int64) ort.Shape {
	shape := make(ort.Shape, 0, len(perSample)+1)
	shape = append(shape, int64(n))
	return append(shape, perSample...)
}
