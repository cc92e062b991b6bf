package connector

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// target is what a connector delivers its records to: a tier's inference
// replicas, or another site's funnel for an uplink. The connector's
// machinery (poll, batch, invoke, retry, dead-letter, commit) is the same
// for both; the target says how a record reads and what call delivers a
// batch.
type target interface {
	// decode reads a fetched record; an error dead-letters it. Items of
	// one route may share a call.
	decode(r *kgo.Record) (item, error)
	// request is the call that delivers batch, whose items share a route.
	// An error is the records' fault (they cannot be encoded).
	request(batch []item) (request, error)
	// delivered is told of each call the peer accepted.
	delivered(body []byte, records int)
	// chargeable says whether a failed call may be charged to its
	// records (see invoke): a model may fail on a record, a funnel that
	// fails is down.
	chargeable() bool
	// refusesWhole says whether the peer refuses a call as a whole (4xx)
	// without naming its bad records, so a refused batch must be split
	// until the bad one is alone; a function names them instead.
	refusesWhole() bool
	// peer names who is called ("replica") and who answers ("function")
	// in reasons; downMessage and upMessage are the logs of every peer
	// failing and of one answering again.
	peer() string
	answerer() string
	downMessage() string
	upMessage() string
}

// request is one call: a POST of body to the peer's URL plus path.
type request struct {
	path, contentType string
	body              []byte
}

// tierTarget invokes a tier's inference replicas with batches of messages.
type tierTarget struct {
	enc wire.Encoding
	// raw, set for the first tier, reads raw samples devices produced.
	raw *wire.RawInput
	// claims, set for the first tier with device authentication, checks
	// the records' device claims.
	claims *auth.Claims
}

func (t *tierTarget) decode(r *kgo.Record) (item, error) {
	m, err := DecodeMessage(r, t.raw)
	if err == nil {
		err = CheckClaim(t.claims, r, m.Device)
	}
	return item{rec: r, msg: m}, err
}

// CheckClaim returns an *auth.ClaimError when record r of the first
// tier's topic claims device without its signature (wire.HeaderDeviceSig):
// Kafka does not tell who produced a record, so an unsigned claim may be
// any device user's. A record that claims no device passes, as does any
// record when claims is nil (devices are not authenticated).
func CheckClaim(claims *auth.Claims, r *kgo.Record, device string) error {
	if claims == nil || device == "" {
		return nil
	}
	var sig string
	for _, h := range r.Headers {
		if h.Key == wire.HeaderDeviceSig {
			sig = string(h.Value)
		}
	}
	return claims.Verify(device, r.Value, sig)
}

func (t *tierTarget) request(batch []item) (request, error) {
	body, err := appendMessages(t.enc, batch)
	return request{path: httpapi.PathInfer, contentType: t.enc.ContentType(), body: body}, err
}

func (*tierTarget) delivered([]byte, int) {}
func (*tierTarget) chargeable() bool      { return true }
func (*tierTarget) refusesWhole() bool    { return false }
func (*tierTarget) peer() string          { return "replica" }
func (*tierTarget) answerer() string      { return "function" }
func (*tierTarget) downMessage() string {
	return "tier down: no replica answers; records wait and are retried, lag grows"
}
func (*tierTarget) upMessage() string { return "tier up again" }

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
	m, err := decode(r.Key, r.Value, recordHeaders(r), raw, fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset))
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

// appendMessages is the messages of batch as one wire batch.
func appendMessages(enc wire.Encoding, batch []item) ([]byte, error) {
	msgs := make([]wire.Message, len(batch))
	for i := range batch {
		msgs[i] = batch[i].msg
	}
	return wire.AppendMessages(nil, enc, msgs)
}
