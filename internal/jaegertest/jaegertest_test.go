package jaegertest

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestRoundTrip: a span a role exports over OTLP/HTTP (internal/telemetry)
// is stored by Jaeger and read back by service and by trace id, with its
// parent and attributes, as soon as the role's Shutdown returned (the
// trace tests read right after the roles stopped); Stop ends the process.
func TestRoundTrip(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	j := New(t, root)
	tr, err := telemetry.Start(pipeline.Telemetry{OTLPEndpoint: j.OTLP, SampleRatio: 1}, telemetry.Process{Pipeline: "p", Role: "roundtrip", Site: "edge"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tr.Tracer().Start(context.Background(), "parent")
	_, child := tr.Tracer().Start(ctx, "child")
	child.SetAttributes(attribute.String("ddnn.tier", "edge"))
	child.End()
	parent.End()
	tr.Shutdown()
	id := parent.SpanContext().TraceID().String()

	// No wait: Shutdown returned once Jaeger answered the export.
	if ts, err := j.Traces(context.Background(), "ddnn-roundtrip", 10); err != nil || len(ts) != 1 {
		t.Fatalf("right after Shutdown: %d traces of ddnn-roundtrip (%v), want 1", len(ts), err)
	}
	got, err := j.Trace(context.Background(), id)
	if err != nil || len(got.Spans) != 2 {
		t.Fatalf("right after Shutdown: trace %s has %d spans (%v), want 2", id, len(got.Spans), err)
	}
	if svcs, err := j.Services(context.Background()); err != nil || !slices.Contains(svcs, "ddnn-roundtrip") {
		t.Errorf("services %v (%v), want ddnn-roundtrip", svcs, err)
	}
	spans := map[string]Span{}
	for _, s := range got.Spans {
		spans[s.OperationName] = s
	}
	if p, c := spans["parent"], spans["child"]; c.Parent() != p.SpanID || p.Parent() != "" {
		t.Errorf("child's parent %q, want %q; parent's %q", c.Parent(), p.SpanID, p.Parent())
	}
	if v, _ := spans["child"].Tag("ddnn.tier"); v != "edge" {
		t.Errorf("child's ddnn.tier %q", v)
	}
	if svc := got.Processes[spans["child"].ProcessID].ServiceName; svc != "ddnn-roundtrip" {
		t.Errorf("service %q", svc)
	}
	pid := j.cmd.Process.Pid
	j.Stop()
	testsupport.WaitFor(t, 5*time.Second, "jaeger gone", func() bool {
		select {
		case <-j.exited:
			return true
		default:
			return false
		}
	})
	t.Logf("jaeger (pid %d) stopped", pid)
}
