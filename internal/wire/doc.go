// Package wire owns the encoding and decoding of everything ddnn sends
// between tiers: messages (one sample and its tensor), decisions (an
// inference function's answer) and batches of either, in two encodings:
//
//   - JSON (ContentTypeJSON), the human-friendly form people type with curl;
//   - a compact, versioned binary form (ContentTypeBinary) for the hot path.
//
// It also owns the JSON of what devices post to a funnel (the ingest form),
// of result records and of error answers, and the compact form of a
// ModelVersion (the sha256 prefix and version label of the model that
// made a decision) that answers, hops and results carry. All JSON is read with
// github.com/go-json-experiment/json (the upstream of encoding/json/v2),
// which also writes results and error answers; messages, decisions and the
// ingest form, heavy with tensor data, are written by hand for speed.
//
// It is the only code in ddnn that turns these values into bytes or back.
// Decoders are strict and defensive: they reject unknown fields, trailing
// data and structurally invalid tensors, and they check every declared
// length against the remaining input before allocating, so a small
// malicious input cannot cause a large allocation. They do not check that
// float32 elements are finite; callers that need that call [Tensor.Validate].
//
// The package must not do I/O, logging or metrics, and must not know about
// transports (HTTP, Kafka), models or exit policies: it only converts
// between values and bytes.
package wire
