// Package funnel owns the HTTP and CoAP ways into the pipeline's Kafka
// topics: the device-facing ingest route, which enters samples into the
// first tier, and the internal routes another site's uplinks deliver to: a
// tier's input topic and the results topic. (A tier's decisions on its own
// site are written by its connector, not through a funnel.)
//
// A funnel answers only after Kafka acknowledged every record of the request
// (acks=all, idempotent producer); records of concurrent requests are
// batched by the producer, never produced synchronously one by one. When
// Kafka does not acknowledge within the produce timeout the funnel answers
// 503 with Retry-After. It knows nothing of models, and it consumes only
// the results topic, with one reader per process, to answer the device
// requests that wait for their results (?wait=, waiters.go).
//
// On a pipeline of several sites a funnel belongs to one site: it writes a
// message for a tier of its site, or a result when its site holds the
// results, to its own Kafka, and anything bound for another site to the
// site-local queue of that link, as records.DestinationOf says. Only the
// first tier's site takes device data.
package funnel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Headers devices may set on ingest.
const (
	HeaderDeviceID  = "X-Device-Id"
	HeaderMessageID = "X-Message-Id"
)

// Funnel serves the routes above with one shared producer.
type Funnel struct {
	p     *pipeline.Pipeline // the whole pipeline
	site  *pipeline.SiteView // the site this funnel writes to
	cl    *kgo.Client
	m     *Metrics
	log   *slog.Logger
	first string // first tier
	// ingestSite is the site of the first tier, which takes device data.
	ingestSite string
	auth       Auth
	draining   atomic.Bool
	now        func() time.Time
	// rl is nil when funnel.device_rate_limit is off; Reload swaps it.
	rl atomic.Pointer[deviceLimiter]
	// reloadMu serialises reloads; applied is the funnel section as
	// last applied.
	reloadMu sync.Mutex
	applied  pipeline.SiteFunnel
	tr       *telemetry.Tracing // nil: tracing off
	waits    *waiters           // nil when funnel.wait.max is 0
}

// New builds the funnel of site over cl, a client of the site's Kafka
// made with ProducerOptions(&site.Kafka).
func New(site *pipeline.SiteView, cl *kgo.Client, m *Metrics, log *slog.Logger) *Funnel {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := site.Pipeline
	first := p.Tiers[0].Name
	f := &Funnel{p: p, site: site, cl: cl, m: m, log: log, first: first, ingestSite: p.SiteOf(first).Name, now: time.Now,
		applied: site.Funnel}
	f.rl.Store(newDeviceLimiter(site.Funnel.DeviceRateLimit))
	if site.Funnel.Wait.On() && site.Name == f.ingestSite {
		f.waits = newWaiters(site.Funnel.Wait, m)
	}
	return f
}

// NotIngestSiteError is the answer of a funnel whose site does not hold the
// first tier to device data (404 over HTTP, 4.04 over CoAP).
type NotIngestSiteError struct{ Site, IngestSite string }

func (e *NotIngestSiteError) Error() string {
	return fmt.Sprintf("site %q takes no device data: send it to the funnel of site %q, which runs the first tier", e.Site, e.IngestSite)
}

// Drain makes the ingest route answer 503 from now on, and requests
// waiting for their results answer at once; internal routes keep working
// so in-flight samples can finish.
func (f *Funnel) Drain() {
	f.draining.Store(true)
	if f.waits != nil {
		f.waits.drain()
	}
}

// Auth is who the funnel lets in: devices with a credential on the device
// zone, the pipeline's own parts (uplinks, ddnn up) with the service
// token on the delivery zone. A nil field lets everyone in (loopback deployments and explicit
// `auth: none`).
type Auth struct {
	// Devices authenticates device tokens; a device that presents a
	// client certificate verified by the device listener's TLS needs none.
	Devices *auth.Devices
	// Service guards the delivery zone.
	Service *auth.Tokens
}

// SetAuth sets who the funnel lets in; call it before serving.
func (f *Funnel) SetAuth(a Auth) { f.auth = a }

// DeviceHandler serves the device zone: POST /v1/ingest, /healthz and
// /readyz. Nothing else is there: the routes that write a tier's input,
// the results or the drain switch are on the delivery zone.
func (f *Funnel) DeviceHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+httpapi.PathIngest, f.tr.Handler(http.HandlerFunc(f.serveIngest), httpapi.PathIngest))
	f.health(mux)
	mux.HandleFunc("/", f.noRoute(mux, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s on the device listener (POST %s)", r.Method, r.URL.Path, httpapi.PathIngest))
	}))
	return mux
}

// DeliveryHandler serves the delivery zone: the batches of the pipeline's
// own parts (POST /v1/tiers/<tier>, POST /v1/results) and POST /v1/drain,
// each for bearers of the service token (Auth.Service); /healthz and
// /readyz for anyone.
func (f *Funnel) DeliveryHandler() http.Handler {
	guarded := http.NewServeMux()
	guarded.HandleFunc("POST "+httpapi.PathTiers+"{tier}", f.serveTier)
	guarded.HandleFunc("POST "+httpapi.PathResults, f.serveResults)
	guarded.HandleFunc("POST "+httpapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		f.Drain()
		io.WriteString(w, "draining\n")
	})
	guarded.HandleFunc("/", f.noRoute(guarded, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s on the delivery listener (POST %s<tier>, POST %s, POST %s)", r.Method, r.URL.Path, httpapi.PathTiers, httpapi.PathResults, httpapi.PathDrain))
	}))
	mux := http.NewServeMux()
	f.health(mux)
	mux.Handle("/", f.auth.Service.Require(guarded))
	return mux
}

func (f *Funnel) health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if f.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	httpapi.WriteError(w, code, &wire.ErrorBody{Error: msg})
}

// fail answers an error and counts it.
func (f *Funnel) fail(w http.ResponseWriter, route string, code int, msg string) {
	f.m.request(route, outcomeFor(code))
	writeError(w, code, msg)
}

func outcomeFor(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusServiceUnavailable:
		return "unavailable"
	default:
		return "error"
	}
}

// readBody reads at most the route's limit: funnel.max_request_bytes for
// device ingest, pipeline.DefaultMaxRequestBytes for deliveries. ok is
// false after answering.
func (f *Funnel) readBody(w http.ResponseWriter, r *http.Request, route string) ([]byte, bool) {
	limit, setting := int64(pipeline.DefaultMaxRequestBytes), "the delivery limit"
	if route == "ingest" {
		limit, setting = f.site.Funnel.MaxRequestBytes, "funnel.max_request_bytes"
	}
	if r.ContentLength > limit {
		f.fail(w, route, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes over the limit of %d (%s)", r.ContentLength, limit, setting))
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			f.fail(w, route, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the limit of %d bytes (%s)", limit, setting))
		} else {
			f.fail(w, route, http.StatusBadRequest, "reading body: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

// IngestResponse is the body of a 202 from the ingest route.
type IngestResponse struct {
	ID string `json:"id"`
}

func (f *Funnel) serveIngest(w http.ResponseWriter, r *http.Request) {
	const route = "ingest"
	if f.site.Name != f.ingestSite {
		f.fail(w, route, http.StatusNotFound, (&NotIngestSiteError{f.site.Name, f.ingestSite}).Error())
		return
	}
	if f.draining.Load() {
		f.fail(w, route, http.StatusServiceUnavailable, "funnel is shutting down")
		return
	}
	// Who sends comes first: a stranger's body is never read.
	device, ok := f.authenticated(w, r)
	if !ok {
		f.m.request(route, "unauthorized")
		return
	}
	wait, err := parseWait(r.URL.Query()["wait"], f.site.Funnel.Wait)
	if err != nil {
		f.m.refused(route, reasonBadWait)
		f.fail(w, route, http.StatusBadRequest, err.Error())
		return
	}
	body, ok := f.readBody(w, r, route)
	if !ok {
		return
	}
	m, err := f.decodeIngest(r.Header.Get("Content-Type"), body)
	if err != nil {
		code := http.StatusBadRequest
		var ct *wire.UnsupportedContentTypeError
		if errors.As(err, &ct) {
			code = http.StatusUnsupportedMediaType
			w.Header().Set("Accept-Post", strings.Join(ingestContentTypes, ", "))
		}
		f.fail(w, route, code, err.Error())
		return
	}
	ids, devices := requestIDs(r)
	if err := resolveIDs(&m, ids, devices); err != nil {
		f.m.refused(route, idRefusal(err))
		f.fail(w, route, http.StatusBadRequest, err.Error())
		return
	}
	if device != "" {
		// The device is who its credential says, never what it claims.
		if m.Device != "" && m.Device != device {
			f.fail(w, route, http.StatusForbidden, fmt.Sprintf("the credential is device %q's: it cannot send as %q", device, m.Device))
			return
		}
		m.Device = device
	}
	var rl *RateLimitedError
	if err := f.limitRate(m.Device, r.RemoteAddr); errors.As(err, &rl) {
		f.failRate(w, route, rl)
		return
	}
	result, err := f.acceptWaiting(r.Context(), &m, wait, r.RemoteAddr)
	if err != nil {
		f.produceFailed(w, route, ingestError(&m, err))
		return
	}
	f.m.request(route, "ok")
	w.Header().Set("Content-Type", "application/json")
	if result != nil {
		// The result record as the results topic holds it.
		w.WriteHeader(http.StatusOK)
		w.Write(append(result, '\n'))
		return
	}
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(IngestResponse{ID: m.ID})
}

// authenticated returns the device a request comes from: the common name
// of its verified client certificate, else the owner of its bearer token;
// "" when devices are not authenticated. A certificate of a device the
// credentials file revoked is refused on every request, so a connection
// opened before the revocation is cut off too. ok is false after
// answering 401.
func (f *Funnel) authenticated(w http.ResponseWriter, r *http.Request) (device string, ok bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		if f.auth.Devices != nil {
			if err := f.auth.Devices.CheckCertificate(cert.Subject.CommonName, cert.NotBefore); err != nil {
				auth.Unauthorized(w, "ddnn", err.Error())
				return "", false
			}
		}
		return cert.Subject.CommonName, true
	}
	if f.auth.Devices == nil {
		return "", true
	}
	return f.auth.Devices.FromRequest(w, r)
}

// decodeIngest reads raw bytes (the pipeline input's dtype and shape) or
// the JSON ingest form, and validates the sample.
func (f *Funnel) decodeIngest(contentType string, body []byte) (wire.Message, error) {
	in := f.p.Input
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = ""
	}
	var m wire.Message
	switch mt {
	case "application/octet-stream":
		need := wire.NumElements(in.Shape) * in.DType.Size()
		if len(body) != need {
			return m, fmt.Errorf("raw body has %d bytes, want %d: %s %v", len(body), need, in.DType, in.Shape)
		}
		m.Tensor = wire.Tensor{DType: in.DType, Shape: in.Shape, Data: body}
	case "application/json":
		if m, err = wire.DecodeIngestJSON(body, in.DType, in.Shape); err != nil {
			return m, fmt.Errorf("%w (want {\"id\"?, \"device\"?, \"data\":[%d %s values]})", err, wire.NumElements(in.Shape), in.DType)
		}
	default:
		return m, &wire.UnsupportedContentTypeError{ContentType: contentType, Supported: ingestContentTypes}
	}
	if err := m.Tensor.Validate(); err != nil {
		return m, err
	}
	return m, nil
}

// serveTier takes a batch of messages for a tier's input topic.
func (f *Funnel) serveTier(w http.ResponseWriter, r *http.Request) {
	const route = "tier"
	tier := r.PathValue("tier")
	if _, _, err := f.p.Tier(tier); err != nil {
		f.fail(w, route, http.StatusNotFound, err.Error())
		return
	}
	enc, err := wire.EncodingFor(r.Header.Get("Content-Type"))
	if err != nil {
		f.fail(w, route, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	body, ok := f.readBody(w, r, route)
	if !ok {
		return
	}
	msgs, err := wire.DecodeMessages(enc, body)
	if err != nil {
		f.fail(w, route, http.StatusBadRequest, err.Error())
		return
	}
	for i := range msgs {
		msgs[i].Route = tier
	}
	var spans []trace.Span
	if f.tr.Enabled() {
		spans = f.startDeliveries(r, tier, len(msgs), func(i int) string { return msgs[i].ID })
	}
	err = f.produceMessages(r.Context(), records.DestinationOf(f.p, f.site.Name, tier), msgs, spans)
	endSpans(spans, err)
	if err != nil {
		f.produceFailed(w, route, err)
		return
	}
	f.m.request(route, "ok")
	w.WriteHeader(http.StatusNoContent)
}

// serveResults takes a JSON array of result records.
func (f *Funnel) serveResults(w http.ResponseWriter, r *http.Request) {
	const route = "results"
	body, ok := f.readBody(w, r, route)
	if !ok {
		return
	}
	rs, err := wire.DecodeResults(body)
	if err != nil {
		f.fail(w, route, http.StatusBadRequest, err.Error())
		return
	}
	dest := records.DestinationOf(f.p, f.site.Name, "")
	recs := make([]*kgo.Record, len(rs))
	for i := range rs {
		if recs[i], err = records.Result(dest, &rs[i]); err != nil {
			f.fail(w, route, http.StatusBadRequest, err.Error())
			return
		}
	}
	var spans []trace.Span
	if f.tr.Enabled() {
		spans = f.startDeliveries(r, "", len(rs), func(i int) string { return rs[i].ID })
		withSpans(recs, spans)
	}
	err = f.produce(r.Context(), recs)
	endSpans(spans, err)
	if err != nil {
		f.produceFailed(w, route, err)
		return
	}
	now := f.now()
	for i := range rs {
		if dest.Uplink() {
			break // measured where the results are written
		}
		// Only known tiers become label values.
		if _, _, err := f.p.Tier(rs[i].Tier); err == nil && !rs[i].SentAt.IsZero() {
			f.m.e2e(rs[i].Tier, now.Sub(rs[i].SentAt))
		}
	}
	f.m.request(route, "ok")
	w.WriteHeader(http.StatusNoContent)
}

// accept completes a device's message (id, send time, route) and writes it
// to the first tier's topic; it returns once Kafka acknowledged. A funnel
// of another site refuses it with NotIngestSiteError.
func (f *Funnel) accept(ctx context.Context, m *wire.Message) error {
	if f.site.Name != f.ingestSite {
		return &NotIngestSiteError{f.site.Name, f.ingestSite}
	}
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.SentAt.IsZero() {
		m.SentAt = f.now().UTC()
	}
	m.Route = f.first
	return f.produceMessages(ctx, records.Destination{Topic: f.p.InputTopic(f.first)}, []wire.Message{*m}, nil)
}

// NewID returns a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// topicLabel maps a topic to a bounded label: the tier, "results" or
// "uplink".
func topicLabel(p *pipeline.Pipeline, topic string) string {
	t, _ := p.ParseTopic(topic)
	switch t.Kind {
	case pipeline.TopicInput, pipeline.TopicDLQ:
		return t.Tier
	case pipeline.TopicResults:
		return "results"
	case pipeline.TopicUplink, pipeline.TopicUplinkDLQ:
		return "uplink"
	}
	return "other"
}
