package inference

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// ServerConfig runs a Function as a standalone HTTP server.
type ServerConfig struct {
	// Listener to serve on; the caller opens it so it can pick an ephemeral
	// port and learn the address.
	Listener net.Listener
	Function *Function
	// Load builds the session; it runs after the listener serves /healthz,
	// and /readyz turns ready when it returns.
	Load func() (*Session, error)
	// Gatherer, when set, is served on /metrics.
	Gatherer prometheus.Gatherer
	// Service, when set, admits only bearers of a service token to POST
	// /v1/infer: a replica runs its model for the pipeline's connectors,
	// not for anyone who reaches it.
	Service *auth.Tokens
	// ShutdownTimeout bounds the drain of in-flight requests (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Serve serves until ctx ends, the model fails to load or the server
// fails, then drains in-flight requests and closes the session. A load
// error is returned.
func Serve(ctx context.Context, cfg ServerConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	mux := http.NewServeMux()
	fh := cfg.Function.Handler()
	mux.Handle("/", fh)
	mux.Handle(httpapi.PathInfer, cfg.Service.Require(fh))
	if cfg.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	var sess *Session // set once loaded; closed after the server drained
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(cfg.Listener); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		start := time.Now()
		s, err := cfg.Load()
		if err != nil {
			return err
		}
		if err := cfg.Function.SetSession(s); err != nil {
			s.Close()
			return err
		}
		sess = s
		log.Info("model loaded", "took", time.Since(start).Round(time.Millisecond))
		return nil
	})
	drained := true
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "err", err)
			drained = false
		}
		return nil
	})
	err := g.Wait()
	// A session must not leak past Serve, but requests still running after
	// the shutdown timeout may use it: then it is left to process exit.
	if sess != nil && drained {
		sess.Close()
	}
	return err
}
