// Package httpapi owns the HTTP routes ddnn's parts serve devices and
// each other: the funnel's ingest and delivery routes, an inference
// function's batch route, the replica list a replica manager serves for
// connectors (with its entry and the client that reads it), the status
// routes of an admin address, and the JSON error answer every one of them
// writes (wire.ErrorBody). Servers and clients both name a route from
// here, so the two cannot drift apart.
//
// It serves nothing itself and knows nothing of Kafka or models.
package httpapi

import (
	"net/http"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Routes of a funnel: PathIngest on the device zone, the others on the
// delivery zone.
const (
	PathIngest  = "/v1/ingest"
	PathTiers   = "/v1/tiers/" // + tier name (TierPath): a batch of messages for the tier
	PathResults = "/v1/results"
	PathDrain   = "/v1/drain" // stop taking device data
)

// PathInfer is where an inference function takes batches.
const PathInfer = "/v1/infer"

// Routes of `ddnn up`'s admin address: the pipeline's status now (a
// status.Snapshot as JSON), each tier's last minute (the status page's
// charts) and the pipeline it runs (an apply.Description, which ddnn
// apply plans against).
const (
	PathStatus        = "/v1/status"
	PathStatusHistory = "/v1/status/history"
	PathPipeline      = "/v1/pipeline"
	PathApply         = "/v1/apply" // POST, service token: apply the file ddnn up runs
)

// HeaderModel is the header of an inference function's answer that names
// the model it ran, a wire.ModelVersion in its compact form: the first 12
// hex digits of the model file's sha256, then '@' and the tier's version
// label when it has one (3f9a1c0b2d4e or 3f9a1c0b2d4e@v2).
const HeaderModel = "Ddnn-Model"

// HeaderProducer is the header of a connector's call that names the model
// of the previous tier that wrote the call's forwards (every message of
// a call has the same one), a wire.ModelVersion in its compact form. A
// replica whose model does not accept that producer (the tier's accepts,
// or a forward that does not fit its input) answers
// StatusNotAccepted and reads none of them; a call without it is of the
// first tier, or of forwards written before models were named.
const HeaderProducer = "Ddnn-Producer"

// StatusNotAccepted is a replica's answer to a call whose forwards its
// model does not accept (HeaderProducer): 421 Misdirected Request, as the
// call belongs to another replica. The connector sends them to a replica
// that accepts them, or keeps them until one runs; it never dead-letters
// them for it.
const StatusNotAccepted = http.StatusMisdirectedRequest

// TierPath is the funnel route that takes a batch of messages for tier.
func TierPath(tier string) string { return PathTiers + tier }

// WriteError answers code with body, the JSON error answer of every ddnn
// HTTP service (funnels and inference functions); a 503 asks to retry
// after a second.
func WriteError(w http.ResponseWriter, code int, body *wire.ErrorBody) {
	w.Header().Set("Content-Type", wire.ContentTypeJSON)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	w.Write(wire.AppendErrorBody(nil, body))
}
