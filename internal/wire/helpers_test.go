package wire_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// t0 is a fixed time with nanoseconds, as decoders return it (UTC).
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)

// uint8Tensor returns a uint8 tensor of the given shape with
// pseudo-random data from seed.
func uint8Tensor(seed uint64, shape ...int) wire.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	data := make([]byte, wire.NumElements(shape))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return wire.Tensor{DType: wire.Uint8, Shape: shape, Data: data}
}

// float32Tensor returns a float32 tensor of the given shape with
// pseudo-random finite values of varied magnitude from seed.
func float32Tensor(seed uint64, shape ...int) wire.Tensor {
	r := rand.New(rand.NewPCG(seed, 2))
	v := make([]float32, wire.NumElements(shape))
	for i := range v {
		v[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(9)-4)))
	}
	return wire.Float32Tensor(shape, v)
}

// edgeFloats are float32 values whose text form is easy to get wrong.
var edgeFloats = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 0.1, 1.0 / 3, 0.97,
	math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32,
	1.17549435e-38, // smallest normal
	16777216, 16777217, 1e-7, 1e21, 123456.79,
}

func roundTripMessages() map[string]wire.Message {
	return map[string]wire.Message{
		"uint8 all fields": {
			ID: "a1", Device: "d7", SentAt: t0, Route: "fog",
			Hops:   []wire.Hop{{Tier: "edge", At: t0.Add(time.Millisecond)}, {Tier: "fog", At: t0.Add(2 * time.Second)}},
			Tensor: uint8Tensor(1, 1, 28, 28),
		},
		"float32": {
			ID: "a2", Device: "d7", SentAt: t0,
			Tensor: float32Tensor(2, 32),
		},
		"float32 edge values": {
			ID:     "a3",
			Tensor: wire.Float32Tensor([]int{len(edgeFloats)}, edgeFloats),
		},
		"only a tensor": {
			Tensor: uint8Tensor(3, 1),
		},
		"hop with zero time": {
			ID:     "a4",
			Hops:   []wire.Hop{{Tier: "edge"}, {Tier: ""}},
			Tensor: uint8Tensor(4, 3),
		},
		"times before 1970 and far ahead": {
			SentAt: time.Date(1900, 1, 2, 3, 4, 5, 6, time.UTC),
			Hops:   []wire.Hop{{Tier: "cloud", At: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)}},
			Tensor: uint8Tensor(5, 2, 2),
		},
		"strings needing escapes": {
			ID:     "quote\" backslash\\ nl\n tab\t nul\x00 del\x7f",
			Device: "ünï€ode 🚀 \u2028\u2029 <&>",
			Route:  "/",
			Tensor: uint8Tensor(6, 1),
		},
		"rank 8": {
			ID:     "a5",
			Tensor: float32Tensor(7, 1, 2, 1, 2, 1, 2, 1, 2),
		},
	}
}

func roundTripDecisions() map[string]wire.Decision {
	fwd := float32Tensor(10, 32)
	fwdU8 := uint8Tensor(11, 4, 4)
	return map[string]wire.Decision{
		"exit": {ID: "a1", Tier: "edge", Exit: true, Class: 3, Label: "Dress", Confidence: 0.97},
		"exit class 0 without label": {
			ID: "a2", Tier: "fog", Exit: true, Class: 0, Confidence: 1,
		},
		"forward float32": {ID: "a3", Tier: "edge", Confidence: 0.41, Forward: &fwd},
		"forward uint8":   {ID: "a4", Tier: "edge", Confidence: 0.5, Forward: &fwdU8},
		"forward nothing": {ID: "a5", Tier: "cloud", Confidence: 0},
		"not exit with class and label": {
			ID: "a6", Tier: "edge", Class: -7, Label: "Bag", Confidence: math.SmallestNonzeroFloat32,
		},
		"empty id": {Tier: "edge", Exit: true, Class: 9, Label: "Ankle boot", Confidence: 0.5},
	}
}

var encodings = []wire.Encoding{wire.JSON, wire.Binary}

func checkEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, describe(got), describe(want))
	}
}

// describe prints v in full, including the contents of pointers.
func describe(v any) string {
	switch v := v.(type) {
	case []wire.Decision:
		s := "["
		for _, d := range v {
			s += describe(d) + " "
		}
		return s + "]"
	case wire.Decision:
		f := "<nil>"
		if v.Forward != nil {
			f = fmt.Sprintf("&%+v", *v.Forward)
		}
		v.Forward = nil
		return fmt.Sprintf("%+v forward=%s", v, f)
	}
	return fmt.Sprintf("%+v", v)
}

// Builders for hand-made binary inputs.

func uv(n uint64) []byte { return binary.AppendUvarint(nil, n) }
func sv(n int64) []byte  { return binary.AppendVarint(nil, n) }
func str(s string) []byte {
	return append(uv(uint64(len(s))), s...)
}
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var (
	msgsHeader = []byte("DDN\x01M")
	decsHeader = []byte("DDN\x01D")
	msgHeader  = []byte("DDN\x01m")
)

// u8Tensor is the binary form of a uint8 tensor with shape [len(data)].
func u8Tensor(data ...byte) []byte {
	return cat([]byte{byte(wire.Uint8)}, uv(1), uv(uint64(len(data))), uv(uint64(len(data))), data)
}

// msgItem is the binary form of a message with id "a" and the given tensor.
func msgItem(tensor []byte) []byte {
	return cat(str("a"), str(""), str(""), sv(0), uv(0), tensor)
}

// decItem is the binary form of a decision with id "a", tier "edge", the
// given flags and confidence, and then rest.
func decItem(flags byte, confidence float32, rest ...byte) []byte {
	return cat(str("a"), str("edge"), []byte{flags}, sv(0), str(""),
		binary.LittleEndian.AppendUint32(nil, math.Float32bits(confidence)), rest)
}
