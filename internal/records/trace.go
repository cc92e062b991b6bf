package records

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Trace context travels with a message in its records' headers, as a W3C
// traceparent in the header of that name:
// the funnel's record for the first tier, each forward to the next tier,
// each record of an uplink queue, the result and a dead letter continue
// the trace of the message they carry. internal/telemetry's Kafka hooks
// write and read them with TracePropagator when tracing is on; when it is
// off records carry none.
const (
	HeaderTraceparent = "traceparent"
	// HeaderTracestate is never written (TracePropagator).
	HeaderTracestate = "tracestate"
)

// TraceHeaderBytes is what the traceparent header adds to a record as
// kafka.RecordSize counts it: a record written with tracing on must fit
// kafka.max_record_bytes less this.
const TraceHeaderBytes = 5 + len(HeaderTraceparent) + 5 + 55

// TracePropagator writes and reads trace context in record headers (and
// in the HTTP headers of ddnn's calls and a device's ingest): the W3C
// traceparent only, one header of 55 bytes. Neither baggage nor a
// tracestate (up to 32 members of 512 bytes) a device sends travels on:
// they would grow every record of the message's path by what the device
// chose.
var TracePropagator propagation.TextMapPropagator = traceparentOnly{}

// traceparentOnly is W3C trace context without its tracestate.
type traceparentOnly struct{}

var w3c = propagation.TraceContext{}

func (traceparentOnly) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	w3c.Inject(ctx, noTracestate{c})
}

func (traceparentOnly) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return w3c.Extract(ctx, noTracestate{c})
}

func (traceparentOnly) Fields() []string { return []string{HeaderTraceparent} }

// noTracestate hides and drops the tracestate of the carrier it wraps.
type noTracestate struct{ propagation.TextMapCarrier }

func (c noTracestate) Get(key string) string {
	if key == HeaderTracestate {
		return ""
	}
	return c.TextMapCarrier.Get(key)
}

func (c noTracestate) Set(key, value string) {
	if key != HeaderTracestate {
		c.TextMapCarrier.Set(key, value)
	}
}

// TraceCarrier is rec's headers as the carrier of TracePropagator: Set
// replaces a header of the key, Get reads the first.
type TraceCarrier struct{ Record *kgo.Record }

var _ propagation.TextMapCarrier = TraceCarrier{}

// Get is the value of the first header called key, "" without one.
func (c TraceCarrier) Get(key string) string {
	for _, h := range c.Record.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the value of the header called key, or adds one.
func (c TraceCarrier) Set(key, value string) {
	for i, h := range c.Record.Headers {
		if h.Key == key {
			c.Record.Headers[i].Value = []byte(value)
			return
		}
	}
	c.Record.Headers = append(c.Record.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys are the keys of rec's headers.
func (c TraceCarrier) Keys() []string {
	ks := make([]string, len(c.Record.Headers))
	for i, h := range c.Record.Headers {
		ks[i] = h.Key
	}
	return ks
}

// TraceOf is the trace context rec's headers carry: a remote span context,
// invalid when rec carries none.
func TraceOf(rec *kgo.Record) trace.SpanContext {
	return trace.SpanContextFromContext(TracePropagator.Extract(context.Background(), TraceCarrier{rec}))
}

// SetTrace writes the span context in ctx into rec's headers, replacing
// what they carried; nothing when ctx has none.
func SetTrace(ctx context.Context, rec *kgo.Record) {
	TracePropagator.Inject(ctx, TraceCarrier{rec})
}
