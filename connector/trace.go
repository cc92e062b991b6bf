package connector

import (
	"context"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// When tracing is on, every record carries its message's trace: the Kafka
// client's hooks start a receive span for each record fetched, continuing
// the publish span in its headers. A call carries a batch of messages of
// as many traces, so it gets one span per message (startCall), a child of
// the message's receive span, whose contexts travel in the call's
// telemetry.HeaderTraceparents; the peer continues each message's trace
// with its own span (a replica's inference, a remote funnel's delivery).
// The records a decision becomes continue from the replica's span for the
// message, as it answered, else from the call's span (continueDecisions),
// so the spans of one message form one chain. A dead letter continues the
// span of the record it parks.

// startCall starts the span of each message of batch for a call to url.
func (c *Connector) startCall(batch []item, url string) []trace.Span {
	spans := make([]trace.Span, len(batch))
	for i := range batch {
		parent := batch[i].rec.Context
		if parent == nil {
			parent = context.Background()
		}
		id := batch[i].msg.ID
		if batch[i].result != nil {
			id = batch[i].result.ID
		}
		_, spans[i] = c.tr.Tracer().Start(parent, c.spanName, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(c.spanAttrs...),
			trace.WithAttributes(telemetry.AttrMessage.String(id), telemetry.AttrBatch.Int(len(batch)), telemetry.AttrPeer.String(url)),
		)
		if batch[i].attempts > 0 {
			spans[i].SetAttributes(attrAttempts.Int(batch[i].attempts))
		}
	}
	return spans
}

// attrAttempts is how many failures were charged to a message before this
// call.
const attrAttempts = attribute.Key("ddnn.attempts")

// setCallTraces sends the contexts of spans with a call.
func setCallTraces(h http.Header, spans []trace.Span) {
	scs := make([]trace.SpanContext, len(spans))
	for i, s := range spans {
		scs[i] = s.SpanContext()
	}
	telemetry.SetBatch(h, scs)
}

// endCall ends the spans of a call that answered status, or failed with
// err (a call error, or an answer that did not read).
func endCall(spans []trace.Span, status int, err error) {
	for _, s := range spans {
		switch {
		case err != nil:
			s.SetStatus(codes.Error, err.Error())
		case status/100 != 2:
			s.SetStatus(codes.Error, fmt.Sprintf("status %d", status))
		}
		s.SetAttributes(attrStatus.Int(status))
		s.End()
	}
}

// attrStatus is the HTTP status a call answered.
const attrStatus = attribute.Key("http.response.status_code")

// continueDecisions makes the record each settled item becomes continue
// its message's trace: from the peer's span for it (answered), else from
// the call's span; its produce stays bound to work. ss, spans and answered
// (when not nil) are in the batch's order.
func continueDecisions(work context.Context, ss []settled, spans []trace.Span, answered []trace.SpanContext) {
	for i := range ss {
		if ss[i].rec == nil || i >= len(spans) {
			continue
		}
		sc := spans[i].SpanContext()
		if answered != nil && answered[i].IsValid() {
			sc = answered[i]
		}
		ss[i].rec.Context = trace.ContextWithSpanContext(work, sc)
	}
}

// recordLimit bounds a dead letter: kafka.max_record_bytes, less the
// traceparent the Kafka hooks add when tracing is on.
func (c *Connector) recordLimit() int {
	if c.tr.Enabled() {
		return c.site.Kafka.MaxRecordBytes - records.TraceHeaderBytes
	}
	return c.site.Kafka.MaxRecordBytes
}

// deadLetterContext is the context a dead letter of rec is produced
// under: rec's trace when tracing is on.
func (c *Connector) deadLetterContext(rec *kgo.Record) context.Context {
	if !c.tr.Enabled() || rec.Context == nil {
		return nil
	}
	return trace.ContextWithSpan(c.work, trace.SpanFromContext(rec.Context))
}
