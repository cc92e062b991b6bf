package connector

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// tracingReplica answers every message with an exit, like fakeReplica,
// and, when the call carries trace contexts, continues each with a span
// of its own tracer and answers their contexts, as a traced inference
// function does. It keeps the header of every call.
type tracingReplica struct {
	tracer trace.Tracer
	mu     sync.Mutex
	calls  []string // the Ddnn-Traceparents header of each call
	sizes  []int
	infers map[string]trace.SpanContext // by message id
}

func (f *tracingReplica) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	msgs, err := wire.DecodeMessages(wire.Binary, b)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Header.Get(telemetry.HeaderTraceparents))
	f.sizes = append(f.sizes, len(msgs))
	ds := make([]wire.Decision, len(msgs))
	for i, m := range msgs {
		ds[i] = wire.Decision{ID: m.ID, Tier: "edge", Exit: true, Label: "a", Confidence: 1}
	}
	if parents := telemetry.Batch(r.Header, len(msgs)); parents != nil && f.tracer != nil {
		scs := make([]trace.SpanContext, len(msgs))
		for i, p := range parents {
			_, span := f.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), p), "infer edge")
			span.End()
			scs[i] = span.SpanContext()
			f.infers[msgs[i].ID] = scs[i]
		}
		telemetry.SetBatch(w.Header(), scs)
	}
	out, _ := wire.AppendDecisions(nil, wire.Binary, ds)
	w.Header().Set("Content-Type", wire.ContentTypeBinary)
	w.Write(out)
}

// produceTraced writes n messages, each the publish of its own trace
// (what the funnel's traced producer writes), and returns each message's
// publish span context by id.
func (e *env) produceTraced(t *testing.T, n int) map[string]trace.SpanContext {
	t.Helper()
	parents := map[string]trace.SpanContext{}
	var recs []*kgo.Record
	for i := range n {
		m := wire.Message{ID: fmt.Sprintf("m%d", i), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, byte(i)}}}
		rec, err := records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i + 1), 0xdd}, SpanID: trace.SpanID{byte(i + 1), 0xee}, TraceFlags: trace.FlagsSampled})
		records.SetTrace(trace.ContextWithSpanContext(context.Background(), sc), rec)
		parents[m.ID] = sc
		rec.Partition = int32(i % 3)
		recs = append(recs, rec)
	}
	if err := e.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return parents
}

// TestTraceChains: with tracing on, each message of a batch call keeps a
// chain of its own in its trace: the receive span of its record, a call
// span for it (its context in the call's Ddnn-Traceparents, in batch
// order), the replica's span for it, and the publish of its result,
// which carries the trace on to the results topic. No span of one
// message's trace has two children.
func TestTraceChains(t *testing.T) {
	const n = 12
	e := setup(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	rep := &tracingReplica{tracer: tp.Tracer("replica"), infers: map[string]trace.SpanContext{}}
	srv := serveOn(t, "127.0.0.1:0", rep)
	parents := e.produceTraced(t, n)

	c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: []string{srv.URL}, Registerer: prometheus.NewRegistry(),
		DrainTimeout: 3 * time.Second, Tracing: telemetry.FromProvider(tp)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	results := consumeAll(t, e, "t.results", n)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	rep.mu.Lock()
	defer rep.mu.Unlock()
	batched := false
	for i, h := range rep.calls {
		if h == "" {
			t.Errorf("call %d of %d messages carried no trace context", i, rep.sizes[i])
		}
		batched = batched || rep.sizes[i] > 1
	}
	if !batched {
		t.Errorf("no call carried more than one message (sizes %v): the batch case went untested", rep.sizes)
	}
	spans := exp.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	children := map[trace.SpanID]int{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		children[s.Parent.SpanID()]++
	}
	for _, rec := range results {
		r, err := records.DecodeResult(rec)
		if err != nil {
			t.Fatal(err)
		}
		want := parents[r.ID]
		tc := records.TraceOf(rec)
		if tc.TraceID() != want.TraceID() {
			t.Errorf("result %s: trace %s, want its message's %s", r.ID, tc.TraceID(), want.TraceID())
			continue
		}
		// From the result's publish back to the message's publish.
		var chain []string
		for id := tc.SpanID(); id != want.SpanID(); {
			s, ok := byID[id]
			if !ok {
				t.Fatalf("result %s: span %s of its chain %v not exported", r.ID, id, chain)
			}
			if s.SpanContext.TraceID() != want.TraceID() {
				t.Fatalf("result %s: span %q in trace %s", r.ID, s.Name, s.SpanContext.TraceID())
			}
			if children[id] > 1 {
				t.Errorf("result %s: span %q has %d children", r.ID, s.Name, children[id])
			}
			chain = append(chain, s.Name)
			id = s.Parent.SpanID()
		}
		wantChain := []string{"t.results publish", "infer edge", "invoke edge", "t.edge.in receive"}
		if fmt.Sprint(chain) != fmt.Sprint(wantChain) {
			t.Errorf("result %s: chain %v, want %v", r.ID, chain, wantChain)
		}
		if inf := rep.infers[r.ID]; len(chain) > 1 && byID[tc.SpanID()].Parent.SpanID() != inf.SpanID() {
			t.Errorf("result %s: publish does not continue the replica's span", r.ID)
		}
	}
	for _, s := range spans {
		if s.Name != "invoke edge" {
			continue
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		if attrs["ddnn.tier"] != "edge" || attrs["ddnn.message_id"] == "" || attrs["ddnn.peer"] != srv.URL {
			t.Errorf("invoke span attributes %v", attrs)
		}
	}
}

// TestTraceOff: with tracing off a call carries no trace context and the
// records the connector writes carry none.
func TestTraceOff(t *testing.T) {
	e := setup(t)
	rep := &tracingReplica{infers: map[string]trace.SpanContext{}}
	srv := serveOn(t, "127.0.0.1:0", rep)
	e.produce(t, 4, "m")
	c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: []string{srv.URL}, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	results := consumeAll(t, e, "t.results", 4)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, rec := range results {
		if v := records.Header(rec, records.HeaderTraceparent); v != "" {
			t.Errorf("result record carries traceparent %q with tracing off", v)
		}
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	for i, h := range rep.calls {
		if h != "" {
			t.Errorf("call %d carried %s %q with tracing off", i, telemetry.HeaderTraceparents, h)
		}
	}
}

// BenchmarkDeliverTraced is BenchmarkDeliver with tracing on at ratio 1:
// every record's receive, call and publish spans made and exported in
// batches (to an exporter that drops them), the calls' trace headers, the
// records' traceparents. The replica here makes no spans.
func BenchmarkDeliverTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
	defer tp.Shutdown(context.Background())
	benchmarkDeliver(b, func(c *Config) { c.Tracing = telemetry.FromProvider(tp) })
}

// discard is an exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
