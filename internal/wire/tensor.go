package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Limits on tensors that the encoders and decoders accept.
const (
	// MaxRank is the largest number of dims in a tensor's shape.
	MaxRank = 8
	// MaxElements is the largest number of elements in a tensor.
	MaxElements = 1 << 24
)

// Tensor is one sample's tensor: no batch axis.
type Tensor struct {
	DType DType
	Shape []int  // per-sample shape, e.g. [1 28 28]; every dim >= 1
	Data  []byte // raw little-endian elements; len(Data) == NumElements(Shape)*DType.Size()
}

// NumElements returns the number of elements of a tensor with the given
// shape: the product of its dims, 1 for an empty shape. It returns -1 if a
// dim is negative or the product overflows an int.
func NumElements(shape []int) int {
	for _, d := range shape {
		if d < 0 {
			return -1
		}
	}
	if slices.Contains(shape, 0) {
		return 0
	}
	n := 1
	for _, d := range shape {
		if n > math.MaxInt/d {
			return -1
		}
		n *= d
	}
	return n
}

// Len returns the number of elements of t according to its shape.
func (t Tensor) Len() int { return NumElements(t.Shape) }

// checkShape checks that shape has 1..MaxRank dims, each >= 1, and at most
// MaxElements elements, and returns the number of elements.
func checkShape(shape []int) (int, error) {
	if len(shape) < 1 || len(shape) > MaxRank {
		return 0, fmt.Errorf("shape %v: rank %d is not in 1..%d", shape, len(shape), MaxRank)
	}
	n := int64(1)
	for i, d := range shape {
		if d < 1 {
			return 0, fmt.Errorf("shape %v: dim %d is %d, want >= 1", shape, i, d)
		}
		if int64(d) > MaxElements || n*int64(d) > MaxElements {
			return 0, fmt.Errorf("shape %v: more than %d elements", shape, MaxElements)
		}
		n *= int64(d)
	}
	return int(n), nil
}

// checkStructure checks everything Validate does except that float32
// elements are finite. It returns the number of elements.
func (t *Tensor) checkStructure() (int, error) {
	if !t.DType.valid() {
		return 0, fmt.Errorf("dtype %d is invalid", uint8(t.DType))
	}
	n, err := checkShape(t.Shape)
	if err != nil {
		return 0, err
	}
	if want := n * t.DType.Size(); len(t.Data) != want {
		return 0, fmt.Errorf("data is %d bytes, want %d for %d %s elements", len(t.Data), want, n, t.DType)
	}
	return n, nil
}

// Validate reports whether t is well formed: its dtype is valid, its shape
// has 1..MaxRank dims, each >= 1, and at most MaxElements elements, its data
// length matches, and, for float32, every element is finite. The error
// names the element at fault, e.g. "element 17 is NaN".
func (t Tensor) Validate() error {
	if _, err := t.checkStructure(); err != nil {
		return err
	}
	if t.DType == Float32 {
		if i := nonFinite(t.Data); i >= 0 {
			return fmt.Errorf("element %d is %s", i, float32Name(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
	}
	return nil
}

// nonFinite returns the index of the first NaN or infinite element of
// little-endian float32 data, or -1.
func nonFinite(data []byte) int {
	for i := 0; len(data) >= 4; i++ {
		if binary.LittleEndian.Uint32(data)&0x7f800000 == 0x7f800000 {
			return i
		}
		data = data[4:]
	}
	return -1
}

// float32Name describes the non-finite float32 with the given bits.
func float32Name(bits uint32) string {
	switch {
	case bits&0x007fffff != 0:
		return "NaN"
	case bits&0x80000000 != 0:
		return "-Inf"
	}
	return "+Inf"
}

// Float32Tensor returns a float32 tensor with the given shape and elements.
// It copies shape and v; it does not check that they match (see Validate).
func Float32Tensor(shape []int, v []float32) Tensor {
	data := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
	}
	return Tensor{DType: Float32, Shape: slices.Clone(shape), Data: data}
}

// AppendFloat32s appends the elements of t to dst converted to float32 and
// multiplied by scale, and returns the extended slice. A scale of 0 is
// taken as 1, and a scale of 1 leaves float32 elements untouched. It
// converts len(t.Data)/t.DType.Size() elements, ignoring the shape; for an
// invalid dtype it returns dst unchanged.
func (t Tensor) AppendFloat32s(dst []float32, scale float32) []float32 {
	if scale == 0 {
		scale = 1
	}
	size := t.DType.Size()
	if size == 0 {
		return dst
	}
	n := len(t.Data) / size
	dst = slices.Grow(dst, n)
	out := dst[len(dst) : len(dst)+n]
	switch t.DType {
	case Uint8:
		data := t.Data[:len(out)]
		for i, b := range data {
			out[i] = float32(b) * scale
		}
	case Float32:
		if scale == 1 {
			float32sFromLE(out, t.Data)
		} else {
			scaledFloat32sFromLE(out, t.Data, scale)
		}
	}
	return dst[:len(dst)+n]
}

// float32sFromLE sets out to the little-endian float32s in data, which
// holds at least len(out) of them. It is unrolled by hand: the compiler
// then drops most bounds checks, which doubles the speed.
func float32sFromLE(out []float32, data []byte) {
	for len(out) >= 4 && len(data) >= 16 {
		out[0] = math.Float32frombits(binary.LittleEndian.Uint32(data[0:4]))
		out[1] = math.Float32frombits(binary.LittleEndian.Uint32(data[4:8]))
		out[2] = math.Float32frombits(binary.LittleEndian.Uint32(data[8:12]))
		out[3] = math.Float32frombits(binary.LittleEndian.Uint32(data[12:16]))
		out, data = out[4:], data[16:]
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
}

// scaledFloat32sFromLE is float32sFromLE multiplying by scale.
func scaledFloat32sFromLE(out []float32, data []byte, scale float32) {
	for len(out) >= 4 && len(data) >= 16 {
		out[0] = math.Float32frombits(binary.LittleEndian.Uint32(data[0:4])) * scale
		out[1] = math.Float32frombits(binary.LittleEndian.Uint32(data[4:8])) * scale
		out[2] = math.Float32frombits(binary.LittleEndian.Uint32(data[8:12])) * scale
		out[3] = math.Float32frombits(binary.LittleEndian.Uint32(data[12:16])) * scale
		out, data = out[4:], data[16:]
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])) * scale
	}
}
