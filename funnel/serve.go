package funnel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// Options are what Start takes beyond the pipeline.
type Options struct {
	// Site is the site whose funnel this is (one of the pipeline's).
	Site string
	// Listen and DeliveryListen replace the site's funnel.listen and
	// funnel.delivery_listen when set.
	Listen, DeliveryListen string
	// Registerer gets the funnel's and its Kafka client's metrics, and
	// Gatherer is served on the delivery zone's /metrics; both optional.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger (nil: discard) is tagged with the site on a pipeline of
	// several.
	Logger *slog.Logger
	// Tracing traces ingests and deliveries and their records; nil: off.
	Tracing *telemetry.Tracing
}

// Server is the funnel of one site with everything it serves on: the
// credentials, the Kafka client and the sockets, all opened by Start so
// that a bad setting, a busy address or an unreadable credential file
// fails before anything is served.
type Server struct {
	f    *Funnel
	cl   *kgo.Client
	site *pipeline.SiteView
	run  RunConfig
	// psk is the pre-shared keys' announcement, "" without them.
	psk string
}

// Start checks the site's funnel settings, loads its credentials, makes
// its Kafka client, opens its listeners (HTTP for the device and delivery
// zones, CoAP and CoAP over DTLS unless they are "off") and makes the
// site's topics where it may (a failure there is only logged: they may
// exist already). ctx bounds the making of topics. The Server holds what
// it opened until Run or Close.
func Start(ctx context.Context, p *pipeline.Pipeline, o Options) (*Server, error) {
	site, err := p.OnSite(o.Site)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(p.SiteList) > 1 {
		log = log.With("site", o.Site)
	}
	deviceAddr, deliveryAddr := cmp.Or(o.Listen, site.Funnel.Listen), cmp.Or(o.DeliveryListen, site.Funnel.DeliveryListen)
	if err := CheckListeners(site, deviceAddr, deliveryAddr); err != nil {
		return nil, err
	}
	var fa Auth
	if fa.Service, err = auth.LoadTokens(p.ServiceTokenPath()); err != nil {
		return nil, err
	}
	if p.Auth.Devices == pipeline.AuthToken {
		if fa.Devices, err = auth.LoadDevices(p.Path(p.Auth.DevicesFile)); err != nil {
			return nil, err
		}
	}
	tlsCfg, err := TLSConfig(site)
	if err != nil {
		return nil, err
	}

	cl, err := kafka.NewClient(&site.Kafka, "funnel", o.Registerer, log, append(ProducerOptions(&site.Kafka), o.Tracing.KafkaOpts("funnel", "")...)...)
	if err != nil {
		return nil, fmt.Errorf("funnel: kafka client: %w", err)
	}
	s := &Server{cl: cl, site: site, run: RunConfig{TLS: tlsCfg, Gatherer: o.Gatherer}}
	if err := s.listen(deviceAddr, deliveryAddr, fa, log); err != nil {
		s.Close()
		return nil, err
	}
	var m *Metrics
	if o.Registerer != nil {
		m = NewMetrics(o.Registerer)
	}
	s.f = New(site, cl, m, log)
	s.f.SetAuth(fa)
	s.f.SetTracing(o.Tracing)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = kafka.EnsureTopics(tctx, cl, &site.Kafka, p.TopicsOn(o.Site)...)
	cancel()
	if err != nil {
		log.Warn("topics not ensured; continuing (they may exist already)", "err", err)
	}
	return s, nil
}

// CheckListeners refuses listeners that would expose a zone beyond what
// the pipeline allows, and plain CoAP where devices need a credential. A
// supervisor that binds the funnel's sockets checks them so first.
func CheckListeners(site *pipeline.SiteView, deviceAddr, deliveryAddr string) error {
	devices := site.Pipeline.Auth.Devices
	if err := site.CheckExposure("device", "funnel listener", deviceAddr); err != nil {
		return err
	}
	if err := site.CheckExposure("delivery", "funnel delivery listener", deliveryAddr); err != nil {
		return err
	}
	if site.Funnel.CoAPListen != "off" && devices == pipeline.AuthToken {
		return fmt.Errorf("funnel.coap_listen %s: plain CoAP cannot carry a device's credential; set it \"off\" while auth.devices is token (funnel.coaps_listen serves CoAP over DTLS)", site.Funnel.CoAPListen)
	}
	if a := site.Funnel.CoAPListen; a != "off" && !pipeline.IsLoopback(a) && devices != pipeline.AuthNone {
		return fmt.Errorf("funnel.coap_listen %s is reachable from outside this machine, and plain CoAP carries no device credential: "+
			"set it \"off\" (funnel.coaps_listen serves CoAP over DTLS), listen on 127.0.0.1, or set auth.devices: none to let anyone send", a)
	}
	if site.Funnel.CoAPSListen != "off" {
		return site.CheckExposure("device", "funnel coaps listener", site.Funnel.CoAPSListen)
	}
	return nil
}

// listen opens the server's sockets; on an error the caller closes those
// already open (Close).
func (s *Server) listen(deviceAddr, deliveryAddr string, fa Auth, log *slog.Logger) error {
	var err error
	if s.run.Device, err = socket.Listen(deviceAddr); err != nil {
		return fmt.Errorf("funnel: %w", err)
	}
	if s.run.Delivery, err = socket.Listen(deliveryAddr); err != nil {
		return fmt.Errorf("funnel: delivery: %w", err)
	}
	if s.site.Funnel.CoAPListen != "off" {
		if s.run.CoAP, err = ListenCoAP(s.site.Funnel.CoAPListen); err != nil {
			return err
		}
	}
	if s.site.Funnel.CoAPSListen == "off" {
		return nil
	}
	d := DTLS{TLS: s.run.TLS, RequireDevice: fa.Devices != nil}
	p := s.site.Pipeline
	if p.Auth.DevicesPSKKeyFile != "" {
		if d.PSKs, err = auth.NewPSKs(fa.Devices, p.Path(p.Auth.DevicesPSKKeyFile)); err != nil {
			return err
		}
		s.psk = "pre-shared keys: ddnn devices psk -f " + p.PathFromHere(p.Auth.DevicesFile) + " --key " + p.PathFromHere(p.Auth.DevicesPSKKeyFile) + " NAME"
	}
	s.run.CoAPS, err = ListenCoAPS(s.site.Funnel.CoAPSListen, d, s.site.Funnel.MaxConnections, log)
	return err
}

// DeviceAddr is the address the device zone's HTTP listener took.
func (s *Server) DeviceAddr() net.Addr { return s.run.Device.Addr() }

// DeliveryAddr is the address the delivery zone's listener took.
func (s *Server) DeliveryAddr() net.Addr { return s.run.Delivery.Addr() }

// Announce writes where devices and the pipeline's parts reach the
// funnel, and what credentials they need, one line per protocol.
func (s *Server) Announce(w io.Writer) {
	tlsCfg, fa := s.run.TLS, s.f.auth
	clientCerts := tlsCfg != nil && tlsCfg.ClientCAs != nil
	if s.run.CoAP != nil {
		fmt.Fprintf(w, "funnel: POST coap://%s%s (devices over CoAP)\n", s.run.CoAP.LocalAddr(), httpapi.PathIngest)
	}
	if s.run.CoAPS != nil {
		var creds []string
		if s.psk != "" {
			creds = append(creds, s.psk)
		}
		if clientCerts {
			creds = append(creds, "client certificates")
		}
		if len(creds) == 0 {
			creds = append(creds, "no device credential")
		}
		fmt.Fprintf(w, "funnel: POST coaps://%s%s (devices over CoAP over DTLS; %s)\n", s.run.CoAPS.Addr(), httpapi.PathIngest, strings.Join(creds, ", or "))
	}
	scheme, devAuth, svcAuth := "http", "no device credential", "no service credential"
	if tlsCfg != nil {
		scheme = "https"
	}
	if fa.Devices != nil {
		devAuth = "device tokens from " + fa.Devices.Path()
	}
	if clientCerts {
		devAuth += ", or client certificates"
	}
	if fa.Service != nil {
		svcAuth = "service token required"
	}
	fmt.Fprintf(w, "funnel: POST %s://%s%s (devices; %s); delivery zone http://%s (%s<tier>, %s, %s, /metrics; %s)\n",
		scheme, s.DeviceAddr(), httpapi.PathIngest, devAuth, s.DeliveryAddr(), httpapi.PathTiers, httpapi.PathResults, httpapi.PathDrain, svcAuth)
}

// Run serves until ctx ends or a server stops, then stops in Funnel.Run's
// order (intake off, requests in flight answered, the producer flushed)
// and closes the Kafka client last.
func (s *Server) Run(ctx context.Context) error {
	defer s.cl.Close()
	return s.f.Run(ctx, s.run)
}

// Close releases what Start opened, for a Server that is not run.
func (s *Server) Close() error {
	var errs []error
	for _, c := range []io.Closer{s.run.Device, s.run.Delivery} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	if s.run.CoAP != nil {
		errs = append(errs, s.run.CoAP.Close())
	}
	if s.run.CoAPS != nil {
		errs = append(errs, s.run.CoAPS.Close())
	}
	s.cl.Close()
	return errors.Join(errs...)
}
