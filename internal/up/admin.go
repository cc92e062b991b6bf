package up

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/socket"
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
	return cs
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
// by process), /healthz, /readyz and each tier's live replica set, which
// the connectors follow.
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
	runtime.HandleReplicas(mux, func(tier string) runtime.Runtime {
		if rt := s.runtime(tier); rt != nil {
			return rt
		}
		return nil // not a typed nil inside the interface
	})
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
