package telemetry

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/records"
)

// HeaderTraceparents carries the trace context of each message of a batch
// call (a connector's call to a replica, an uplink's delivery to a funnel)
// in the batch's order: W3C traceparent values separated by commas, "-"
// for a message whose trace is not sampled. A replica answers with the
// same header for the spans it made, one per message, so that the records
// a decision becomes continue from the inference.
//
// A single traceparent cannot stand for the batch: its messages belong
// to as many traces.
const HeaderTraceparents = "Ddnn-Traceparents"

// MaxBatchHeaderBytes bounds HeaderTraceparents: 56 bytes a message, so
// a call of up to 1,097 messages (the default max_batch is 1,024) carries
// its contexts within the 64 KiB of header a funnel's delivery listener
// takes. A larger call carries none: its messages' traces end at the
// caller's span for them.
const MaxBatchHeaderBytes = 60 << 10

// noTrace stands for a message without a sampled trace in
// HeaderTraceparents.
const noTrace = "-"

// noContext is the context a value is injected from or extracted into.
var noContext = context.Background()

// SetBatch writes scs, one per message of a batch call, to h; nothing
// when none is sampled or they would pass MaxBatchHeaderBytes.
func SetBatch(h http.Header, scs []trace.SpanContext) {
	if len(scs)*56-1 > MaxBatchHeaderBytes {
		return
	}
	var b strings.Builder
	any := false
	for i, sc := range scs {
		if i > 0 {
			b.WriteByte(',')
		}
		if !sc.IsSampled() {
			b.WriteString(noTrace)
			continue
		}
		any = true
		b.WriteString(traceparent(sc))
	}
	if any {
		h.Set(HeaderTraceparents, b.String())
	}
}

// Batch reads the contexts of a call of n messages from h: nil when h has
// none, or not one per message (a caller that is not ddnn's); an entry
// that does not read is the zero SpanContext (no parent).
func Batch(h http.Header, n int) []trace.SpanContext {
	v := h.Get(HeaderTraceparents)
	if v == "" || strings.Count(v, ",") != n-1 {
		return nil
	}
	scs := make([]trace.SpanContext, n)
	for i := range scs {
		var tp string
		tp, v, _ = strings.Cut(v, ",")
		if tp != noTrace {
			scs[i] = parse(tp)
		}
	}
	return scs
}

// traceparent is sc as a W3C traceparent value.
func traceparent(sc trace.SpanContext) string {
	c := propagation.MapCarrier{}
	records.TracePropagator.Inject(trace.ContextWithSpanContext(noContext, sc), c)
	return c.Get("traceparent")
}

// parse reads a W3C traceparent value; the zero SpanContext when it does
// not read.
func parse(tp string) trace.SpanContext {
	ctx := records.TracePropagator.Extract(noContext, propagation.MapCarrier{"traceparent": strings.TrimSpace(tp)})
	return trace.SpanContextFromContext(ctx)
}
