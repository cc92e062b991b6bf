package funnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"
)

// RunConfig is what Run serves on. The caller opens the sockets, so that a
// busy address fails before anything runs and ports may be ephemeral.
type RunConfig struct {
	// HTTP serves every route; Run bounds it to funnel.max_connections
	// open connections.
	HTTP net.Listener
	// CoAP, when set, serves the ingest route over CoAP (ListenCoAP).
	CoAP       *coapnet.UDPConn
	CoAPLimits CoAPLimits
	// Gatherer, when set, is served on GET /metrics.
	Gatherer prometheus.Gatherer
	// ShutdownTimeout bounds the wait for HTTP requests in flight when
	// stopping (default 8s).
	ShutdownTimeout time.Duration
	// FlushTimeout bounds the producer's final flush (default 3s).
	FlushTimeout time.Duration
}

// Run serves the funnel until ctx ends or a server stops (a CoAP server
// that ends on its own ends the funnel too, so a supervisor restarts it
// whole). Then it stops in order: ingest answers 503 and the CoAP server
// stops, HTTP stops accepting and waits for the requests in flight (device
// ingests already taken and internal deliveries) to be acknowledged, and
// the producer flushes what is left. It closes both sockets; the Kafka
// client stays the caller's to close.
func (f *Funnel) Run(ctx context.Context, cfg RunConfig) error {
	if cfg.HTTP == nil {
		return errors.New("funnel: no HTTP listener")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 8 * time.Second
	}
	if cfg.FlushTimeout == 0 {
		cfg.FlushTimeout = 3 * time.Second
	}
	mux := http.NewServeMux()
	mux.Handle("/", f.Handler())
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
		mux.Handle("/metrics", f.methodsOnly("GET, HEAD"))
	}
	ln := cfg.HTTP
	if n := f.p.Funnel.MaxConnections; n > 0 {
		ln = netutil.LimitListener(ln, n)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	if cfg.CoAP != nil {
		g.Go(func() error {
			err := f.ServeCoAP(gctx, cfg.CoAP, cfg.CoAPLimits)
			if err == nil && gctx.Err() == nil {
				err = errors.New("server stopped")
			}
			if err != nil {
				return fmt.Errorf("coap funnel: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		f.log.Info("funnel serving", "addr", cfg.HTTP.Addr().String(), "brokers", f.p.Kafka.SeedBrokers())
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http funnel: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		f.Drain()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			f.log.Warn("http requests still in flight after the shutdown timeout; closing them", "timeout", cfg.ShutdownTimeout)
			srv.Close()
		}
		return nil
	})
	err := g.Wait()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.FlushTimeout)
	defer cancel()
	if ferr := f.cl.Flush(fctx); ferr != nil {
		f.log.Warn("producer not flushed", "err", ferr, "timeout", cfg.FlushTimeout)
	}
	f.log.Info("funnel stopped")
	return err
}
