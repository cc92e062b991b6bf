// Package onnx owns the process-wide ONNX Runtime environment: finding the
// shared library, initializing it once, and reading a model's inputs and
// outputs, and its format (IR version and opset, which a refusal by the
// runtime is explained with: see Header and MaxIRVersion).
//
// The library is found, in order, from an explicit path (the --ort-lib flag),
// the ONNXRUNTIME_LIB environment variable, the path baked in at build time
// (the project's install folder), and the install folder next to the binary
// (bin/../.deps/...). When none exists the error names every path tried and
// the command that installs the library. Sessions and exit policies live in
// the inference package; this package must not know about tiers.
package onnx

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvVar names the environment variable holding the library path.
const EnvVar = "ONNXRUNTIME_LIB"

// LibFlag adds --ort-lib, the library Init loads.
func LibFlag(fs *flag.FlagSet, path *string) {
	fs.StringVar(path, "ort-lib", "", "ONNX Runtime shared library (default: $"+EnvVar+" or the project's install path)")
}

// InstallHint is the command that installs the library from a checkout.
const InstallHint = "make deps"

// relInstallPath is the project's install path relative to the checkout.
const relInstallPath = ".deps/onnxruntime/libonnxruntime.so.1"

// DefaultLibPath is set at build time (-ldflags -X) to the absolute install
// path of the checkout the binary was built from.
var DefaultLibPath = ""

// Candidates lists the library paths tried for an explicit path flag, in
// order, without checking whether they exist.
func Candidates(flagPath string) []string {
	if flagPath != "" {
		return []string{flagPath}
	}
	if env := os.Getenv(EnvVar); env != "" {
		return []string{env}
	}
	var c []string
	if DefaultLibPath != "" {
		c = append(c, DefaultLibPath)
	}
	if exe, err := os.Executable(); err == nil {
		c = append(c, filepath.Join(filepath.Dir(exe), "..", relInstallPath))
	}
	if root, ok := moduleRoot(); ok {
		c = append(c, filepath.Join(root, relInstallPath))
	}
	return dedupe(c)
}

// Locate returns the first existing library path among Candidates(flagPath).
func Locate(flagPath string) (string, error) {
	tried := Candidates(flagPath)
	for _, p := range tried {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	how := "--ort-lib PATH or " + EnvVar
	if flagPath != "" {
		how = "a correct --ort-lib"
	}
	return "", fmt.Errorf("onnxruntime library not found (tried %s): install it with %q in the ddnn checkout, or set %s",
		strings.Join(tried, ", "), InstallHint, how)
}

var (
	initMu   sync.Mutex
	initPath string
)

// Init locates the library and initializes the ONNX Runtime environment
// once per process. Later calls return the path already loaded; asking for a
// different explicit library after initialization is an error.
func Init(flagPath string) (string, error) {
	initMu.Lock()
	defer initMu.Unlock()
	if initPath != "" {
		if flagPath != "" && flagPath != initPath {
			return "", fmt.Errorf("onnxruntime already initialized from %s, cannot switch to %s", initPath, flagPath)
		}
		return initPath, nil
	}
	path, err := Locate(flagPath)
	if err != nil {
		return "", err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("onnxruntime library %s: %w", path, err)
	}
	initPath = path
	return path, nil
}

// Version reports the loaded library's version; Init must have succeeded.
func Version() string { return ort.GetVersion() }

// TensorInfo describes one model input or output.
type TensorInfo struct {
	Name string
	// Shape has -1 for dynamic axes, such as the batch axis.
	Shape []int64
	// DType is the element type; DTypeName gives its short name.
	DType ort.TensorElementDataType
	// Tensor is false for sequences and maps, which ddnn cannot feed.
	Tensor bool
}

// String formats the tensor as `name float32[-1 32]`.
func (t TensorInfo) String() string {
	if !t.Tensor {
		return t.Name + " (not a tensor)"
	}
	return fmt.Sprintf("%s %s%v", t.Name, DTypeName(t.DType), t.Shape)
}

// DTypeName gives short names for the element types ddnn meets.
func DTypeName(d ort.TensorElementDataType) string {
	switch d {
	case ort.TensorElementDataTypeFloat:
		return "float32"
	case ort.TensorElementDataTypeUint8:
		return "uint8"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeDouble:
		return "float64"
	default:
		return d.String()
	}
}

// ModelInfo is a model file's inputs and outputs.
type ModelInfo struct {
	Path    string
	Inputs  []TensorInfo
	Outputs []TensorInfo
}

// Output finds an output by name.
func (m *ModelInfo) Output(name string) (TensorInfo, bool) {
	return find(m.Outputs, name)
}

// Input finds an input by name.
func (m *ModelInfo) Input(name string) (TensorInfo, bool) {
	return find(m.Inputs, name)
}

// OutputNames lists the outputs' names, for error messages.
func (m *ModelInfo) OutputNames() []string { return names(m.Outputs) }

// InputNames lists the inputs' names, for error messages.
func (m *ModelInfo) InputNames() []string { return names(m.Inputs) }

// ReadModelInfo opens path (Init must have succeeded) and reads its inputs
// and outputs. It builds a throwaway session, so call it once per model.
// A model ONNX Runtime refuses for its IR version or opset gets an error
// naming the range RuntimeVersion loads and the conversion (see Header).
func ReadModelInfo(path string) (*ModelInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("model file: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		if ferr := formatError(path, unwrapORT(err)); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("model file %s is not a loadable ONNX model: %w", path, unwrapORT(err))
	}
	return &ModelInfo{Path: path, Inputs: convert(ins), Outputs: convert(outs)}, nil
}

func convert(in []ort.InputOutputInfo) []TensorInfo {
	out := make([]TensorInfo, len(in))
	for i, v := range in {
		out[i] = TensorInfo{
			Name:   v.Name,
			Shape:  append([]int64(nil), v.Dimensions...),
			DType:  v.DataType,
			Tensor: v.OrtValueType == ort.ONNXTypeTensor,
		}
	}
	return out
}

func find(ts []TensorInfo, name string) (TensorInfo, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

func names(ts []TensorInfo) []string {
	n := make([]string, len(ts))
	for i, t := range ts {
		n[i] = t.Name
	}
	return n
}

// unwrapORT strips onnxruntime_go's capitalized wrapping down to the
// runtime's own message.
func unwrapORT(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// moduleRoot walks up from the working directory to the ddnn checkout, so
// tests and `go run` find the installed library too.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/ddnn-continuum/ddnn\n") {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range in {
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
