package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// otlpReceiver counts the OTLP/HTTP export requests it gets.
func otlpReceiver(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &posts
}

// TestOff: without otlp_endpoint there is no tracer provider, no exporter
// (nothing reaches a receiver), no Kafka hook, and handlers are served as
// they are.
func TestOff(t *testing.T) {
	srv, posts := otlpReceiver(t)
	tr, err := Start(pipeline.Telemetry{SampleRatio: 1}, Process{Role: "funnel"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr != nil || tr.Enabled() {
		t.Fatalf("tracing on without an endpoint: %+v", tr)
	}
	if opts := tr.KafkaOpts("funnel", ""); opts != nil {
		t.Errorf("Kafka options when off: %d", len(opts))
	}
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := tr.Handler(h, "/v1/ingest"); reflect.ValueOf(got).Pointer() != reflect.ValueOf(h).Pointer() {
		t.Errorf("handler wrapped when off: %T", got)
	}
	tr.Shutdown()
	if n := posts.Load(); n != 0 {
		t.Errorf("receiver %s got %d exports", srv.URL, n)
	}
}

// TestOn: with an endpoint, a span reaches the OTLP receiver (at the
// latest when the role shuts down).
func TestOn(t *testing.T) {
	srv, posts := otlpReceiver(t)
	tr, err := Start(pipeline.Telemetry{OTLPEndpoint: srv.URL, SampleRatio: 1}, Process{Pipeline: "p", Role: "funnel", Site: "edge"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() || len(tr.KafkaOpts("funnel", "")) != 1 {
		t.Fatal("tracing off with an endpoint")
	}
	_, span := tr.Tracer().Start(context.Background(), "x")
	span.End()
	tr.Shutdown()
	testsupport.WaitFor(t, 5*time.Second, "an export", func() bool { return posts.Load() > 0 })
}

// TestBatch: the contexts of a batch call's messages travel in one
// header, in order, with "-" for messages not sampled; a header that does
// not hold one entry per message is ignored, a bad entry is no parent.
func TestBatch(t *testing.T) {
	sc := func(b byte, sampled bool) trace.SpanContext {
		c := trace.SpanContextConfig{TraceID: trace.TraceID{b, 1}, SpanID: trace.SpanID{b, 2}}
		if sampled {
			c.TraceFlags = trace.FlagsSampled
		}
		return trace.NewSpanContext(c)
	}
	in := []trace.SpanContext{sc(1, true), sc(2, false), {}, sc(4, true)}
	h := http.Header{}
	SetBatch(h, in)
	v := h.Get(HeaderTraceparents)
	if want := "00-01010000000000000000000000000000-0102000000000000-01,-,-,00-04010000000000000000000000000000-0402000000000000-01"; v != want {
		t.Fatalf("header %q\nwant %q", v, want)
	}
	got := Batch(h, len(in))
	for i, want := range []trace.SpanContext{in[0], {}, {}, in[3]} {
		if got[i].TraceID() != want.TraceID() || got[i].SpanID() != want.SpanID() || got[i].IsSampled() != want.IsSampled() {
			t.Errorf("message %d: %v, want %v", i, got[i], want)
		}
		if want.IsValid() && !got[i].IsRemote() {
			t.Errorf("message %d: not remote", i)
		}
	}
	if Batch(h, 3) != nil || Batch(http.Header{}, 1) != nil {
		t.Error("a header for another batch size read")
	}
	h.Set(HeaderTraceparents, "bogus,"+strings.Split(v, ",")[3])
	if got := Batch(h, 2); got[0].IsValid() || got[1].TraceID() != in[3].TraceID() {
		t.Errorf("bad entry: %v", got)
	}
	none := http.Header{}
	SetBatch(none, []trace.SpanContext{sc(1, false)})
	if len(none) != 0 {
		t.Errorf("header for an unsampled batch: %v", none)
	}
	// The largest batch that fits, and one more.
	fits := MaxBatchHeaderBytes / 56
	big := make([]trace.SpanContext, fits+1)
	for i := range big {
		big[i] = in[0]
	}
	h = http.Header{}
	SetBatch(h, big[:fits])
	if n := len(h.Get(HeaderTraceparents)); n == 0 || n > MaxBatchHeaderBytes {
		t.Errorf("a batch of %d: header of %d bytes", fits, n)
	}
	h = http.Header{}
	SetBatch(h, big)
	if len(h) != 0 {
		t.Errorf("a batch of %d: header over %d bytes sent", len(big), MaxBatchHeaderBytes)
	}
}
