package pipeline

import "github.com/ddnn-continuum/ddnn/internal/wire"

// WireEncoding names how messages travel between a pipeline's parts.
type WireEncoding string

// Wire encodings.
const (
	EncodingBinary WireEncoding = "binary"
	EncodingJSON   WireEncoding = "json"
)

// Encoding is the wire encoding messages travel in.
func (p *Pipeline) Encoding() wire.Encoding {
	if p.WireEncoding == EncodingJSON {
		return wire.JSON
	}
	return wire.Binary
}

// Envelope bounds of one sample besides its data: the id, device and
// fields around them in a JSON ingest body or a Kafka record.
const (
	ingestEnvelopeBytes = 64 << 10
	recordEnvelopeBytes = 4 << 10
)

// IngestBytes is the largest valid ingest body for the input: raw bytes,
// or JSON with each element written at its longest (a float32 as a
// float64 text with exponent and sign, a uint8 with spaces around it) and
// room for the id, device and whitespace.
func (in *Input) IngestBytes() int64 {
	perElement := 8 // " 255, " and a little
	if in.DType == wire.Float32 {
		perElement = 32 // "-2.2250738585072014e-308, "
	}
	return int64(max(0, wire.NumElements(in.Shape))*perElement + ingestEnvelopeBytes)
}

// RecordBytes bounds the Kafka record of one input sample: its data plus
// the envelope.
func (in *Input) RecordBytes() int {
	return max(0, wire.NumElements(in.Shape))*in.DType.Size() + recordEnvelopeBytes
}
