package funnel

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// setupTraced is setup with tracing on, its spans kept in memory.
func setupTraced(t *testing.T, y string) (*env, *tracetest.InMemoryExporter) {
	t.Helper()
	e := setupYAML(t, "", y)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := telemetry.FromProvider(tp)
	cl, err := kafka.NewClient(&e.site.Kafka, "funnel", nil, nil, append(ProducerOptions(&e.site.Kafka), tr.KafkaOpts("funnel", "")...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e.f = New(e.site, cl, nil, nil)
	e.f.SetTracing(tr)
	e.srv, e.dsrv = serve(t, e.f)
	return e, exp
}

// spanNamed is the one span called name.
func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q", len(found), name)
	}
	return found[0]
}

// TestTraceIngest: an HTTP ingest continues the device's traceparent: the
// ingest's server span is its child, the record's publish span the
// ingest's, and the record carries the publish span's context.
func TestTraceIngest(t *testing.T) {
	e, exp := setupTraced(t, testYAML)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	resp, body := e.post(t, httpapi.PathIngest, "application/octet-stream", make([]byte, 16), map[string]string{"traceparent": tp, "X-Message-Id": "m1"})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	recs := e.records(t, "t.edge.in")
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	ingest := spanNamed(t, exp, "POST "+httpapi.PathIngest)
	publish := spanNamed(t, exp, "t.edge.in publish")
	if got := ingest.Parent.SpanID().String(); ingest.SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || got != "b7ad6b7169203331" {
		t.Errorf("ingest span in trace %s under %s: not the device's", ingest.SpanContext.TraceID(), got)
	}
	if publish.Parent.SpanID() != ingest.SpanContext.SpanID() {
		t.Errorf("publish span not the ingest's child")
	}
	if sc := records.TraceOf(recs[0]); sc.SpanID() != publish.SpanContext.SpanID() || sc.TraceID() != ingest.SpanContext.TraceID() {
		t.Errorf("record carries %v, want the publish span's context", sc)
	}
}

// TestTraceDelivery: each message of a delivered batch continues the
// context its uplink sent for it, in its own trace.
func TestTraceDelivery(t *testing.T) {
	e, exp := setupTraced(t, testYAML)
	msgs := []wire.Message{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	for i := range msgs {
		msgs[i].Tensor = wire.Tensor{DType: wire.Float32, Shape: []int{2}, Data: make([]byte, 8)}
	}
	body, err := wire.AppendMessages(nil, wire.Binary, msgs)
	if err != nil {
		t.Fatal(err)
	}
	parents := map[string]trace.SpanContext{}
	scs := make([]trace.SpanContext, len(msgs))
	for i, m := range msgs {
		scs[i] = trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i + 1)}, SpanID: trace.SpanID{byte(i + 1)}, TraceFlags: trace.FlagsSampled})
		parents[m.ID] = scs[i]
	}
	h := http.Header{}
	telemetry.SetBatch(h, scs)
	resp, out := e.post(t, httpapi.TierPath("cloud"), wire.ContentTypeBinary, body, map[string]string{telemetry.HeaderTraceparents: h.Get(telemetry.HeaderTraceparents)})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	recs := e.records(t, "t.cloud.in")
	if len(recs) != len(msgs) {
		t.Fatalf("%d records", len(recs))
	}
	delivers := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.Name == "deliver cloud" {
			delivers[s.SpanContext.SpanID()] = s
		}
	}
	for _, rec := range recs {
		id := records.Header(rec, wire.HeaderID)
		sc := records.TraceOf(rec)
		if sc.TraceID() != parents[id].TraceID() {
			t.Errorf("message %s: record in trace %s, want %s", id, sc.TraceID(), parents[id].TraceID())
		}
		var publish *tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.SpanContext.SpanID() == sc.SpanID() {
				publish = &s
			}
		}
		if publish == nil {
			t.Fatalf("message %s: no publish span", id)
		}
		d, ok := delivers[publish.Parent.SpanID()]
		if !ok || d.Parent.SpanID() != parents[id].SpanID() {
			t.Errorf("message %s: publish is not under the delivery span that continues its uplink's", id)
		}
	}
}

// TestTraceRecordLimit: with tracing off a record carries no trace
// context; with it on, a record must leave room for its traceparent
// within kafka.max_record_bytes: one that would not is refused with 413
// rather than by the broker.
func TestTraceRecordLimit(t *testing.T) {
	plain := setupYAML(t, "", testYAML)
	traced, _ := setupTraced(t, testYAML)
	sample := make([]byte, 16)
	hdr := map[string]string{"X-Message-Id": "m1"}
	if resp, body := plain.post(t, httpapi.PathIngest, "application/octet-stream", sample, hdr); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	recs := plain.records(t, "t.edge.in")
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	if v := records.Header(recs[0], records.HeaderTraceparent); v != "" {
		t.Errorf("tracing off: the record carries traceparent %q", v)
	}
	// Room for the record, not for the record and its traceparent.
	limit := kafka.RecordSize(recs[0]) + records.TraceHeaderBytes/2
	plain.site.Kafka.MaxRecordBytes, traced.site.Kafka.MaxRecordBytes = limit, limit
	for _, c := range []struct {
		name string
		e    *env
		want int
	}{{"off", plain, http.StatusAccepted}, {"on", traced, http.StatusRequestEntityTooLarge}} {
		if resp, body := c.e.post(t, httpapi.PathIngest, "application/octet-stream", sample, hdr); resp.StatusCode != c.want {
			t.Errorf("tracing %s: status %d, want %d: %s", c.name, resp.StatusCode, c.want, body)
		}
	}
}

// TestTraceCoAP: a CoAP ingest, which carries no trace context, starts a
// trace whose server span the record's publish continues.
func TestTraceCoAP(t *testing.T) {
	e, exp := setupTraced(t, coapYAML)
	addr := startCoAP(t, e, CoAPLimits{})
	f := filepath.Join(t.TempDir(), "img.f32")
	if err := os.WriteFile(f, float32Image(), 0o644); err != nil {
		t.Fatal(err)
	}
	coapClient(t, "-m", "post", "-t", "42", "-b", "1024", "-f", f, "coap://"+addr+"/v1/ingest?id=coap-1")
	recs := e.records(t, "c.edge.in")
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	ingest := spanNamed(t, exp, "POST coap "+httpapi.PathIngest)
	publish := spanNamed(t, exp, "c.edge.in publish")
	if ingest.Parent.IsValid() || publish.Parent.SpanID() != ingest.SpanContext.SpanID() {
		t.Errorf("ingest span under %v, publish under %v: want a root and its child", ingest.Parent, publish.Parent)
	}
	if sc := records.TraceOf(recs[0]); sc.SpanID() != publish.SpanContext.SpanID() {
		t.Errorf("record carries %v, want the publish span's context", sc)
	}
	var id string
	for _, a := range ingest.Attributes {
		if a.Key == telemetry.AttrMessage {
			id = a.Value.AsString()
		}
	}
	if id != "coap-1" {
		t.Errorf("ingest span's %s %q", telemetry.AttrMessage, id)
	}
}
