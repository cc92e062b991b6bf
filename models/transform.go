package models

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/suggest"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// A Transform is a documented, deterministic change to a labeled test set of
// uint8 images, written as a spec of parts joined by "+" and applied in the
// order written (docs/drift.md):
//
//	clean          no change (stands alone)
//	noise=S        adds Gaussian noise of standard deviation S × 255 to each
//	               pixel, S in [0, 1]; the noise of sample i (its index in the
//	               test set as loaded) comes from a PCG generator seeded with
//	               (seed, i), so a sample gets the same noise in every run
//	seed=N         the noise seed, an unsigned integer (default 1)
//	contrast=K     scales each pixel's distance from the image's mean pixel
//	               value by K, K in [0, 10] (0.4: 40 % of the contrast left)
//	brightness=B   adds B to each pixel, B an integer in [-255, 255]
//	invert         replaces each pixel x by 255 − x
//	shift=N        moves the image N pixels to the right (N < 0: to the
//	               left), filling the uncovered columns with 0
//	classes=A/B/…  keeps only the samples labeled with one of these classes
//	               (a shifted class mix)
//
// Every pixel result is rounded to the nearest integer and clamped to 0..255.
// Images are planes of their last two dimensions (e.g. [1 28 28]: one
// 28×28 plane); shift needs at least two dimensions.
type Transform struct {
	steps   []step
	seed    uint64
	classes []int
}

// step is one pixel transform of a spec.
type step struct {
	kind  string
	value float64
}

// Transform kinds, as written in a spec.
const (
	transformClean      = "clean"
	transformNoise      = "noise"
	transformSeed       = "seed"
	transformContrast   = "contrast"
	transformBrightness = "brightness"
	transformInvert     = "invert"
	transformShift      = "shift"
	transformClasses    = "classes"
)

var transformKinds = []string{transformClean, transformNoise, transformSeed, transformContrast, transformBrightness, transformInvert, transformShift, transformClasses}

// defaultNoiseSeed is the noise seed when a spec names none.
const defaultNoiseSeed = 1

// ParseTransform parses a transform spec such as "noise=0.2+brightness=40";
// the empty spec is "clean". Every bad part is reported, each by its text.
func ParseTransform(spec string) (*Transform, error) {
	t := &Transform{seed: defaultNoiseSeed}
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == transformClean {
		return t, nil
	}
	var errs []error
	seeded := false
	for _, part := range strings.Split(spec, "+") {
		if err := t.parsePart(part, &seeded); err != nil {
			errs = append(errs, fmt.Errorf("part %q: %w", part, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("transform %q: %w", spec, err)
	}
	return t, nil
}

// parsePart adds one part of a spec to t.
func (t *Transform) parsePart(part string, seeded *bool) error {
	kind, value, hasValue := strings.Cut(part, "=")
	kind = strings.TrimSpace(kind)
	value = strings.TrimSpace(value)
	switch kind {
	case transformClean:
		return errors.New("clean stands alone: it cannot be combined with other transforms")
	case transformInvert:
		if hasValue {
			return errors.New("invert takes no value")
		}
		t.steps = append(t.steps, step{kind: kind})
		return nil
	case "":
		return errors.New("empty transform (two '+' in a row, or one at an end?)")
	}
	if !slices.Contains(transformKinds, kind) {
		if near := suggest.Nearest(kind, transformKinds); near != "" {
			return fmt.Errorf("unknown transform %q; did you mean %q?", kind, near)
		}
		return fmt.Errorf("unknown transform %q (want one of %s)", kind, strings.Join(transformKinds, ", "))
	}
	if !hasValue || value == "" {
		return fmt.Errorf("%s needs a value, e.g. %s", kind, transformExample[kind])
	}
	switch kind {
	case transformSeed:
		if *seeded {
			return errors.New("seed given twice")
		}
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return fmt.Errorf("seed %q is not an unsigned integer", value)
		}
		t.seed, *seeded = n, true
		return nil
	case transformClasses:
		if t.classes != nil {
			return errors.New("classes given twice")
		}
		for c := range strings.SplitSeq(value, "/") {
			n, err := strconv.Atoi(c)
			if err != nil || n < 0 {
				return fmt.Errorf("class %q is not a class index (classes are separated by '/', e.g. %s)", c, transformExample[kind])
			}
			if !slices.Contains(t.classes, n) {
				t.classes = append(t.classes, n)
			}
		}
		return nil
	}
	v, err := strconv.ParseFloat(value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s %q is not a number", kind, value)
	}
	switch {
	case kind == transformNoise && (v < 0 || v > 1):
		return fmt.Errorf("noise %g is outside [0, 1] (a standard deviation as a fraction of 255)", v)
	case kind == transformContrast && (v < 0 || v > 10):
		return fmt.Errorf("contrast %g is outside [0, 10]", v)
	case kind == transformBrightness && (v != math.Trunc(v) || v < -255 || v > 255):
		return fmt.Errorf("brightness %g is not an integer in [-255, 255]", v)
	case kind == transformShift && (v != math.Trunc(v) || v < -255 || v > 255):
		return fmt.Errorf("shift %g is not an integer number of pixels in [-255, 255]", v)
	}
	t.steps = append(t.steps, step{kind: kind, value: v})
	return nil
}

// transformExample is an example part per kind that takes a value.
var transformExample = map[string]string{
	transformNoise:      "noise=0.3",
	transformSeed:       "seed=7",
	transformContrast:   "contrast=0.4",
	transformBrightness: "brightness=80",
	transformShift:      "shift=4",
	transformClasses:    "classes=0/3/7",
}

// IsClean reports whether t changes nothing.
func (t *Transform) IsClean() bool {
	return len(t.steps) == 0 && t.classes == nil
}

// String is t's spec in a canonical form: "clean", or its parts in order,
// the seed only when it is not the default.
func (t *Transform) String() string {
	if t.IsClean() {
		return transformClean
	}
	var parts []string
	for _, s := range t.steps {
		if s.kind == transformInvert {
			parts = append(parts, s.kind)
			continue
		}
		parts = append(parts, s.kind+"="+strconv.FormatFloat(s.value, 'f', -1, 64))
	}
	if t.seed != defaultNoiseSeed {
		parts = append(parts, transformSeed+"="+strconv.FormatUint(t.seed, 10))
	}
	if t.classes != nil {
		cs := make([]string, len(t.classes))
		for i, c := range t.classes {
			cs[i] = strconv.Itoa(c)
		}
		parts = append(parts, transformClasses+"="+strings.Join(cs, "/"))
	}
	return strings.Join(parts, "+")
}

// Apply returns a copy of ds transformed by t: the kept samples, in their
// order, each image transformed. ds itself is left unchanged. It refuses a
// test set that is not uint8, a shift on one-dimensional samples, and a
// class selection that keeps no sample.
func (t *Transform) Apply(ds *Dataset) (*Dataset, error) {
	if ds.DType != wire.Uint8 {
		return nil, fmt.Errorf("transform %q: test set samples are %s, transforms work on uint8 images", t, ds.DType)
	}
	if len(ds.Shape) == 0 {
		return nil, fmt.Errorf("transform %q: test set samples have no shape", t)
	}
	width := ds.Shape[len(ds.Shape)-1]
	if len(ds.Shape) < 2 && slices.ContainsFunc(t.steps, func(s step) bool { return s.kind == transformShift }) {
		return nil, fmt.Errorf("transform %q: shift needs images of at least 2 dimensions, samples have shape %v", t, ds.Shape)
	}
	out := &Dataset{DType: ds.DType, Shape: slices.Clone(ds.Shape)}
	for i, s := range ds.Samples {
		if t.classes != nil && !slices.Contains(t.classes, ds.Labels[i]) {
			continue
		}
		out.Samples = append(out.Samples, t.Image(i, s, width))
		out.Labels = append(out.Labels, ds.Labels[i])
	}
	if len(out.Samples) == 0 {
		return nil, fmt.Errorf("transform %q keeps none of the %d test samples (no sample has one of those labels)", t, len(ds.Samples))
	}
	return out, nil
}

// Image returns a transformed copy of img, the test set's sample index:
// uint8 pixels, rows of width pixels (the last dimension). The index seeds
// the noise, so a sample gets the same noise wherever it is sent from.
func (t *Transform) Image(index int, img []byte, width int) []byte {
	px := make([]float64, len(img))
	for j, b := range img {
		px[j] = float64(b)
	}
	for _, s := range t.steps {
		switch s.kind {
		case transformNoise:
			rng := rand.New(rand.NewPCG(t.seed, uint64(index)))
			for j := range px {
				px[j] = clampPixel(px[j] + rng.NormFloat64()*s.value*255)
			}
		case transformContrast:
			mean := 0.0
			for _, v := range px {
				mean += v
			}
			mean /= float64(len(px))
			for j := range px {
				px[j] = clampPixel(mean + s.value*(px[j]-mean))
			}
		case transformBrightness:
			for j := range px {
				px[j] = clampPixel(px[j] + s.value)
			}
		case transformInvert:
			for j := range px {
				px[j] = 255 - px[j]
			}
		case transformShift:
			shiftRows(px, width, int(s.value))
		}
	}
	out := make([]byte, len(img))
	for j, v := range px {
		out[j] = byte(v)
	}
	return out
}

// clampPixel rounds v to the nearest integer and clamps it to 0..255, so
// each step sees the pixels a device could send.
func clampPixel(v float64) float64 {
	return math.Min(255, math.Max(0, math.Round(v)))
}

// shiftRows moves each row of px by n pixels to the right (n < 0: left),
// filling the uncovered pixels with 0.
func shiftRows(px []float64, width, n int) {
	for r := 0; r+width <= len(px); r += width {
		row := px[r : r+width]
		switch {
		case n >= width || -n >= width:
			clear(row)
		case n > 0:
			copy(row[n:], row[:width-n])
			clear(row[:n])
		case n < 0:
			copy(row, row[-n:])
			clear(row[width+n:])
		}
	}
}
