package models

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// npyFile is a NumPy .npy (format 1.0) holding data as raw elements.
func npyFile(descr string, fortran bool, shape []int, data []byte) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	order := "False"
	if fortran {
		order = "True"
	}
	hdr := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }", descr, order, tuple)
	pad := 64 - (10+len(hdr)+1)%64
	hdr += strings.Repeat(" ", pad%64) + "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)), byte(len(hdr)>>8))
	b = append(b, hdr...)
	return append(b, data...)
}

func le32(vs ...float32) []byte {
	b := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func le64(vs ...int64) []byte {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadDatasetNPY(t *testing.T) {
	f32 := le32(1.5, -2.25, 300.125, 0.001, 7, 8, 9, 10, 11, 12, 13, 14)
	labels3 := npyFile("<i8", false, []int{3}, le64(2, 0, 1))
	be := make([]byte, len(f32))
	for i := 0; i < len(f32); i += 4 {
		binary.BigEndian.PutUint32(be[i:], binary.LittleEndian.Uint32(f32[i:]))
	}
	for _, tc := range []struct {
		name           string
		images, labels []byte
		imagesName     string // default images.npy
		want           string // error, or "" for the float32 set above
	}{
		{"float32 images, int64 labels", npyFile("<f4", false, []int{3, 2, 2}, f32), labels3, "", ""},
		{"big-endian float32", npyFile(">f4", false, []int{3, 2, 2}, be), labels3, "", ""},
		{"gzipped", gz(npyFile("<f4", false, []int{3, 2, 2}, f32)), labels3, "images.npy.gz", ""},
		{"gzipped under .npy", gz(npyFile("<f4", false, []int{3, 2, 2}, f32)), labels3, "images.npy", ""},
		{"NumPy under another name", npyFile("<f4", false, []int{3, 2, 2}, f32), labels3, "images.bin", ""},
		{"int32 labels", npyFile("<f4", false, []int{3, 4}, f32), npyFile("<i4", false, []int{3}, []byte{2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), "", ""},
		{"Fortran order", npyFile("<f4", true, []int{3, 2, 2}, f32), labels3, "", "Fortran order"},
		{"float64 images", npyFile("<f8", false, []int{3, 2}, f32), labels3, "", `dtype float64 ("<f8") not supported`},
		{"int64 images", npyFile("<i8", false, []int{3, 2}, f32[:48]), labels3, "", "images have dtype int64, want float32 or uint8"},
		{"float32 labels", npyFile("<f4", false, []int{3, 4}, f32), npyFile("<f4", false, []int{3}, le32(1, 2, 3)), "", "labels have dtype float32, want an integer type"},
		{"negative label", npyFile("<f4", false, []int{3, 4}, f32), npyFile("<i8", false, []int{3}, le64(1, -1, 0)), "", "label 1 is -1"},
		{"sample counts differ", npyFile("<f4", false, []int{2, 6}, f32), labels3, "", "labels have dimensions [3], want [2] to match the 2 samples of"},
		{"one dimension", npyFile("<f4", false, []int{12}, f32), labels3, "", "images need at least 2 dimensions"},
		{"truncated", npyFile("<f4", false, []int{4, 4}, f32), labels3, "", "data ends before the 16 float32 elements of shape [4 4]"},
		{"trailing data", npyFile("<f4", false, []int{2, 2, 2}, f32), labels3, "", "16 more bytes after the float32 data of shape [2 2 2]"},
		{"trailing data, gzipped", gz(npyFile("<f4", false, []int{2, 2, 2}, f32)), labels3, "", "16 more bytes after"},
		{"not npy", []byte("hello, world, this is text"), labels3, "", "npy header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := tc.imagesName
			if name == "" {
				name = "images.npy"
			}
			ds, err := LoadDataset(writeFile(t, dir, name, tc.images), writeFile(t, dir, "labels.npy", tc.labels))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
					t.Errorf("error = %v, want %q and the file", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ds.DType != wire.Float32 || len(ds.Samples) != 3 || !slices.Equal(ds.Labels, []int{2, 0, 1}) {
				t.Fatalf("dataset %s shape %v, %d samples, labels %v", ds.DType, ds.Shape, len(ds.Samples), ds.Labels)
			}
			if !slices.Equal(ds.Samples[0], f32[:16]) || !slices.Equal(ds.Samples[2], f32[32:]) {
				t.Errorf("samples %v, want the float32s as saved", ds.Samples)
			}
		})
	}
}

// TestIDXByContent: an IDX test set is read gzipped or not, whatever the
// files are called.
func TestIDXByContent(t *testing.T) {
	want, err := LoadDataset("data/test-2000-images-idx3-ubyte.gz", "data/test-2000-labels-idx1-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var names [2]string
	for i, f := range []string{"data/test-2000-images-idx3-ubyte.gz", "data/test-2000-labels-idx1-ubyte.gz"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 { // the labels unzipped
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		names[i] = writeFile(t, dir, fmt.Sprintf("set-%d.idx", i), b)
	}
	got, err := LoadDataset(names[0], names[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Samples) != len(want.Samples) || !slices.Equal(got.Labels, want.Labels) || !slices.Equal(got.Samples[7], want.Samples[7]) {
		t.Errorf("read %d samples, labels equal %v", len(got.Samples), slices.Equal(got.Labels, want.Labels))
	}
	// Bytes after the data the header describes are refused.
	b, err := os.ReadFile(names[1])
	if err != nil {
		t.Fatal(err)
	}
	longer := writeFile(t, dir, "longer.idx", append(b, 1, 2, 3))
	if _, err := LoadDataset(names[0], longer); err == nil || !strings.Contains(err.Error(), "3 more bytes after the uint8 data of shape [2000]") {
		t.Errorf("labels with 3 bytes more: %v", err)
	}
}

// TestUint8NPYLikeIDX converts the shipped IDX test set to uint8 .npy
// (images gzipped, labels int32) and expects the same evaluation.
func TestUint8NPYLikeIDX(t *testing.T) {
	p := load(t, "../deploy/pipeline.yaml")
	ds := shippedData(t, p)
	n := len(ds.Samples)
	shape := append([]int{n}, ds.Shape...)
	dir := t.TempDir()
	images := writeFile(t, dir, "images.npy.gz", gz(npyFile("|u1", false, shape, slices.Concat(ds.Samples...))))
	var labels []byte
	for _, l := range ds.Labels {
		labels = binary.LittleEndian.AppendUint32(labels, uint32(l))
	}
	nds, err := LoadDataset(images, writeFile(t, dir, "labels.npy", npyFile("<i4", false, []int{n}, labels)))
	if err != nil {
		t.Fatal(err)
	}
	if nds.DType != wire.Uint8 || !slices.Equal(nds.Shape, ds.Shape) || !slices.Equal(nds.Labels, ds.Labels) {
		t.Fatalf("npy set %s %v, IDX set %s %v", nds.DType, nds.Shape, ds.DType, ds.Shape)
	}
	c := openChain(t, p)
	want, got := eval(t, c, ds), eval(t, c, nds)
	if got.Accuracy != want.Accuracy || !slices.Equal(got.Decisions, want.Decisions) {
		t.Errorf("uint8 .npy accuracy %.4f, IDX %.4f (or decisions differ)", got.Accuracy, want.Accuracy)
	}
}

// expected is models/testdata/f32/expected.json, written by make.py from
// the same model evaluated in NumPy.
type expected struct {
	Samples   int            `json:"samples"`
	Correct   int            `json:"correct"`
	Accuracy  float64        `json:"accuracy"`
	Exits     map[string]int `json:"exits"`
	Decisions []Decision     `json:"decisions"`
}

func readExpected(t *testing.T) expected {
	t.Helper()
	b, err := os.ReadFile("testdata/f32/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var e expected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestEvalFloat32MatchesNumPy evaluates the float32 pipeline on its .npy
// test set and expects what NumPy computed, sample by sample.
func TestEvalFloat32MatchesNumPy(t *testing.T) {
	p := load(t, "testdata/f32/pipeline.yaml")
	ds := shippedData(t, p)
	if ds.DType != wire.Float32 {
		t.Fatalf("test set dtype %s", ds.DType)
	}
	r := eval(t, openChain(t, p), ds)
	e := readExpected(t)
	if r.Samples != e.Samples || r.Accuracy != float64(e.Correct)/float64(e.Samples) {
		t.Errorf("%d samples, accuracy %.4f; NumPy: %d, %.4f", r.Samples, r.Accuracy, e.Samples, e.Accuracy)
	}
	for _, tr := range r.Tiers {
		if tr.Exited != e.Exits[tr.Name] {
			t.Errorf("tier %s: %d exits, NumPy %d", tr.Name, tr.Exited, e.Exits[tr.Name])
		}
	}
	for i, d := range r.Decisions {
		if d != e.Decisions[i] {
			t.Errorf("sample %d: %+v, NumPy %+v", i, d, e.Decisions[i])
		}
	}
	t.Logf("accuracy %.4f, exits %v", r.Accuracy, e.Exits)
}

func TestMessagesRefusesMismatches(t *testing.T) {
	f32 := load(t, "testdata/f32/pipeline.yaml")
	ds := shippedData(t, f32)
	fmnist := load(t, "../deploy/pipeline.yaml")
	if _, err := Messages(fmnist, ds); err == nil || !strings.Contains(err.Error(), "test set samples have shape [16] (16 elements), pipeline input.shape [1 28 28] has 784") {
		t.Errorf("error = %v", err)
	}
	f32.Input.DType = wire.Uint8
	if _, err := Messages(f32, ds); err == nil || !strings.Contains(err.Error(), "test set samples are float32, pipeline input.dtype is uint8") {
		t.Errorf("error = %v", err)
	}
	f32.Input.DType = wire.Float32
	ds.Labels = slices.Clone(ds.Labels)
	ds.Labels[5] = len(f32.Classes) // one past the last class, as 1-based labels give
	want := fmt.Sprintf("test set label 5 is %d, but the pipeline's classes are 0 to %d", len(f32.Classes), len(f32.Classes)-1)
	if _, err := Messages(f32, ds); err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestScoreWarnings(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"testdata/f32/wrong-scores.yaml", []string{`tier "edge": exit output "exit_logits" is declared scores: probabilities, but 300 of 300 test-set rows are not probabilities`, "set scores: logits"}},
		{"testdata/f32/pipeline.yaml", nil},
		{"../deploy/pipeline.yaml", nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			warnings, err := CheckScores(load(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != min(len(tc.want), 1) {
				t.Fatalf("warnings %q, want %d", warnings, min(len(tc.want), 1))
			}
			for _, w := range tc.want {
				if !strings.Contains(warnings[0], w) {
					t.Errorf("warning %q lacks %q", warnings[0], w)
				}
			}
		})
	}
}

func TestIsProbabilities(t *testing.T) {
	for _, tc := range []struct {
		row  []float32
		want bool
	}{
		{[]float32{0.25, 0.75}, true},
		{[]float32{0.2505, 0.75}, true},
		{[]float32{0.3, 0.75}, false},
		{[]float32{-0.25, 1.25}, false},
		{[]float32{float32(math.NaN()), 1}, false},
	} {
		if got := isProbabilities(tc.row); got != tc.want {
			t.Errorf("isProbabilities(%v) = %v", tc.row, got)
		}
	}
}

// TestWarnings: what `ddnn up` and `models check` print for a pipeline:
// the score warning, and an unreadable test set as a warning too.
func TestWarnings(t *testing.T) {
	if w := Warnings(load(t, "testdata/f32/wrong-scores.yaml")); len(w) != 1 || !strings.Contains(w[0], "set scores: logits") {
		t.Errorf("wrong scores: warnings %q", w)
	}
	if w := Warnings(load(t, "testdata/f32/pipeline.yaml")); len(w) != 0 {
		t.Errorf("good pipeline: warnings %q", w)
	}
	p := load(t, "testdata/f32/pipeline.yaml")
	p.Eval.Labels = "missing.npy"
	if w := Warnings(p); len(w) != 1 || !strings.Contains(w[0], "scores not checked on the test set: ") || !strings.Contains(w[0], "missing.npy") {
		t.Errorf("missing labels: warnings %q", w)
	}
}

// TestEvalWrongScores: eval of a head declared probabilities that emits
// logits warns as check does, refuses the samples whose scores fall
// outside [0, 1] as the pipeline would (none exits there with a
// "confidence" that is not one), and says so in the table; the sweep
// refuses them too.
func TestEvalWrongScores(t *testing.T) {
	p := load(t, "testdata/f32/wrong-scores.yaml")
	ds, err := LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenChain(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Eval(ds)
	if err != nil {
		t.Fatal(err)
	}
	edge := res.Tiers[0]
	if edge.Refused == 0 || res.Refused != edge.Refused || edge.Exited+edge.Refused > res.Samples {
		t.Fatalf("edge exited %d, refused %d; chain refused %d of %d", edge.Exited, edge.Refused, res.Refused, res.Samples)
	}
	exited := 0
	for _, tr := range res.Tiers {
		exited += tr.Exited
	}
	if exited+res.Refused != res.Samples {
		t.Errorf("%d exited + %d refused != %d samples", exited, res.Refused, res.Samples)
	}
	for i, d := range res.Decisions {
		if d.Refused != "" && (d.Tier != "edge" || d.Class != -1 || !strings.Contains(d.Refused, "declared scores: probabilities")) {
			t.Errorf("sample %d: %+v", i, d)
		}
	}
	var out bytes.Buffer
	res.Print(&out)
	for _, want := range []string{
		"refused", fmt.Sprintf("refused %d (the pipeline would dead-letter them)", res.Refused),
		`warning: tier "edge": exit output "exit_logits" is declared scores: probabilities, but 300 of 300 test-set rows are not probabilities`,
		`warning: tier "edge" refused samples, as the pipeline would dead-letter them; the first (sample `,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("eval output lacks %q:\n%s", want, out.String())
		}
	}
	sweep, err := c.Sweep(ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range sweep[0].Rows {
		if row.TierExitRatio > float64(edge.Exited)/float64(res.Samples)+1e-9 && row.Threshold >= 0.9 {
			t.Errorf("sweep at %g: edge exit ratio %v above eval's %d/%d at 0.9", row.Threshold, row.TierExitRatio, edge.Exited, res.Samples)
		}
	}

	// The same chain declared right refuses nothing and warns of nothing.
	good := load(t, "testdata/f32/pipeline.yaml")
	gc, err := OpenChain(good)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	gres, err := gc.Eval(ds)
	if err != nil {
		t.Fatal(err)
	}
	if gres.Refused != 0 || len(gres.Warnings) != 0 {
		t.Errorf("good pipeline: refused %d, warnings %q", gres.Refused, gres.Warnings)
	}
	out.Reset()
	gres.Print(&out)
	if strings.Contains(out.String(), "refused") || strings.Contains(out.String(), "warning") {
		t.Errorf("good pipeline's table mentions refusals or warnings:\n%s", out.String())
	}
}
