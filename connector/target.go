package connector

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/records"
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
	// accepted reads the answer of a call the peer accepted (2xx) for
	// batch and says what becomes of each record. An error is the
	// answer's fault: the call failed.
	accepted(call request, batch []item, answer reply) ([]settled, error)
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
	// producer, when set, names the model that wrote the call's forwards
	// (httpapi.HeaderProducer), which the replica must accept.
	producer string
}

// reply is a call's answer: its body, when the call was sent and how long
// it took, the replica that answered (host:port) and the model it said it
// ran (httpapi.HeaderModel).
type reply struct {
	body    []byte
	sent    time.Time
	took    time.Duration
	replica string
	model   wire.ModelVersion
}

// tierTarget invokes a tier's inference replicas with batches of messages.
type tierTarget struct {
	enc wire.Encoding
	// raw, set for the first tier, reads raw samples devices produced.
	raw *wire.RawInput
	// claims, set for the first tier with device authentication, checks
	// the records' device claims.
	claims *auth.Claims
	// decisions turns the function's answers into records.
	decisions *decisionWriter
}

// decode reads a message; a forward's route is the model that wrote it
// (the last hop's), so that a call carries forwards of one producer,
// which the replica must accept (httpapi.HeaderProducer).
func (t *tierTarget) decode(r *kgo.Record) (item, error) {
	m, err := records.DecodeMessage(r, t.raw)
	if err == nil {
		err = records.CheckClaim(t.claims, r, m.Device)
	}
	it := item{rec: r, msg: m}
	if t.raw == nil {
		it.producer = records.LastHopModel(r).String()
		it.route = it.producer
	}
	return it, err
}

func (t *tierTarget) request(batch []item) (request, error) {
	body, err := appendMessages(t.enc, batch)
	return request{path: httpapi.PathInfer, contentType: t.enc.ContentType(), body: body, producer: batch[0].producer}, err
}

// accepted: the function answered its decisions, which become records.
func (t *tierTarget) accepted(_ request, batch []item, answer reply) ([]settled, error) {
	return t.decisions.write(batch, answer)
}

func (*tierTarget) chargeable() bool   { return true }
func (*tierTarget) refusesWhole() bool { return false }
func (*tierTarget) peer() string       { return "replica" }
func (*tierTarget) answerer() string   { return "function" }
func (*tierTarget) downMessage() string {
	return "tier down: no replica answers; records wait and are retried, lag grows"
}
func (*tierTarget) upMessage() string { return "tier up again" }

// appendMessages is the messages of batch as one wire batch.
func appendMessages(enc wire.Encoding, batch []item) ([]byte, error) {
	msgs := make([]wire.Message, len(batch))
	for i := range batch {
		msgs[i] = batch[i].msg
	}
	return wire.AppendMessages(nil, enc, msgs)
}
