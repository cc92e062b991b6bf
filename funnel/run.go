package funnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Bounds of the delivery listener, whose clients are the pipeline's own
// parts: a batch of up to pipeline.DefaultMaxRequestBytes may cross a WAN,
// and the replicas' deliverers close their idle connections after 90s, so
// it is they, not the funnel, that close an idle one.
const (
	deliveryReadHeaderTimeout = 10 * time.Second
	deliveryReadTimeout       = 2 * time.Minute
	deliveryIdleTimeout       = 2 * time.Minute
	deliveryMaxHeaderBytes    = 64 << 10
)

// RunConfig is what Run serves on. The caller opens the sockets, so that a
// busy address fails before anything runs and ports may be ephemeral.
type RunConfig struct {
	// Device serves the device zone (DeviceHandler), over TLS when TLS is
	// set, with the funnel's connection bounds (funnel.max_connections,
	// max_connections_per_source), time bounds (read_header_timeout,
	// read_timeout, idle_timeout, write_timeout) and max_header_bytes.
	Device net.Listener
	TLS    *tls.Config
	// Delivery serves the delivery zone (DeliveryHandler) and, when
	// Gatherer is set, GET /metrics for bearers of the service token.
	Delivery net.Listener
	// CoAP, when set, serves the ingest route over CoAP (ListenCoAP).
	CoAP *coapnet.UDPConn
	// CoAPS, when set, serves the ingest route over CoAP over DTLS
	// (ListenCoAPS), with the same limits.
	CoAPS      *CoAPSListener
	CoAPLimits CoAPLimits
	Gatherer   prometheus.Gatherer
	// LameDuck bounds the first step of the stop, in which the funnel
	// takes no new connection and answers the requests on the open ones,
	// closing each connection with its answer (default 1s; see lameDuck).
	LameDuck time.Duration
	// ShutdownTimeout bounds the wait for HTTP requests in flight when
	// stopping (default 8s).
	ShutdownTimeout time.Duration
	// FlushTimeout bounds the producer's final flush (default 3s).
	FlushTimeout time.Duration
}

// Run serves the funnel until ctx ends or a server stops (a CoAP server
// that ends on its own ends the funnel too, so a supervisor restarts it
// whole). With funnel.wait on, it also runs the reader of the results
// topic that answers waits (watchResults). Then it stops in order: the
// CoAP and CoAPS servers stop and both HTTP servers stop accepting, new
// connections waiting in the sockets' backlogs; the requests on the open
// connections are answered, each closing its connection, for up to
// LameDuck; then ingest answers 503 and both HTTP servers close the
// connections left and wait for the requests in flight (device ingests
// already taken and internal deliveries) to be acknowledged, and the
// producer flushes what is left. It closes every socket; the Kafka client
// stays the caller's to close.
func (f *Funnel) Run(ctx context.Context, cfg RunConfig) error {
	if cfg.Device == nil || cfg.Delivery == nil {
		return errors.New("funnel: a device and a delivery listener are both required")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 8 * time.Second
	}
	if cfg.LameDuck == 0 {
		cfg.LameDuck = time.Second
	}
	if cfg.FlushTimeout == 0 {
		cfg.FlushTimeout = 3 * time.Second
	}
	var lame lameDuck
	delivery := http.NewServeMux()
	delivery.Handle("/", f.DeliveryHandler())
	if cfg.Gatherer != nil {
		delivery.Handle("GET /metrics", f.auth.Service.Require(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
		delivery.Handle("/metrics", f.methodsOnly("GET, HEAD"))
	}
	fu := f.site.Funnel
	// The pipeline set every bound (its defaults, or values validated
	// not to be 0).
	limiter := newConnLimiter(lame.listen(cfg.Device), fu.MaxConnections, fu.MaxConnectionsPerSource, fu.PerSourceExempt, fu.WriteTimeout, f.m)
	var device net.Listener = limiter
	if cfg.TLS != nil {
		device = tls.NewListener(device, cfg.TLS)
	}
	errLog := slog.NewLogLogger(f.log.Handler(), slog.LevelDebug) // a client's TLS and protocol errors
	servers := []struct {
		zone string
		ln   net.Listener
		srv  *http.Server
	}{
		{"device", device, &http.Server{
			Handler:           lame.handler(guard(f.DeviceHandler())),
			ReadHeaderTimeout: fu.ReadHeaderTimeout,
			ReadTimeout:       fu.ReadTimeout,
			IdleTimeout:       fu.IdleTimeout,
			MaxHeaderBytes:    fu.MaxHeaderBytes,
			ConnState: func(c net.Conn, s http.ConnState) {
				limiter.track(c, s)
				lame.track(c, s)
			},
			ConnContext: connContext,
			ErrorLog:    errLog,
		}},
		{"delivery", lame.listen(cfg.Delivery), &http.Server{
			Handler:           lame.handler(delivery),
			ReadHeaderTimeout: deliveryReadHeaderTimeout,
			ReadTimeout:       deliveryReadTimeout,
			IdleTimeout:       deliveryIdleTimeout,
			MaxHeaderBytes:    deliveryMaxHeaderBytes,
			ErrorLog:          errLog,
		}},
	}

	g, gctx := errgroup.WithContext(ctx)
	serveUDP := func(name string, serve func(context.Context) error) {
		g.Go(func() error {
			err := serve(gctx)
			if err == nil && gctx.Err() == nil {
				err = errors.New("server stopped")
			}
			if err != nil {
				return fmt.Errorf("%s funnel: %w", name, err)
			}
			return nil
		})
	}
	if f.waits != nil {
		g.Go(func() error { return f.watchResults(gctx) })
	}
	if cfg.CoAP != nil {
		serveUDP("coap", func(ctx context.Context) error { return f.ServeCoAP(ctx, cfg.CoAP, cfg.CoAPLimits) })
	}
	if cfg.CoAPS != nil {
		serveUDP("coaps", func(ctx context.Context) error { return f.ServeCoAPS(ctx, cfg.CoAPS, cfg.CoAPLimits) })
	}
	f.log.Info("funnel serving", "device", cfg.Device.Addr().String(), "tls", cfg.TLS != nil,
		"delivery", cfg.Delivery.Addr().String(), "brokers", f.site.Kafka.SeedBrokers())
	for _, s := range servers {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http funnel, %s listener: %w", s.zone, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		lame.run(cfg.LameDuck)
		f.Drain()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() {
				if err := s.srv.Shutdown(sctx); err != nil {
					f.log.Warn("http requests still in flight after the shutdown timeout; closing them", "listener", s.zone, "timeout", cfg.ShutdownTimeout)
					s.srv.Close()
				}
			})
		}
		wg.Wait()
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

// TLSConfig is the device listener's TLS from the site's funnel.tls
// (paths relative to the pipeline file), or nil when it has no
// certificate. With a client CA, devices may present a certificate signed
// by it instead of a token; one without a certificate still needs a token.
func TLSConfig(site *pipeline.SiteView) (*tls.Config, error) {
	t, p := site.Funnel.TLS, site.Pipeline
	if !t.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(p.Path(t.CertFile), p.Path(t.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("funnel.tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(p.Path(t.ClientCAFile))
		if err != nil {
			return nil, fmt.Errorf("funnel.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("funnel.tls.client_ca_file %s: no PEM certificate in it", t.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}
