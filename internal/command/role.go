package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Role are the flags every role that runs a part of the pipeline has:
// -f, --brokers, --tiers-on, --service-token-file and --log-level.
type Role struct {
	File, Brokers, TiersOn, ServiceTokenFile string
	Log
}

// Flags binds r to its flags.
func (r *Role) Flags(fs *flag.FlagSet) {
	FileFlag(fs, &r.File)
	fs.StringVar(&r.Brokers, "brokers", "", "Kafka brokers, comma-separated (default: the kafka section of the site the role runs on)")
	TiersOnFlag(fs, &r.TiersOn)
	fs.StringVar(&r.ServiceTokenFile, "service-token-file", "", "service tokens the pipeline's parts present to each other (default: the pipeline's auth.service_token_file)")
	r.Log.Flags(fs)
}

// Load builds the logger (tagged with component) and reads the pipeline,
// with the tiers placed as --tiers-on says and --service-token-file
// applied. A role runs one site of it: OnSite applies --brokers there.
func (r *Role) Load(stderr io.Writer, component string) (*pipeline.Pipeline, *slog.Logger, error) {
	log, err := r.Logger(stderr, component)
	if err != nil {
		return nil, nil, err
	}
	p, err := r.LoadPipeline()
	if err != nil {
		return nil, nil, err
	}
	return p, log, nil
}

// useServiceTokenFile makes file, as --service-token-file names it, p's
// service tokens.
func useServiceTokenFile(p *pipeline.Pipeline, file string) error {
	// Relative to the working directory, as the command line is.
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("--service-token-file: %w", err)
	}
	p.Auth.Service, p.Auth.ServiceTokenFile = pipeline.AuthToken, abs
	return nil
}

// OnSite makes --brokers, when given, the Kafka of site in p, and returns
// the view of that site.
func (r *Role) OnSite(p *pipeline.Pipeline, site string) (*pipeline.SiteView, error) {
	if r.Brokers != "" {
		brokers := SplitList(r.Brokers)
		for i := range p.SiteList {
			if p.SiteList[i].Name == site {
				p.SiteList[i].Kafka.Brokers = brokers
			}
		}
		if len(p.SiteList) <= 1 {
			p.Kafka.Brokers = brokers
		}
	}
	return p.OnSite(site)
}

// Site resolves a role's --site: required on a pipeline of several sites,
// else the only site.
func Site(p *pipeline.Pipeline, site string) (string, error) {
	if site != "" {
		if _, err := p.Site(site); err != nil {
			return "", Usagef("--site: %v", err)
		}
		return site, nil
	}
	sites := p.Sites()
	if len(sites) == 1 {
		return sites[0].Name, nil
	}
	names := make([]string, len(sites))
	for i := range sites {
		names[i] = sites[i].Name
	}
	return "", Usagef("--site is required: pipeline %q has %d sites (%s)", p.Name, len(sites), strings.Join(names, ", "))
}

// NewRegistry makes a role's registry, with Go and process metrics, and
// the registerer of its own metrics, which carry the pipeline's name.
func NewRegistry(p *pipeline.Pipeline) (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.Name}, reg)
}

// AdminMux serves /metrics from g, /healthz, and /readyz, which answers
// 503 while ready says no.
func AdminMux(g prometheus.Gatherer, ready func() bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// WithAdmin runs a role while serving its admin routes (h) on ln: the
// admin server outlives the role, so /metrics and /readyz answer while it
// drains, and an admin server that fails stops the role.
func WithAdmin(ctx context.Context, ln net.Listener, h http.Handler, role func(context.Context) error) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer srv.Close()
		return role(ctx)
	})
	return g.Wait()
}
