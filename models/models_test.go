package models

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

func TestMain(m *testing.M) {
	if _, err := onnx.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "models tests need ONNX Runtime:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func load(t *testing.T, path string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckShipped(t *testing.T) {
	rep, err := Check(load(t, "../deploy/pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	for _, want := range []string{
		"input   image float32[-1 1 28 28]  <- fed",
		"output  forward float32[-1 32]  <- forward head",
		"output  exit_probs float32[-1 10]  <- exit head",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheckBrokenChain(t *testing.T) {
	_, err := Check(load(t, "testdata/broken-chain.yaml"))
	want := `tier "edge": forward output "forward" has shape [-1 32], next tier "fog" input "features" expects [-1 16]`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want %q", err, want)
	}
}

// TestCheckMismatches edits the shipped pipeline into each kind of broken
// chain and expects an error naming tier, tensor and both shapes.
func TestCheckMismatches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(p *pipeline.Pipeline)
		wants []string
	}{
		{"pipeline input does not fit", func(p *pipeline.Pipeline) { p.Input.Shape = []int{1, 32, 32} },
			[]string{`tier "edge": pipeline input.shape [1 32 32] (1024 elements) does not fit model input "image" [-1 1 28 28] (784 elements per sample)`}},
		{"class count differs", func(p *pipeline.Pipeline) { p.Classes = p.Classes[:9] },
			[]string{`tier "edge": exit output "exit_probs" has shape [-1 10] (10 classes), pipeline names 9 classes`, `tier "cloud"`}},
		{"exit head missing", func(p *pipeline.Pipeline) { p.Tiers[2].Exit.Output = "probs" },
			[]string{`tier "cloud"`, `no output "probs"`, `outputs: ["exit_probs"]`}},
		{"missing model", func(p *pipeline.Pipeline) { p.Tiers[1].Model = "nope.onnx" },
			[]string{`tier "fog"`, "nope.onnx"}},
		{"last tier fed the fog model", func(p *pipeline.Pipeline) { p.Tiers[2].Model = "../models/fog.onnx" },
			[]string{`tier "fog": forward output "forward" has shape [-1 16], next tier "cloud" input "features" expects [-1 32]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, "../deploy/pipeline.yaml")
			tc.edit(p)
			_, err := Check(p)
			if err == nil {
				t.Fatal("check passed")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func shippedData(t *testing.T, p *pipeline.Pipeline) *Dataset {
	t.Helper()
	ds, err := LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// openChain opens p's chain for the test, closed when it ends.
func openChain(t *testing.T, p *pipeline.Pipeline) *Chain {
	t.Helper()
	c, err := OpenChain(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func eval(t *testing.T, c *Chain, ds *Dataset) *Result {
	t.Helper()
	r, err := c.Eval(ds)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEvalShipped is the acceptance bar for the sample DDNN with the shipped
// thresholds: accuracy at least 0.84, at least 40% exit before the cloud.
func TestEvalShipped(t *testing.T) {
	p := load(t, "../deploy/pipeline.yaml")
	ds := shippedData(t, p)
	if len(ds.Samples) < 2000 || len(ds.Shape) != 2 || ds.Shape[0] != 28 {
		t.Fatalf("test set has %d samples of shape %v", len(ds.Samples), ds.Shape)
	}
	c := openChain(t, p)
	r := eval(t, c, ds)
	t.Logf("accuracy %.4f, early exits %.3f, tiers %+v", r.Accuracy, r.EarlyExitRatio, r.Tiers)
	if r.Samples != len(ds.Samples) {
		t.Errorf("samples %d, want %d", r.Samples, len(ds.Samples))
	}
	if r.Accuracy < 0.84 {
		t.Errorf("accuracy %.4f < 0.84", r.Accuracy)
	}
	if r.EarlyExitRatio < 0.40 {
		t.Errorf("early exit ratio %.3f < 0.40", r.EarlyExitRatio)
	}
	total := 0
	for _, tr := range r.Tiers {
		total += tr.Exited
	}
	if total != r.Samples {
		t.Errorf("tiers account for %d samples, want %d", total, r.Samples)
	}

	// The sweep's row at the shipped edge threshold is the same evaluation.
	sw, err := c.Sweep(ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(sw) != 2 || len(sw[0].Rows) != len(SweepGrid) {
		t.Fatalf("sweep has %d tiers", len(sw))
	}
	found := false
	for _, row := range sw[0].Rows {
		if row.Threshold == *p.Tiers[0].Exit.Threshold {
			found = true
			if row.Accuracy != r.Accuracy || row.EarlyExitRatio != r.EarlyExitRatio || row.TierExitRatio != r.Tiers[0].ExitRatio {
				t.Errorf("sweep row %+v disagrees with eval %+v", row, r)
			}
		}
	}
	if !found {
		t.Errorf("shipped edge threshold %v not on the sweep grid", *p.Tiers[0].Exit.Threshold)
	}
	// Raising the edge threshold can only keep fewer samples at the edge.
	for i := 1; i < len(sw[0].Rows); i++ {
		if sw[0].Rows[i].TierExitRatio > sw[0].Rows[i-1].TierExitRatio {
			t.Errorf("edge exit ratio rose from %v to %v as the threshold rose", sw[0].Rows[i-1], sw[0].Rows[i])
		}
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func idx(dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 8, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	return b.Bytes()
}

func TestReadIDX(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"ok", idx([]uint32{2, 3}, []byte{1, 2, 3, 4, 5, 6}), ""},
		{"short data", idx([]uint32{2, 3}, []byte{1, 2, 3}), "idx data (6 bytes)"},
		{"bad magic", []byte{1, 0, 8, 1, 0, 0, 0, 1, 0}, "bad magic"},
		{"float elements", []byte{0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0}, "only unsigned bytes"},
		{"zero dim", idx([]uint32{0}, nil), "dimension 0 is 0"},
		{"huge dims", idx([]uint32{1 << 20, 1 << 20}, nil), "over the limit"},
		{"empty", nil, "idx header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dims, data, err := ReadIDX(bytes.NewReader(tc.in))
			if tc.want == "" {
				if err != nil || len(dims) != 2 || len(data) != 6 {
					t.Errorf("ReadIDX = %v, %v, %v", dims, data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadDatasetMismatch(t *testing.T) {
	dir := t.TempDir()
	images := filepath.Join(dir, "i.gz")
	labels := filepath.Join(dir, "l.gz")
	os.WriteFile(images, gz(idx([]uint32{2, 2, 2}, make([]byte, 8))), 0o644)
	os.WriteFile(labels, gz(idx([]uint32{3}, make([]byte, 3))), 0o644)
	if _, err := LoadDataset(images, labels); err == nil || !strings.Contains(err.Error(), "want [2]") {
		t.Errorf("error = %v", err)
	}
	if _, err := LoadDataset(filepath.Join(dir, "none.gz"), labels); err == nil || !strings.Contains(err.Error(), "none.gz") {
		t.Errorf("error = %v", err)
	}
}

// TestCheckRefusesNewerModelFormat: a model saved by an `onnx` release
// newer than the installed ONNX Runtime loads (IR version 14; made here
// as `m.ir_version = 14; onnx.save(m, …)` would, by rewriting the
// ModelProto's first field, ir_version 7, of a copy of edge.onnx) is
// refused by the chain check, naming the tier, the versions, the range
// and the conversion.
func TestCheckRefusesNewerModelFormat(t *testing.T) {
	b, err := os.ReadFile("edge.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 1<<3 || b[1] != 7 { // field 1 (ir_version) as a varint: 7
		t.Fatalf("edge.onnx starts with % x, not ir_version 7", b[:2])
	}
	b[1] = 14
	path := filepath.Join(t.TempDir(), "edge-ir14.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := load(t, "../deploy/pipeline.yaml")
	p.Tiers[0].Model = path
	_, err = Check(p)
	for _, want := range []string{
		`tier "edge": model file ` + path + ` has ONNX IR version 14 and ai.onnx opset 13; ONNX Runtime 1.24.3 loads IR versions up to 13 and ai.onnx opsets 7 to 25`,
		`convert it with python3 -c "import onnx; m = onnx.load('` + path + `'); m.ir_version = 13; onnx.save(m, '` + path + `')"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
