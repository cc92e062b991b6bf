package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/statuspage"
)

// runtime returns tier's runtime, nil before it exists.
func (s *Supervisor) runtime(tier string) runtime.Runtime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runtimes[tier]
}

// fixedChildren are the funnel, the connectors or the monolith, and the
// uplinks.
func (s *Supervisor) fixedChildren() []*proc.Child {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []*proc.Child
	if s.funnel != nil {
		cs = append(cs, s.funnel)
	}
	cs = append(cs, s.connectors...)
	if s.monolith != nil {
		cs = append(cs, s.monolith)
	}
	return append(cs, s.uplinks...)
}

// children are every child process, replicas included.
func (s *Supervisor) children() []*proc.Child {
	cs := s.fixedChildren()
	for _, t := range s.tiers {
		if rt := s.runtime(t.Name); rt != nil {
			cs = append(cs, childrenOf(rt)...)
		}
	}
	return append(cs, s.canaryChildren()...)
}

// childrenOf returns a runtime's child processes, if it has any.
func childrenOf(rt runtime.Runtime) []*proc.Child {
	if c, ok := rt.(interface{ Children() []*proc.Child }); ok {
		return c.Children()
	}
	return nil
}

// newRegistry makes the supervisor's own metrics registry, before
// anything registers with it (the embedded broker does, first).
func (s *Supervisor) newRegistry() {
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reg = prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": s.p.Name}, s.registry)
	s.kafkaReg = s.reg
}

// serveAdmin serves /metrics (the supervisor's and every child's, labeled
// by process), /healthz, /readyz, each tier's live replica set, which the
// connectors follow, the status (/v1/status), the pipeline it runs
// (/v1/pipeline, credentials redacted, for ddnn apply) and the status page
// at /, whose charts sample the status every 2s while the page is open.
func (s *Supervisor) serveAdmin() error {
	reg := s.registry
	restarts := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ddnn_up_child_restarts", Help: "Restarts of ddnn up's child processes since start.",
	}, func() float64 {
		n := 0
		for _, c := range s.children() {
			n += c.Restarts()
		}
		return float64(n)
	})
	s.reg.MustRegister(restarts, auth.NewFilesCollector(auth.SiteCredentialFiles(&s.site, s.cfg.ServiceTokenFile)))
	client, err := s.serviceClient(2 * time.Second)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		gs := prometheus.Gatherers{reg}
		for _, c := range s.children() {
			gs = append(gs, childGatherer{c, client})
		}
		return gs.Gather()
	})
	mux := http.NewServeMux()
	// A child that cannot be read (restarting, say) is left out of the
	// answer, with a warning saying which, rather than failing it.
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(s.log.With("route", "/metrics").Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		for _, c := range s.fixedChildren() {
			if !c.Ready() {
				http.Error(w, c.Name()+" not ready", http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	// ddnn status of the sites this process runs, as JSON (status.Snapshot).
	mux.HandleFunc("GET "+httpapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		snap, err := s.siteStatus(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(snap)
	})
	// The pipeline as last applied (at start, or by a reload), with the
	// sha256 of its models: what ddnn apply and a reload plan against.
	running, err := apply.Load(s.p)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	ms, err := s.readModels(running)
	s.mu.Lock()
	s.applied, s.models, s.modelsErr = running, ms, err
	s.mu.Unlock()
	tokens, err := auth.LoadTokens(s.cfg.ServiceTokenFile)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	mux.Handle("POST "+httpapi.PathApply, tokens.Require(loopbackWithoutToken(tokens, http.HandlerFunc(s.serveApply))))
	mux.HandleFunc("GET "+httpapi.PathPipeline, func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		running := s.applied
		s.mu.Unlock()
		d, err := running.Describe()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d)
	})
	runtime.HandleReplicas(mux, func(tier string) runtime.Runtime {
		if rt := s.runtime(tier); rt != nil {
			return rt
		}
		return nil // not a typed nil inside the interface
	})
	runtime.HandleCanaryReplicas(mux, s.canaryRuntime)
	page, err := statuspage.New(s.siteStatus, statuspage.Options{Logger: s.log.With("component", "status_page")})
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	page.Register(mux)
	s.bg.Go(func() error { return page.Run(s.supervise) })
	ln, err := socket.Listen(s.site.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.bg.Go(func() error {
		if err := s.admin.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	return nil
}

// childGatherer reads a child's /metrics with client, which presents the
// service token (the funnel serves its metrics on the delivery zone), and
// labels every series with the child's name.
type childGatherer struct {
	c      *proc.Child
	client *http.Client
}

func (g childGatherer) Gather() ([]*dto.MetricFamily, error) {
	resp, err := g.client.Get(g.c.BaseURL() + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", g.c.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s metrics: %s", g.c.Name(), resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", g.c.Name(), err)
	}
	name, label := "process", g.c.Name()
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		// Runtime metrics of every child would collide with the
		// supervisor's own; keep ddnn's.
		if !strings.HasPrefix(f.GetName(), "ddnn_") {
			continue
		}
		for _, m := range f.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: &name, Value: &label})
		}
		out = append(out, f)
	}
	return out, nil
}

// lastStatus is the status as last read, shared by /v1/status and the
// status page's sampler.
type lastStatus struct {
	mu     sync.Mutex // held while reading, so callers at once share one read
	reader *status.Reader
	snap   status.Snapshot
	err    error
	at     time.Time
}

// siteStatus reads the status of the sites this process runs: every site
// (what `ddnn status` prints) unless it runs one (`ddnn up --site S`:
// `ddnn status --site S`, since the others may be out of its reach). It
// reads at most once a second, each read after the first gathering every
// child's metrics once (status.Reader), so the page open in several
// browsers does not multiply the gathers.
func (s *Supervisor) siteStatus(ctx context.Context) (status.Snapshot, error) {
	l := &s.status
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.at) < time.Second {
		return l.snap, l.err
	}
	if l.reader == nil {
		l.reader = status.NewReader(s.p, status.Options{Site: s.cfg.Site})
	}
	l.snap, l.err = l.reader.Read(ctx)
	l.at = time.Now()
	return l.snap, l.err
}

// loopbackWithoutToken serves h to every caller when the pipeline has a
// service token (tokens.Require checks it), and only to callers on
// loopback when it has none (auth.service: none): nothing that changes
// the pipeline is reachable without a credential from elsewhere.
func loopbackWithoutToken(tokens *auth.Tokens, h http.Handler) http.Handler {
	if tokens != nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			applyError(w, http.StatusForbidden, "the pipeline has no service token (auth.service: none): it is applied only from loopback")
			return
		}
		h.ServeHTTP(w, r)
	})
}
