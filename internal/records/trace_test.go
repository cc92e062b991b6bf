package records

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestTrace: a record carries its message's trace context as a W3C
// traceparent header beside its own headers; writing it again replaces
// it, and a record without one has none.
func TestTrace(t *testing.T) {
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: wire.HeaderID, Value: []byte("m1")}}}
	if TraceOf(rec).IsValid() {
		t.Fatal("trace context on a record without one")
	}
	for i, b := range []byte{1, 2} {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{b}, SpanID: trace.SpanID{b}, TraceFlags: trace.FlagsSampled})
		SetTrace(trace.ContextWithSpanContext(context.Background(), sc), rec)
		got := TraceOf(rec)
		if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() {
			t.Errorf("write %d: read %v, want %v", i, got, sc)
		}
		if len(rec.Headers) != 2 || Header(rec, wire.HeaderID) != "m1" || Header(rec, HeaderTraceparent) == "" {
			t.Errorf("write %d: headers %v", i, rec.Headers)
		}
	}
}

// TestTraceNoTracestate: a device's tracestate, however long, is neither
// read nor written on: a record carries one traceparent header.
func TestTraceNoTracestate(t *testing.T) {
	in := propagation.MapCarrier{
		HeaderTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		HeaderTracestate:  "big=" + strings.Repeat("x", 250),
	}
	ctx := TracePropagator.Extract(context.Background(), in)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.TraceState().Len() != 0 {
		t.Fatalf("extracted %v, tracestate %q", sc, sc.TraceState())
	}
	ts, err := trace.ParseTraceState("big=" + strings.Repeat("x", 250))
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{}
	SetTrace(trace.ContextWithSpanContext(context.Background(), sc.WithTraceState(ts)), rec)
	if len(rec.Headers) != 1 || rec.Headers[0].Key != HeaderTraceparent || len(rec.Headers[0].Value) != 55 {
		t.Errorf("headers %v", rec.Headers)
	}
}
