package models

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// tiny is a [1 2 3] image: two rows of three pixels.
var tiny = []byte{0, 10, 100, 200, 250, 255}

func mustTransform(t *testing.T, spec string) *Transform {
	t.Helper()
	tr, err := ParseTransform(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTransformPixels(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []byte
	}{
		{"clean", tiny},
		{"", tiny},
		{"noise=0", tiny},
		// The mean is 815/6 = 135.83; 0.5 × (x − mean) + mean, rounded.
		{"contrast=0.5", []byte{68, 73, 118, 168, 193, 195}},
		{"contrast=0", []byte{136, 136, 136, 136, 136, 136}},
		{"contrast=2", []byte{0, 0, 64, 255, 255, 255}},
		{"brightness=80", []byte{80, 90, 180, 255, 255, 255}},
		{"brightness=-20", []byte{0, 0, 80, 180, 230, 235}},
		{"invert", []byte{255, 245, 155, 55, 5, 0}},
		{"shift=1", []byte{0, 0, 10, 0, 200, 250}},
		{"shift=-1", []byte{10, 100, 0, 250, 255, 0}},
		{"shift=2", []byte{0, 0, 0, 0, 0, 200}},
		{"shift=3", []byte{0, 0, 0, 0, 0, 0}},
		{"shift=-9", []byte{0, 0, 0, 0, 0, 0}},
		// Parts apply in the order written.
		{"invert+brightness=10", []byte{255, 255, 165, 65, 15, 10}},
		{"brightness=10+invert", []byte{245, 235, 145, 45, 0, 0}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			in := slices.Clone(tiny)
			got := mustTransform(t, tc.spec).Image(0, in, 3)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("%q: got %v, want %v", tc.spec, got, tc.want)
			}
			if !bytes.Equal(in, tiny) {
				t.Errorf("%q changed its input to %v", tc.spec, in)
			}
		})
	}
}

// TestTransformNoise checks the noise's documented generator: sample i's
// noise is PCG(seed, i)'s normal draws × σ × 255, rounded and clamped.
func TestTransformNoise(t *testing.T) {
	img := []byte{128, 128, 0, 255, 60, 200}
	for _, tc := range []struct {
		spec  string
		seed  uint64
		index int
	}{
		{"noise=0.1", 1, 0},
		{"noise=0.1", 1, 5},
		{"noise=0.3+seed=7", 7, 5},
	} {
		rng := rand.New(rand.NewPCG(tc.seed, uint64(tc.index)))
		want := make([]byte, len(img))
		sigma := mustTransform(t, tc.spec).steps[0].value
		for j, b := range img {
			want[j] = byte(min(255, max(0, math.Round(float64(b)+rng.NormFloat64()*sigma*255))))
		}
		if got := mustTransform(t, tc.spec).Image(tc.index, img, 3); !bytes.Equal(got, want) {
			t.Errorf("%q sample %d: got %v, want %v", tc.spec, tc.index, got, want)
		}
	}
}

func TestTransformNoiseDeterministic(t *testing.T) {
	gray := bytes.Repeat([]byte{128}, 784)
	a := mustTransform(t, "noise=0.3").Image(42, gray, 28)
	b := mustTransform(t, "noise=0.3").Image(42, gray, 28)
	if !bytes.Equal(a, b) {
		t.Error("the same seed and index gave different noise")
	}
	if bytes.Equal(a, mustTransform(t, "noise=0.3").Image(43, gray, 28)) {
		t.Error("samples 42 and 43 got the same noise")
	}
	if bytes.Equal(a, mustTransform(t, "noise=0.3+seed=2").Image(42, gray, 28)) {
		t.Error("seeds 1 and 2 gave the same noise")
	}
	// σ = 0.1 × 255 = 25.5 on mid-gray (clamping 5σ away): the measured
	// standard deviation of 784 draws is within 10 % of it.
	var sum, sq float64
	for _, v := range mustTransform(t, "noise=0.1").Image(42, gray, 28) {
		d := float64(v) - 128
		sum += d
		sq += d * d
	}
	n := float64(len(gray))
	if sd := math.Sqrt(sq/n - (sum/n)*(sum/n)); sd < 0.9*25.5 || sd > 1.1*25.5 {
		t.Errorf("noise=0.1 has standard deviation %.1f, want about 25.5", sd)
	}
}

func TestTransformApply(t *testing.T) {
	ds := &Dataset{DType: wire.Uint8, Shape: []int{1, 2, 3}, Labels: []int{0, 1, 2, 1}}
	for i := range ds.Labels {
		ds.Samples = append(ds.Samples, []byte{byte(i), 10, 100, 200, 250, 255})
	}
	orig := slices.Clone(ds.Samples[1])
	got, err := mustTransform(t, "invert+classes=1/2").Apply(ds)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Labels, []int{1, 2, 1}) || len(got.Samples) != 3 {
		t.Fatalf("kept labels %v (%d samples), want [1 2 1]", got.Labels, len(got.Samples))
	}
	if want := []byte{252, 245, 155, 55, 5, 0}; !bytes.Equal(got.Samples[2], want) {
		t.Errorf("sample 3 (kept third) = %v, want %v", got.Samples[2], want)
	}
	if !bytes.Equal(ds.Samples[1], orig) {
		t.Error("Apply changed the test set it was given")
	}
	// Noise follows the index in the test set as loaded, not in the
	// selection: sample 3 keeps its noise when samples before it go.
	noisy, err := mustTransform(t, "noise=0.2+classes=1").Apply(ds)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustTransform(t, "noise=0.2").Image(3, ds.Samples[3], 3); !bytes.Equal(noisy.Samples[1], want) {
		t.Errorf("sample 3's noise under classes=1 is %v, want %v", noisy.Samples[1], want)
	}

	for _, tc := range []struct {
		spec string
		ds   *Dataset
		want string
	}{
		{"classes=7", ds, `transform "classes=7" keeps none of the 4 test samples`},
		{"invert", &Dataset{DType: wire.Float32, Shape: []int{2}, Samples: [][]byte{make([]byte, 8)}, Labels: []int{0}}, "transforms work on uint8 images"},
		{"invert", &Dataset{DType: wire.Uint8, Samples: [][]byte{{1}}, Labels: []int{0}}, "test set samples have no shape"},
		{"shift=1", &Dataset{DType: wire.Uint8, Shape: []int{2}, Samples: [][]byte{{1, 2}}, Labels: []int{0}}, "shift needs images of at least 2 dimensions"},
	} {
		if _, err := mustTransform(t, tc.spec).Apply(tc.ds); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestParseTransform(t *testing.T) {
	for _, tc := range []struct{ spec, canonical string }{
		{"clean", "clean"},
		{"", "clean"},
		{" clean ", "clean"},
		{"noise=0.30", "noise=0.3"},
		{"noise = 0.1 + invert", "noise=0.1+invert"},
		{"noise=0.2+brightness=40", "noise=0.2+brightness=40"},
		{"seed=9+noise=1", "noise=1+seed=9"},
		{"seed=1+invert", "invert"},
		{"classes=3/1/3+shift=-4", "shift=-4+classes=3/1"},
		{"contrast=0.4", "contrast=0.4"},
	} {
		if got := mustTransform(t, tc.spec).String(); got != tc.canonical {
			t.Errorf("%q: canonical %q, want %q", tc.spec, got, tc.canonical)
		}
	}
}

func TestParseTransformErrors(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []string
	}{
		{"nosie=0.3", []string{`part "nosie=0.3": unknown transform "nosie"; did you mean "noise"?`}},
		{"blur=2", []string{`unknown transform "blur" (want one of clean, noise,`}},
		{"noise=1.5", []string{`part "noise=1.5": noise 1.5 is outside [0, 1]`}},
		{"noise=-0.1", []string{"outside [0, 1]"}},
		{"noise=NaN", []string{`noise "NaN" is not a number`}},
		{"noise", []string{`part "noise": noise needs a value, e.g. noise=0.3`}},
		{"noise=", []string{"noise needs a value"}},
		{"contrast=11", []string{"contrast 11 is outside [0, 10]"}},
		{"brightness=2.5", []string{"brightness 2.5 is not an integer in [-255, 255]"}},
		{"brightness=300", []string{"brightness 300 is not an integer"}},
		{"shift=1.5", []string{"shift 1.5 is not an integer"}},
		{"invert=1", []string{`part "invert=1": invert takes no value`}},
		{"clean+noise=0.1", []string{`part "clean": clean stands alone`}},
		{"noise=0.1++invert", []string{`part "": empty transform`}},
		{"seed=-1", []string{`seed "-1" is not an unsigned integer`}},
		{"seed=1+seed=2", []string{"seed given twice"}},
		{"classes=1,2", []string{`class "1,2" is not a class index (classes are separated by '/'`}},
		{"classes=1+classes=2", []string{"classes given twice"}},
		// Every bad part is reported, and the spec is named once.
		{"noise=2+brightness=x+invert", []string{`transform "noise=2+brightness=x+invert": `, `part "noise=2"`, `part "brightness=x": brightness "x" is not a number`}},
	} {
		_, err := ParseTransform(tc.spec)
		if err == nil {
			t.Errorf("%q: no error", tc.spec)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %q lacks %q", tc.spec, err, want)
			}
		}
	}
}

func TestParsePhases(t *testing.T) {
	phases, err := ParsePhases("clean:60s,noise=0.3+seed=2:1m30s, classes=0/1:2m")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range phases {
		got = append(got, p.String())
	}
	want := []string{"clean:1m0s", "noise=0.3+seed=2:1m30s", "classes=0/1:2m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("phases %q, want %q", got, want)
	}
	if phases[1].Duration != 90*time.Second {
		t.Errorf("phase 2 lasts %s, want 1m30s", phases[1].Duration)
	}

	for _, tc := range []struct {
		list string
		want []string
	}{
		{"", []string{"phase list is empty"}},
		{"clean", []string{`phase 1 "clean": no duration: want SPEC:DURATION`}},
		{"clean:60s,:60s", []string{`phase 2 ":60s": no transform before the duration`}},
		{"clean:60", []string{`duration "60": want a Go duration`}},
		{"clean:0s", []string{"duration 0s is not positive"}},
		{"clean:-5s", []string{"duration -5s is not positive"}},
		{"clean:1s:2s", []string{"more than one ':'"}},
		{"clean:60s,", []string{`phase 2 "": no duration`}},
		{"nosie=0.3:60s", []string{`phase 1 "nosie=0.3:60s": transform "nosie=0.3": part "nosie=0.3": unknown transform "nosie"; did you mean "noise"?`}},
		// A class list uses '/', as ',' separates phases.
		{"classes=0,1:60s", []string{`phase 1 "classes=0": no duration`, `phase 2 "1:60s": transform "1"`}},
		// Every bad phase is reported.
		{"clean:1x,invert:60s,noise=3:5s", []string{`phase list "clean:1x,invert:60s,noise=3:5s": `, `phase 1 "clean:1x": duration "1x"`, `phase 3 "noise=3:5s": transform "noise=3": part "noise=3": noise 3 is outside [0, 1]`}},
	} {
		_, err := ParsePhases(tc.list)
		if err == nil {
			t.Errorf("%q: no error", tc.list)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %q lacks %q", tc.list, err, want)
			}
		}
	}
}
