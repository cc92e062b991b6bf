package pipeline

import (
	"fmt"
	"net"
	"time"
)

// Defaults of the funnel and admin sections.
const (
	DefaultFunnelListen         = "127.0.0.1:8080"
	DefaultDeliveryListen       = "127.0.0.1:8081"
	DefaultCoAPListen           = "127.0.0.1:5683"
	DefaultCoAPSListen          = "off"
	DefaultFunnelMaxConnections = 4096
	DefaultAdminListen          = "127.0.0.1:9464"
)

// Funnel configures the funnel that devices and inference functions write to.
type Funnel struct {
	// Listen is the HTTP address of the device zone: /v1/ingest, /healthz
	// and /readyz, nothing else.
	Listen string `yaml:"listen"`
	// DeliveryListen is the HTTP address of the delivery zone: the routes
	// the pipeline's own parts deliver to (/v1/tiers/<tier>, /v1/results,
	// /v1/drain) and /metrics, each for bearers of the service credential
	// (auth.service).
	DeliveryListen string `yaml:"delivery_listen"`
	// TLS, when its files are set, serves the device zone over HTTPS.
	TLS FunnelTLS `yaml:"tls"`
	// MaxRequestBytes bounds a device's ingest body; larger ones get 413.
	// The default, Input.IngestBytes, takes the largest valid sample in
	// either form. Delivery routes between the pipeline's parts take up to
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxConnections bounds the device listener's open HTTP connections,
	// so an overload cannot exhaust the process's file descriptors. At the
	// bound a new connection takes the place of the open one that has gone
	// longest without a request in progress (idle, or still sending its
	// header); when every one is in a request, the new one is closed.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource bounds the device listener's open
	// connections from one IP address (an IPv6 /64); past it a new one is
	// closed.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// PerSourceExempt are address prefixes whose connections are not
	// counted per source (they still count toward max_connections).
	PerSourceExempt []string `yaml:"per_source_exempt"`
	// MaxHeaderBytes bounds a device request's header; larger ones get 431
	// and the connection is closed.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout bounds the TLS handshake and the reading of a
	// device request's header, ReadTimeout the header and body together,
	// IdleTimeout how long a kept-alive connection waits for its next
	// request, and WriteTimeout how long one write of an answer may wait
	// for the device to read (one that does not read its answers is
	// closed after it).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	// CoAPListen is the UDP address of coap://HOST/v1/ingest; "off"
	// disables CoAP.
	CoAPListen string `yaml:"coap_listen"`
	// CoAPSListen is the UDP address of coaps://HOST/v1/ingest, CoAP over
	// DTLS: devices authenticate with a pre-shared key
	// (auth.devices_psk_key_file) or a client certificate (funnel.tls with
	// client_ca_file). Default "off".
	CoAPSListen string `yaml:"coaps_listen"`
	// DeviceRateLimit bounds how fast each device may send (off by
	// default); over it ingest answers 429 (CoAP 4.29).
	DeviceRateLimit RateLimit `yaml:"device_rate_limit"`
	// CoAPReassembly bounds the memory Block1 uploads hold.
	CoAPReassembly CoAPReassembly `yaml:"coap_reassembly"`
	// Wait bounds the synchronous answers of ingest's ?wait=DUR.
	Wait Wait `yaml:"wait"`
}

// FunnelTLS is the device listener's certificate, and the CA of the
// devices' client certificates (whose common name is then the device id).
type FunnelTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, asks devices for a certificate signed by it;
	// a device that presents one needs no token.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the device listener serves HTTPS.
func (t *FunnelTLS) Enabled() bool { return t.CertFile != "" }

// Admin configures the supervisor's /metrics, /healthz and /readyz.
type Admin struct {
	Listen string `yaml:"listen"`
}

// validateSettings checks the settings a site inherits from the top-level
// funnel section; f is the section's path.
func (fu *Funnel) validateSettings(f string) []error {
	var errs []error
	if fu.MaxConnections < 16 {
		errs = append(errs, fmt.Errorf("%s.max_connections: %d must be at least 16", f, fu.MaxConnections))
	}
	if fu.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("%s.max_request_bytes: %d must be at least 1024", f, fu.MaxRequestBytes))
	}
	if t := fu.TLS; (t.CertFile == "") != (t.KeyFile == "") || (t.ClientCAFile != "" && t.CertFile == "") {
		errs = append(errs, fmt.Errorf("%s.tls: cert_file and key_file go together, and client_ca_file needs them", f))
	}
	return append(errs, fu.validateLimits(f)...)
}

// validatePlacement checks the funnel's addresses; f is the section's path.
func (fu *Funnel) validatePlacement(f string) []error {
	var errs []error
	if err := checkAddr(f+".listen", fu.Listen); err != nil {
		errs = append(errs, err)
	}
	if err := checkAddr(f+".delivery_listen", fu.DeliveryListen); err != nil {
		errs = append(errs, err)
	}
	if _, port, _ := net.SplitHostPort(fu.Listen); fu.DeliveryListen == fu.Listen && port != "0" {
		errs = append(errs, fmt.Errorf("%s.delivery_listen: %s is also %s.listen: the device and delivery zones need their own listeners", f, fu.DeliveryListen, f))
	}
	if fu.CoAPListen != "off" {
		if err := checkAddr(f+".coap_listen", fu.CoAPListen); err != nil {
			errs = append(errs, err)
		}
	}
	if fu.CoAPSListen != "off" {
		if err := checkAddr(f+".coaps_listen", fu.CoAPSListen); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// validateCoAPS checks that every site serving CoAP over DTLS has a
// credential to do it with.
func (p *Pipeline) validateCoAPS() []error {
	var errs []error
	for i, s := range p.Sites() {
		if s.Funnel.CoAPSListen == "off" || s.Funnel.CoAPSListen == "" {
			continue
		}
		f := "funnel"
		if len(p.SiteList) > 0 {
			f = p.sitePath(i) + ".funnel"
		}
		if p.Auth.DevicesPSKKeyFile == "" && !s.Funnel.TLS.Enabled() {
			errs = append(errs, fmt.Errorf("%s.coaps_listen: DTLS needs a credential: auth.devices_psk_key_file (pre-shared keys) or %s.tls (a certificate)", f, f))
		} else if p.Auth.Devices == AuthToken && p.Auth.DevicesPSKKeyFile == "" && s.Funnel.TLS.ClientCAFile == "" {
			errs = append(errs, fmt.Errorf("%s.coaps_listen: with auth.devices: token, devices need a DTLS credential: set auth.devices_psk_key_file (pre-shared keys) or %s.tls.client_ca_file (client certificates)", f, f))
		}
	}
	return errs
}

// checkAddr reports an address that is not host:port.
func checkAddr(field, v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("%s: %q is not host:port", field, v)
	}
	return nil
}
