package wire_test

import (
	"fmt"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

const benchBatch = 64

// benchMessages returns a batch of messages as the edge tier sees them
// (uint8 1x28x28 images) or as the fog tier does (float32 [32] features).
func benchMessages(dtype wire.DType) []wire.Message {
	msgs := make([]wire.Message, benchBatch)
	for i := range msgs {
		tensor := uint8Tensor(uint64(i), 1, 28, 28)
		if dtype == wire.Float32 {
			tensor = float32Tensor(uint64(i), 32)
		}
		msgs[i] = wire.Message{
			ID:     fmt.Sprintf("msg-%06d", i),
			Device: "device-17",
			SentAt: t0,
			Route:  "fog",
			Hops:   []wire.Hop{{Tier: "edge", At: t0}},
			Tensor: tensor,
		}
	}
	return msgs
}

func benchDecisions() []wire.Decision {
	ds := make([]wire.Decision, benchBatch)
	for i := range ds {
		ds[i] = wire.Decision{ID: fmt.Sprintf("msg-%06d", i), Tier: "edge", Confidence: 0.41}
		if i%2 == 0 {
			ds[i].Exit, ds[i].Class, ds[i].Label, ds[i].Confidence = true, i%10, "Dress", 0.97
		} else {
			fwd := float32Tensor(uint64(i), 32)
			ds[i].Forward = &fwd
		}
	}
	return ds
}

var benchCases = []struct {
	name  string
	dtype wire.DType
	enc   wire.Encoding
}{
	{"uint8/json", wire.Uint8, wire.JSON},
	{"uint8/binary", wire.Uint8, wire.Binary},
	{"float32/json", wire.Float32, wire.JSON},
	{"float32/binary", wire.Float32, wire.Binary},
}

func reportPerMessage(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchBatch, "ns/msg")
}

// benchCodec times op on the bytes encode(nil) makes, with their length as
// the bytes processed per op.
func benchCodec(b *testing.B, encode func(dst []byte) ([]byte, error), op func(buf []byte) error) {
	b.Helper()
	buf, err := encode(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := op(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// reencode is an op for benchCodec that encodes again into buf's space.
func reencode(encode func(dst []byte) ([]byte, error)) func(buf []byte) error {
	return func(buf []byte) error {
		_, err := encode(buf[:0])
		return err
	}
}

func BenchmarkEncodeMessages(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			msgs := benchMessages(bc.dtype)
			encode := func(dst []byte) ([]byte, error) { return wire.AppendMessages(dst, bc.enc, msgs) }
			benchCodec(b, encode, reencode(encode))
			reportPerMessage(b)
		})
	}
}

func BenchmarkDecodeMessages(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			msgs := benchMessages(bc.dtype)
			benchCodec(b, func(dst []byte) ([]byte, error) { return wire.AppendMessages(dst, bc.enc, msgs) }, func(buf []byte) error {
				_, err := wire.DecodeMessages(bc.enc, buf)
				return err
			})
			reportPerMessage(b)
		})
	}
}

func BenchmarkEncodeDecisions(b *testing.B) {
	ds := benchDecisions()
	for _, enc := range encodings {
		b.Run(enc.String(), func(b *testing.B) {
			encode := func(dst []byte) ([]byte, error) { return wire.AppendDecisions(dst, enc, ds) }
			benchCodec(b, encode, reencode(encode))
			reportPerMessage(b)
		})
	}
}

func BenchmarkDecodeDecisions(b *testing.B) {
	ds := benchDecisions()
	for _, enc := range encodings {
		b.Run(enc.String(), func(b *testing.B) {
			benchCodec(b, func(dst []byte) ([]byte, error) { return wire.AppendDecisions(dst, enc, ds) }, func(buf []byte) error {
				_, err := wire.DecodeDecisions(enc, buf)
				return err
			})
			reportPerMessage(b)
		})
	}
}

// BenchmarkDecodeIngestJSON decodes what a device posts to the funnel as
// JSON: one 1x28x28 uint8 image.
func BenchmarkDecodeIngestJSON(b *testing.B) {
	m := wire.Message{ID: "msg-000001", Device: "device-17", Tensor: uint8Tensor(1, 1, 28, 28)}
	benchCodec(b, func(dst []byte) ([]byte, error) { return wire.AppendIngestJSON(dst, &m) }, func(buf []byte) error {
		_, err := wire.DecodeIngestJSON(buf, wire.Uint8, m.Tensor.Shape)
		return err
	})
}

// BenchmarkDecodeResult decodes one result record as consumers of the
// results topic read it.
func BenchmarkDecodeResult(b *testing.B) {
	r := wire.Result{ID: "msg-000001", Device: "device-17", Tier: "fog", Class: 3, Label: "Dress", Confidence: 0.93,
		SentAt: t0, ExitedAt: t0, Hops: []wire.Hop{{Tier: "edge", At: t0}, {Tier: "fog", At: t0}}}
	benchCodec(b, func(dst []byte) ([]byte, error) { return wire.AppendResult(dst, &r) }, func(buf []byte) error {
		_, err := wire.DecodeResult(buf)
		return err
	})
}

func BenchmarkAppendFloat32s(b *testing.B) {
	for _, bc := range []struct {
		name   string
		tensor wire.Tensor
		scale  float32
	}{
		{"uint8/784", uint8Tensor(1, 1, 28, 28), 1.0 / 255},
		{"float32/784", float32Tensor(1, 784), 1},
		{"float32/784/scaled", float32Tensor(1, 784), 0.5},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]float32, 0, 784)
			b.SetBytes(int64(len(bc.tensor.Data)))
			for b.Loop() {
				dst = bc.tensor.AppendFloat32s(dst[:0], bc.scale)
			}
		})
	}
}
