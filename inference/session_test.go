package inference

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

type goldenTier struct {
	ExitProbs []float32 `json:"exit_probs"`
	Forward   []float32 `json:"forward"`
}

type golden struct {
	InputScale float64 `json:"input_scale"`
	Samples    []struct {
		Index int        `json:"index"`
		Label int        `json:"label"`
		Edge  goldenTier `json:"edge"`
		Fog   goldenTier `json:"fog"`
		Cloud goldenTier `json:"cloud"`
	} `json:"samples"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile("../models/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Samples) == 0 {
		t.Fatal("golden.json has no samples")
	}
	return g
}

func maxAbsDiff(t *testing.T, what string, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, golden has %d", what, len(got), len(want))
	}
	d := 0.0
	for i := range got {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
	}
	return d
}

// TestGoldenOutputs runs the golden samples through the whole chain the way
// the pipeline does (uint8 image, scaled, through each inference function)
// and compares every head with PyTorch's outputs.
func TestGoldenOutputs(t *testing.T) {
	const tolerance = 1e-4
	p := shipped(t)
	g := loadGolden(t)
	if math.Abs(g.InputScale-p.Input.Scale) > 1e-12 {
		t.Fatalf("golden input scale %v, pipeline %v", g.InputScale, p.Input.Scale)
	}
	images := testImages(t, len(g.Samples))

	var funcs []*Function
	var sessions []*Session
	for _, name := range []string{"edge", "fog", "cloud"} {
		s := openSession(t, p, name)
		f, err := New(Config{Pipeline: p, Tier: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.SetSession(s); err != nil {
			t.Fatal(err)
		}
		funcs, sessions = append(funcs, f), append(sessions, s)
	}
	worst := 0.0
	for _, gs := range g.Samples {
		in := wire.Tensor{DType: wire.Uint8, Shape: []int{1, 28, 28}, Data: images[gs.Index]}
		want := []goldenTier{gs.Edge, gs.Fog, gs.Cloud}
		for i, f := range funcs {
			// The raw heads, straight from the session.
			x := in.AppendFloat32s(nil, f.scale)
			out, err := sessions[i].Run(x, 1)
			if err != nil {
				t.Fatal(err)
			}
			worst = math.Max(worst, maxAbsDiff(t, "exit", out.Exit, want[i].ExitProbs))
			if i < 2 {
				worst = math.Max(worst, maxAbsDiff(t, "forward", out.Forward, want[i].Forward))
			}
			// The same sample through the function: forwarded tensors must
			// match too, so the next tier gets what PyTorch computed.
			ds, rej, err := f.Infer(sessions[i], []wire.Message{{ID: "g", Tensor: in}})
			if err != nil || len(rej) > 0 {
				t.Fatal(err, rej)
			}
			if i == 2 {
				if !ds[0].Exit {
					t.Fatal("last tier did not exit")
				}
				break
			}
			// Forward the golden forward tensor whatever the policy says,
			// so every tier is compared on its golden input.
			fw := wire.Float32Tensor([]int{len(want[i].Forward)}, out.Forward)
			if d := ds[0]; !d.Exit {
				worst = math.Max(worst, maxAbsDiff(t, "decision forward", d.Forward.AppendFloat32s(nil, 1), want[i].Forward))
			}
			in = fw
		}
	}
	t.Logf("max abs difference from PyTorch over %d samples: %.3g", len(g.Samples), worst)
	if worst > tolerance {
		t.Errorf("max abs difference %.3g > %g", worst, tolerance)
	}
}

// testImages reads the first n images of the shipped test subset.
func testImages(t testing.TB, n int) [][]byte {
	t.Helper()
	f, err := os.Open("../models/data/test-2000-images-idx3-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgs, err := readIDXImages(f, n)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// TestSessionConcurrentRuns shares one session between many goroutines, each
// with its own batch size, and checks every result against a sequential run.
func TestSessionConcurrentRuns(t *testing.T) {
	p := shipped(t)
	s := openSession(t, p, "edge")
	imgs := testImages(t, 64)
	input := func(n, offset int) []float32 {
		var x []float32
		for i := 0; i < n; i++ {
			tn := wire.Tensor{DType: wire.Uint8, Shape: []int{784}, Data: imgs[(offset+i)%len(imgs)]}
			x = tn.AppendFloat32s(x, float32(p.Input.Scale))
		}
		return x
	}
	want := map[[2]int]Output{}
	for n := 1; n <= 16; n++ {
		out, err := s.Run(input(n, n), n)
		if err != nil {
			t.Fatal(err)
		}
		want[[2]int{n, n}] = out
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for iter := 0; iter < 20; iter++ {
				n := (g+iter)%16 + 1
				out, err := s.Run(input(n, n), n)
				if err != nil {
					errs <- err
					return
				}
				w := want[[2]int{n, n}]
				if maxAbs(out.Exit, w.Exit) > 1e-6 || maxAbs(out.Forward, w.Forward) > 1e-6 {
					errs <- fmt.Errorf("goroutine %d batch %d: result differs from sequential run", g, n)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func maxAbs(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestSessionRunRejectsWrongLength(t *testing.T) {
	s := openSession(t, shipped(t), "fog")
	if _, err := s.Run(make([]float32, 31), 1); err == nil || !strings.Contains(err.Error(), "needs 32 input elements, have 31") {
		t.Errorf("error = %v", err)
	}
}

// TestNewSessionStartupErrors covers the start-up errors an operator meets.
func TestNewSessionStartupErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "unreadable.onnx")
	if err := os.Mkdir(unreadable, 0o755); err != nil { // a directory cannot be read as a model
		t.Fatal(err)
	}
	edge, _ := filepath.Abs("../models/edge.onnx")
	for _, tc := range []struct {
		name  string
		tier  func(*pipeline.Tier)
		wants []string
	}{
		{"missing model file", func(t *pipeline.Tier) { t.Model = filepath.Join(dir, "nope.onnx") },
			[]string{`tier "edge"`, "nope.onnx", "no such file"}},
		{"unreadable model file", func(t *pipeline.Tier) { t.Model = garbage },
			[]string{`tier "edge"`, "garbage.onnx", "not a loadable ONNX model"}},
		{"model path is a directory", func(t *pipeline.Tier) { t.Model = unreadable },
			[]string{`tier "edge"`, "unreadable.onnx"}},
		{"exit output not in model", func(t *pipeline.Tier) { t.Model = edge; t.Exit.Output = "probs" },
			[]string{`no output "probs" for exit.output`, `outputs: ["exit_probs" "forward"]`}},
		{"forward output not in model", func(t *pipeline.Tier) { t.Model = edge; t.Forward.Output = "hidden" },
			[]string{`no output "hidden" for forward.output`, `outputs: ["exit_probs" "forward"]`}},
		{"input not in model", func(t *pipeline.Tier) { t.Model = edge; t.InputName = "pixels" },
			[]string{`no input "pixels"`, `inputs: ["image"]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := shipped(t)
			tc.tier(&p.Tiers[0])
			s, err := NewSession(p, 0, SessionOptions{})
			if err == nil {
				s.Close()
				t.Fatal("session opened")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
