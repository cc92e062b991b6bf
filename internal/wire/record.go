package wire

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record headers ddnn reads and writes. Devices producing straight to Kafka
// may set HeaderID, HeaderDevice and HeaderSentAt on raw or JSON values.
const (
	// HeaderEncoding is "binary" or "json"; without it the value is sniffed.
	HeaderEncoding = "ddnn-encoding"
	HeaderID       = "ddnn-id"
	HeaderDevice   = "ddnn-device"
	// HeaderSentAt is RFC 3339 (with fraction) or integer Unix milliseconds.
	HeaderSentAt = "ddnn-sent-at"
	// HeaderDeviceSig signs a record's device claim (internal/auth
	// SignClaim): with device authentication on, the first tier believes
	// a claim only with it.
	HeaderDeviceSig = "ddnn-device-sig"
	// HeaderReason carries why a record was dead-lettered.
	HeaderReason = "ddnn-reason"
	// HeaderRoute says where a record of an uplink queue goes on the
	// remote site: RouteTier(tier) or RouteResults.
	HeaderRoute = "ddnn-route"
)

// Routes of an uplink queue's records (HeaderRoute).
const (
	routeTierPrefix = "tier:"
	// RouteResults is a result record for the results topic.
	RouteResults = "results"
)

// RouteTier is the route of a message for tier's input topic.
func RouteTier(tier string) string { return routeTierPrefix + tier }

// ParseRoute reads a HeaderRoute value: the tier it names, or "" with
// results true for RouteResults.
func ParseRoute(v string) (tier string, results bool, err error) {
	switch t, ok := strings.CutPrefix(v, routeTierPrefix); {
	case v == RouteResults:
		return "", true, nil
	case ok && t != "":
		return t, false, nil
	}
	return "", false, fmt.Errorf("header %s: %q is neither %q nor %q<tier>", HeaderRoute, v, RouteResults, routeTierPrefix)
}

// RawInput says how to read a record value that is not an envelope: the raw
// little-endian elements of one sample with this dtype and shape.
type RawInput struct {
	DType DType
	Shape []int
}

// DecodeRecord reads a record into a message. The value is the binary
// envelope, a JSON message, or (when raw is set) one sample's raw elements.
// The id comes from the envelope, else HeaderID, else the record key, else
// fallbackID (callers pass something stable per record, such as
// topic/partition/offset, so redeliveries keep their id).
func DecodeRecord(key, value []byte, headers []Header, raw *RawInput, fallbackID string) (Message, error) {
	var m Message
	var err error
	enc := ""
	for _, h := range headers {
		if h.Key == HeaderEncoding {
			enc = string(h.Value)
		}
	}
	switch {
	case enc == "binary" || (enc == "" && isBinaryMessage(value)):
		m, err = DecodeMessage(Binary, value)
	case enc == "json" || (enc == "" && startsJSONObject(value)):
		m, err = DecodeMessage(JSON, value)
	case enc != "" && enc != "raw":
		return m, fmt.Errorf("header %s: unknown encoding %q (want binary, json or raw)", HeaderEncoding, enc)
	case raw == nil:
		return m, fmt.Errorf("value of %d bytes is neither a binary nor a JSON message", len(value))
	default:
		need := NumElements(raw.Shape) * raw.DType.Size()
		if len(value) != need {
			return m, fmt.Errorf("raw value has %d bytes, want %d (%s %v)", len(value), need, raw.DType, raw.Shape)
		}
		m.Tensor = Tensor{DType: raw.DType, Shape: append([]int(nil), raw.Shape...), Data: append([]byte(nil), value...)}
	}
	if err != nil {
		return m, err
	}
	for _, h := range headers {
		switch h.Key {
		case HeaderID:
			if m.ID == "" {
				m.ID = string(h.Value)
			}
		case HeaderDevice:
			if m.Device == "" {
				m.Device = string(h.Value)
			}
		case HeaderSentAt:
			if m.SentAt.IsZero() {
				if m.SentAt, err = parseSentAt(string(h.Value)); err != nil {
					return m, err
				}
			}
		}
	}
	if m.ID == "" {
		m.ID = string(key)
	}
	if m.ID == "" {
		m.ID = fallbackID
	}
	return m, nil
}

// isBinaryMessage reports whether b starts like a binary single message
// of any version, so that one of a version this build does not read gets
// that error rather than being taken for raw elements.
func isBinaryMessage(b []byte) bool {
	return len(b) >= headerLen && string(b[:len(magic)]) == magic && b[len(magic)+1] == kindMessage
}

func startsJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func parseSentAt(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("header %s: %q is neither RFC 3339 nor Unix milliseconds", HeaderSentAt, s)
	}
	return t.UTC(), nil
}

// Result is the record written to the results topic for each exited
// message. Model is the model version of its exit tier that decided it
// (zero when the replica did not say); the record's hops header names
// every tier's.
type Result struct {
	ID         string       `json:"id"`
	Device     string       `json:"device,omitempty"`
	Tier       string       `json:"tier"`
	Class      int          `json:"class"`
	Label      string       `json:"label"`
	Confidence float32      `json:"confidence"`
	SentAt     time.Time    `json:"sent_at,omitzero"`
	ExitedAt   time.Time    `json:"exited_at"`
	Hops       []Hop        `json:"hops,omitempty"`
	Model      ModelVersion `json:"model,omitzero"`
}

// NewResult is the result of message m, which exited with decision d of
// model at exitedAt: the one place results are built from a decision.
func NewResult(m *Message, d *Decision, model ModelVersion, exitedAt time.Time) Result {
	return Result{
		ID: m.ID, Device: m.Device, Tier: d.Tier, Class: d.Class, Label: d.Label,
		Confidence: d.Confidence, SentAt: m.SentAt, ExitedAt: exitedAt, Hops: m.Hops, Model: model,
	}
}

// hopJSON is a Hop's JSON form.
type hopJSON struct {
	Tier string    `json:"tier"`
	At   time.Time `json:"at"`
}

// MarshalJSONTo writes {"tier":…,"at":…}.
func (h Hop) MarshalJSONTo(enc *jsontext.Encoder) error { return json.MarshalEncode(enc, hopJSON(h)) }

// UnmarshalJSONFrom reads {"tier":…,"at":…}.
func (h *Hop) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return json.UnmarshalDecode(dec, (*hopJSON)(h))
}

// Result records are JSON for every consumer's sake, encoded and decoded
// with the same codec as the JSON form of messages (jsondecode.go) and as
// strictly: field names match exactly, and unknown or duplicate fields
// and trailing data are errors. A batch of results, as inference functions
// post them to a funnel, is a JSON array.

// AppendResult encodes r as JSON.
func AppendResult(dst []byte, r *Result) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return dst, fmt.Errorf("result %s: %w", r.ID, err)
	}
	return append(dst, b...), nil
}

// DecodeResult reads a result record.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r, jsonDecodeOptions); err != nil {
		return Result{}, fmt.Errorf("result record: %w", jsonError(b, err))
	}
	return r, nil
}

// AppendResults encodes a batch of results as a JSON array.
func AppendResults(dst []byte, rs []Result) ([]byte, error) {
	b, err := json.Marshal(rs)
	if err != nil {
		return dst, fmt.Errorf("results: %w", err)
	}
	return append(dst, b...), nil
}

// DecodeResults reads a JSON array of results.
func DecodeResults(b []byte) ([]Result, error) {
	var rs []Result
	if err := json.Unmarshal(b, &rs, jsonDecodeOptions); err != nil {
		return nil, fmt.Errorf("results: %w", jsonError(b, err))
	}
	return rs, nil
}
