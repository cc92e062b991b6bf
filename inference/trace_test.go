package inference

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestTraceInfer: a call whose messages carry trace contexts gets one
// inference span per traced message, the child of its caller's span, with
// the tier, the model's sha and the decision, and answers their contexts
// in the batch's order; a message without a context and a call without
// the header get none.
func TestTraceInfer(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	_, srv := newFunction(t, "edge", Config{Tracing: telemetry.FromProvider(tp)})
	msgs := imageMessages(t, 3)
	body, err := wire.AppendMessages(nil, wire.Binary, msgs)
	if err != nil {
		t.Fatal(err)
	}
	callers := []trace.SpanContext{
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}),
		{},
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{3}, SpanID: trace.SpanID{3}, TraceFlags: trace.FlagsSampled}),
	}
	post := func(traced bool) (http.Header, []wire.Decision) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+httpapi.PathInfer, bytes.NewReader(body))
		req.Header.Set("Content-Type", wire.ContentTypeBinary)
		if traced {
			telemetry.SetBatch(req.Header, callers)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		ds, err := wire.DecodeDecisions(wire.Binary, out)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header, ds
	}

	if h, _ := post(false); h.Get(telemetry.HeaderTraceparents) != "" || len(exp.GetSpans()) != 0 {
		t.Fatalf("an untraced call: header %q, %d spans", h.Get(telemetry.HeaderTraceparents), len(exp.GetSpans()))
	}
	h, ds := post(true)
	answered := telemetry.Batch(h, len(msgs))
	if answered == nil {
		t.Fatalf("no contexts answered: %v", h)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one per traced message (2)", len(spans))
	}
	for i, caller := range callers {
		if !caller.IsValid() {
			if answered[i].IsValid() {
				t.Errorf("message %d without a context got span %v", i, answered[i])
			}
			continue
		}
		var s *tracetest.SpanStub
		for _, x := range spans {
			if x.SpanContext.SpanID() == answered[i].SpanID() {
				s = &x
			}
		}
		if s == nil || s.Parent.SpanID() != caller.SpanID() || s.SpanContext.TraceID() != caller.TraceID() || s.Name != "infer edge" {
			t.Errorf("message %d: span %+v does not continue its caller's", i, s)
			continue
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		want := map[string]string{"ddnn.tier": "edge", "ddnn.model_sha": modelSHA(t, "edge"), "ddnn.message_id": msgs[i].ID, "ddnn.batch_size": "3"}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("message %d: %s = %q, want %q", i, k, attrs[k], v)
			}
		}
		if attrs["ddnn.exit"] != map[bool]string{true: "true", false: "false"}[ds[i].Exit] {
			t.Errorf("message %d: ddnn.exit %q, decision %v", i, attrs["ddnn.exit"], ds[i].Exit)
		}
	}
}
