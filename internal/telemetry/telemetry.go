// Package telemetry owns ddnn's traces: the OpenTelemetry tracer provider
// a role exports its spans through (OTLP over HTTP, batched, sampled by
// the pipeline's telemetry.sample_ratio), the instrumentation of its Kafka
// clients (franz-go's kotel: a publish span per record produced, a receive
// span per record fetched, W3C trace context in the record headers that
// internal/records names) and of the device ingest route (otelhttp, which
// honours a device's traceparent), and the trace context of a batch call's
// messages in HTTP headers (SetBatch, Batch).
//
// One trace follows one message: a batch call carries many messages, so
// its caller starts one span per message and sends their contexts in
// HeaderTraceparents, and the callee continues each message's trace with
// a span of its own (docs/observability.md, "Traces").
//
// Tracing is off unless telemetry.otlp_endpoint is set, and off costs
// nothing: a nil *Tracing is off, starts no exporter, adds no Kafka hooks,
// wraps no handler and writes no header; callers test Enabled before doing
// any per-message work. The package never logs per span and never logs
// a credential (the endpoint carries none: pipeline validation refuses a
// URL with a user or password).
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
)

// Attributes ddnn's own spans carry.
const (
	// AttrPipeline, AttrSite and AttrRole describe the process (resource
	// attributes).
	AttrPipeline = attribute.Key("ddnn.pipeline")
	AttrSite     = attribute.Key("ddnn.site")
	// AttrTier is the tier a span worked for; AttrModelSHA the first 12
	// hex digits of the sha256 of the tier's model file.
	AttrTier     = attribute.Key("ddnn.tier")
	AttrModelSHA = attribute.Key("ddnn.model_sha")
	// AttrMessage is the message's id; AttrBatch the size of the call
	// that carried it; AttrExit whether the tier's function let it exit.
	AttrMessage = attribute.Key("ddnn.message_id")
	AttrBatch   = attribute.Key("ddnn.batch_size")
	AttrExit    = attribute.Key("ddnn.exit")
	// AttrLink is the WAN link an uplink's call crossed ("edge->fog"),
	// AttrPeer the URL it called.
	AttrLink = attribute.Key("ddnn.link")
	AttrPeer = attribute.Key("ddnn.peer")
)

// instrumentation names ddnn's own tracer.
const instrumentation = "github.com/ddnn-continuum/ddnn"

// shutdownTimeout bounds the flush of the spans still buffered at exit.
const shutdownTimeout = 5 * time.Second

// Tracing is one role's tracer provider; nil is off.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	log      *slog.Logger
}

// Process says which process spans come from: the role ("funnel",
// "connector", "uplink", "inference", "monolith"), its site and tier
// where it has one. The service name is "ddnn-<role>".
type Process struct {
	Pipeline, Role, Site, Tier string
}

// Start builds the tracer provider cfg asks for, exporting to its OTLP
// endpoint; nil, and no exporter, when tracing is off. Nothing is sent
// until the first span ends; an endpoint that does not answer loses spans
// (logged through log at warn, at most once a minute), never messages.
func Start(cfg pipeline.Telemetry, proc Process, log *slog.Logger) (*Tracing, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(TracesURL(cfg.OTLPEndpoint)))
	if err != nil {
		return nil, fmt.Errorf("telemetry.otlp_endpoint: %w", err)
	}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "ddnn-"+proc.Role),
		AttrPipeline.String(proc.Pipeline),
	}
	if proc.Site != "" {
		attrs = append(attrs, AttrSite.String(proc.Site))
	}
	if proc.Tier != "" {
		attrs = append(attrs, AttrTier.String(proc.Tier))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	setErrorHandler(log)
	log.Info("tracing on", "otlp_endpoint", cfg.OTLPEndpoint, "sample_ratio", cfg.SampleRatio)
	return &Tracing{provider: tp, tracer: tp.Tracer(instrumentation), log: log}, nil
}

// FromProvider traces through tp (Shutdown shuts it down): for tests that
// read spans back from an in-memory exporter.
func FromProvider(tp *sdktrace.TracerProvider) *Tracing {
	return &Tracing{provider: tp, tracer: tp.Tracer(instrumentation), log: slog.New(slog.DiscardHandler)}
}

// TracesURL is where spans are posted for otlp_endpoint: the URL as it
// is, or with /v1/traces, OTLP/HTTP's path for traces, when it has no
// path.
func TracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

// Enabled says whether t traces.
func (t *Tracing) Enabled() bool { return t != nil }

// Shutdown sends the spans still buffered (within a few seconds) and
// stops the exporter.
func (t *Tracing) Shutdown() {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		t.log.Warn("tracing: flushing the last spans", "err", err)
	}
}

// Tracer is ddnn's tracer; only call it when Enabled.
func (t *Tracing) Tracer() trace.Tracer { return t.tracer }

// KafkaOpts instrument a Kafka client with kotel, the trace context in
// record headers as records.TracePropagator writes it; none when off.
// clientID and group name the client in the spans.
func (t *Tracing) KafkaOpts(clientID, group string) []kgo.Opt {
	if t == nil {
		return nil
	}
	opts := []kotel.TracerOpt{
		kotel.TracerProvider(t.provider),
		kotel.TracerPropagator(records.TracePropagator),
		kotel.ClientID(clientID),
	}
	if group != "" {
		opts = append(opts, kotel.ConsumerGroup(group))
	}
	k := kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(opts...)))
	return []kgo.Opt{kgo.WithHooks(k.Hooks()...)}
}

// Handler wraps h, a route that takes one message per request, so that
// each request of path gets a server span continuing the caller's
// W3C traceparent when it sends one; h itself when off.
func (t *Tracing) Handler(h http.Handler, path string) http.Handler {
	if t == nil {
		return h
	}
	return otelhttp.NewHandler(h, path,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(records.TracePropagator),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path == path }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + path }),
	)
}

var errorHandlerOnce sync.Once

// setErrorHandler logs the SDK's errors (an exporter that cannot send)
// at warn, at most once a minute: a collector that is down must not flood
// the log.
func setErrorHandler(log *slog.Logger) {
	errorHandlerOnce.Do(func() {
		var mu sync.Mutex
		var last time.Time
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) < time.Minute {
				return
			}
			last = time.Now()
			log.Warn("tracing: spans lost", "err", err)
		}))
	})
}
