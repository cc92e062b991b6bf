package funnel

import (
	"context"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// The funnel's spans when tracing is on: an HTTP ingest gets otelhttp's
// server span (DeviceHandler), continuing the device's traceparent; a CoAP
// ingest a server span of its own (CoAP carries no trace context); each
// message or result of a delivery a span continuing the context its
// uplink sent for it (telemetry.HeaderTraceparents). The publish span of
// each record continues the message's span.

// SetTracing makes the funnel trace with t (nil: off); call it before
// serving. Its Kafka client needs t.KafkaOpts too.
func (f *Funnel) SetTracing(t *telemetry.Tracing) { f.tr = t }

// recordLimit bounds the records the funnel writes: kafka.max_record_bytes,
// less the traceparent the Kafka hooks add when tracing is on.
func (f *Funnel) recordLimit() int {
	if f.tr.Enabled() {
		return f.site.Kafka.MaxRecordBytes - records.TraceHeaderBytes
	}
	return f.site.Kafka.MaxRecordBytes
}

// startDeliveries starts a span for each of the n messages (or results,
// with tier "") of delivery r, a child of the context its uplink sent for
// it: the message crossed the WAN link into this site.
func (f *Funnel) startDeliveries(r *http.Request, tier string, n int, id func(int) string) []trace.Span {
	parents := telemetry.Batch(r.Header, n)
	name := "deliver results"
	if tier != "" {
		name = "deliver " + tier
	}
	spans := make([]trace.Span, n)
	for i := range spans {
		ctx := context.Background()
		if parents != nil {
			ctx = trace.ContextWithRemoteSpanContext(ctx, parents[i])
		}
		_, spans[i] = f.tr.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(telemetry.AttrSite.String(f.site.Name), telemetry.AttrMessage.String(id(i)), telemetry.AttrBatch.Int(n)))
		if tier != "" {
			spans[i].SetAttributes(telemetry.AttrTier.String(tier))
		}
	}
	return spans
}

// startCoAPIngest starts the server span of a CoAP ingest.
func (f *Funnel) startCoAPIngest(ctx context.Context, route string) (context.Context, trace.Span) {
	return f.tr.Tracer().Start(ctx, "POST coap "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(telemetry.AttrSite.String(f.site.Name)))
}

// withSpans makes each record's publish span continue its message's span
// (produce keeps the produce deadline); nothing without spans.
func withSpans(recs []*kgo.Record, spans []trace.Span) {
	if spans == nil {
		return
	}
	for i, rec := range recs {
		rec.Context = trace.ContextWithSpan(context.Background(), spans[i])
	}
}

// endSpans ends spans, marking them failed with err.
func endSpans(spans []trace.Span, err error) {
	for _, s := range spans {
		if err != nil {
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}
