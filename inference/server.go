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
	// ShutdownTimeout bounds the drain of in-flight requests (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Serve serves until ctx ends or the model fails to load, then drains
// in-flight requests and closes the session. A load error is returned.
func Serve(ctx context.Context, cfg ServerConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	mux := http.NewServeMux()
	mux.Handle("/", cfg.Function.Handler())
	if cfg.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(cfg.Listener) }()

	loaded := make(chan error, 1)
	var sess *Session
	go func() {
		start := time.Now()
		s, err := cfg.Load()
		if err == nil {
			if err = cfg.Function.SetSession(s); err != nil {
				s.Close()
			} else {
				sess = s
				log.Info("model loaded", "took", time.Since(start).Round(time.Millisecond))
			}
		}
		loaded <- err
	}()

	var runErr error
	select {
	case <-ctx.Done():
		runErr = <-loaded // a session must not leak past Serve
	case err := <-loaded:
		if err != nil {
			runErr = err
			break
		}
		select {
		case <-ctx.Done():
		case err := <-served:
			runErr = fmt.Errorf("http server: %w", err)
		}
	case err := <-served:
		runErr = fmt.Errorf("http server: %w", err)
		<-loaded
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests may still use the session: leave it to process exit.
		log.Warn("shutdown", "err", err)
	} else if sess != nil {
		sess.Close()
	}
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	return runErr
}
