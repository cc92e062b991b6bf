package inference

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// attrConfidence is the exit score a decision was made on.
const attrConfidence = attribute.Key("ddnn.confidence")

// traceDecisions records the inference of a batch call when tracing is on:
// one span per message the caller traced (telemetry.HeaderTraceparents),
// a child of the caller's span for it, from start (the call's arrival) to
// now, with the tier, the model's sha and the decision; and it answers
// their contexts in the same header, so that the records the decisions
// become continue from them. A call without trace context gets no span.
func (f *Function) traceDecisions(w http.ResponseWriter, r *http.Request, model string, msgs []wire.Message, ds []wire.Decision, start time.Time) {
	parents := telemetry.Batch(r.Header, len(msgs))
	if parents == nil {
		return
	}
	scs := make([]trace.SpanContext, len(msgs))
	for i, parent := range parents {
		if !parent.IsValid() {
			continue
		}
		ctx := trace.ContextWithRemoteSpanContext(r.Context(), parent)
		_, span := f.tr.Tracer().Start(ctx, "infer "+f.tier.Name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
			trace.WithAttributes(
				telemetry.AttrTier.String(f.tier.Name),
				telemetry.AttrModelSHA.String(model),
				telemetry.AttrMessage.String(msgs[i].ID),
				telemetry.AttrBatch.Int(len(msgs)),
				telemetry.AttrExit.Bool(ds[i].Exit),
				attrConfidence.Float64(float64(ds[i].Confidence)),
			))
		scs[i] = span.SpanContext()
		span.End()
	}
	telemetry.SetBatch(w.Header(), scs)
}
