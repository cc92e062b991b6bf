package records

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// DecodeMessage reads a message record, the one way ddnn's consumers of
// message topics do: an envelope, or with raw a raw sample of the first
// tier's topic, whose ids must then keep wire.CheckID's rule (devices may
// produce there). A record without an id gets "<topic>-<partition>-<offset>",
// stable across redeliveries; without a send time, the record's timestamp.
func DecodeMessage(r *kgo.Record, raw *wire.RawInput) (wire.Message, error) {
	decode := wire.DecodeRecord
	if raw != nil {
		// The first tier's topic, which devices may produce to: the ids
		// they give must keep the rule.
		decode = wire.DecodeDeviceRecord
	}
	m, err := decode(r.Key, r.Value, headers(r), raw, fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset))
	if err != nil {
		return m, err
	}
	if m.SentAt.IsZero() {
		// Produced straight to Kafka without a send time: the record's
		// own timestamp is the best we have.
		m.SentAt = r.Timestamp.UTC()
	}
	return m, nil
}

// headers converts a record's headers for wire.DecodeRecord.
func headers(r *kgo.Record) []wire.Header {
	hs := make([]wire.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = wire.Header{Key: h.Key, Value: h.Value}
	}
	return hs
}

// Header is the value of r's last header called key, "" without one.
func Header(r *kgo.Record, key string) string {
	var v string
	for _, h := range r.Headers {
		if h.Key == key {
			v = string(h.Value)
		}
	}
	return v
}

// CheckClaim returns an *auth.ClaimError when record r of the first
// tier's topic claims device without its signature (wire.HeaderDeviceSig,
// SignDevice): Kafka does not tell who produced a record, so an unsigned
// claim may be any device user's. A record that claims no device passes,
// as does any record when claims is nil (devices are not authenticated).
func CheckClaim(claims *auth.Claims, r *kgo.Record, device string) error {
	if claims == nil || device == "" {
		return nil
	}
	return claims.Verify(device, r.Value, Header(r, wire.HeaderDeviceSig))
}

// DecodeFailure is the dead-letter reason of a record that did not
// decode: "invalid id: …" for an id or device that breaks wire.CheckID's
// rule, "unverified device claim: …" for a claim without its signature
// (CheckClaim), else "undecodable record: …".
func DecodeFailure(err error) string {
	var ie *wire.IDError
	if errors.As(err, &ie) {
		return "invalid id: " + err.Error()
	}
	var ce *auth.ClaimError
	if errors.As(err, &ce) {
		return "unverified device claim: " + err.Error()
	}
	return "undecodable record: " + err.Error()
}

// DecodeResult reads a result record.
func DecodeResult(r *kgo.Record) (wire.Result, error) {
	return wire.DecodeResult(r.Value)
}

// Route is the route of a record of an uplink queue (wire.HeaderRoute):
// the tier it is for, or results.
func Route(r *kgo.Record) (tier string, results bool, err error) {
	return wire.ParseRoute(Header(r, wire.HeaderRoute))
}
