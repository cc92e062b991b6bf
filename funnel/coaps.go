package funnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/transport/v4/udp"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	dtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ddnn-continuum/ddnn/internal/auth"
)

// DTLSLimits bound what CoAP over DTLS may hold, so that a flood of
// ClientHellos (cheap to send, from forged addresses too) cannot exhaust
// memory or goroutines. A zero field takes its default.
type DTLSLimits struct {
	// MaxHandshakes is the most handshakes in progress at once (default
	// 64), counted from the cookie round trip on: a peer holds a slot
	// only once it has echoed the cookie of the server's
	// HelloVerifyRequest, which proves it receives at its address. A
	// cookie echo beyond the bound is ignored; a real client retransmits
	// it and gets in when a slot is free.
	MaxHandshakes int
	// MaxHandshakesPerSource is the most of those handshakes one source
	// (an IPv4 address, an IPv6 /64; loopback too) may hold at once
	// (default 8), so that one host that echoes its cookies from many
	// ports and then stalls holds at most this many slots, not all of
	// them. An echo past it is ignored as past MaxHandshakes.
	MaxHandshakesPerSource int
	// MaxHellos is the most peers that were sent a cookie and have not
	// echoed it yet (default 16 × MaxHandshakes). Such a peer may be a
	// forged address; it costs a little memory and no handshake slot.
	// At the bound the oldest is dropped, so forged ClientHellos cannot
	// keep a real device, whose echo follows within a round trip, out.
	MaxHellos int
	// HelloTimeout drops a peer that has not echoed its cookie within it
	// (default 3s; a client that lost the HelloVerifyRequest starts over
	// with its next retransmission).
	HelloTimeout time.Duration
	// HandshakeTimeout bounds one handshake (default 10s).
	HandshakeTimeout time.Duration
	// MaxSessions is the most DTLS sessions open at once, handshakes in
	// progress included (default funnel.max_connections).
	MaxSessions int
	// IdleTimeout closes a session that sent nothing for this long
	// (default 60s); the device then makes a new handshake.
	IdleTimeout time.Duration
}

// Defaults of DTLSLimits.
const (
	DefaultDTLSMaxHandshakes          = 64
	DefaultDTLSMaxHandshakesPerSource = 8
	DefaultDTLSHelloTimeout           = 3 * time.Second
	DefaultDTLSHandshakeTimeout       = 10 * time.Second
	DefaultDTLSIdleTimeout            = 60 * time.Second
)

// DTLS is how the CoAPS listener authenticates itself and devices.
type DTLS struct {
	// PSKs, when set, lets devices in with a pre-shared key: the PSK
	// identity is the device id.
	PSKs *auth.PSKs
	// TLS, when set (TLSConfig: funnel.tls), is the server's certificate
	// and, with ClientCAs, the CA of devices' client certificates (the
	// common name is then the device id).
	TLS *tls.Config
	// RequireDevice refuses a handshake that authenticates no device (auth.devices: token).
	RequireDevice bool
	Limits        DTLSLimits
}

// The cipher suites CoAPS offers: RFC 7925's mandatory
// TLS_PSK_WITH_AES_128_CCM_8 and TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, and
// the GCM suites common DTLS stacks (OpenSSL, mbed TLS) prefer.
var (
	pskSuites = []piondtls.CipherSuiteID{
		piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
		piondtls.TLS_PSK_WITH_AES_128_CCM,
		piondtls.TLS_PSK_WITH_AES_128_CCM_8,
	}
	certSuites = []piondtls.CipherSuiteID{
		piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		piondtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		piondtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		piondtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
		piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
	}
)

var errNoDeviceCredential = errors.New("coaps: the handshake authenticated no device: use a pre-shared key (identity = device id) or a client certificate")

// CoAPSListener is a DTLS listener that bounds handshakes and sessions
// (DTLSLimits) and hands the CoAPS server only sessions whose handshake
// succeeded. ListenCoAPS makes one.
type CoAPSListener struct {
	inner  net.Listener
	hellos *helloListener // under inner: peers until they echo their cookie
	limits DTLSLimits
	psks   *auth.PSKs
	// certDevices checks client certificates against the credentials
	// file at the handshake (ServeCoAPS sets it).
	certDevices *atomic.Pointer[auth.Devices]
	log         *slog.Logger

	hs       chan struct{} // a slot per handshake in progress
	sessions chan struct{} // a slot per open session, handshakes included
	ready    chan *dtlsSession

	srcMu sync.Mutex
	hsSrc map[netip.Addr]int // handshakes in progress per source

	ctx    context.Context // ends when the listener closes
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup

	// dropped counts peers dropped before their cookie round trip (the
	// hello bound or timeout); full counts cookie echoes ignored because
	// every handshake or session slot was taken or the peer's source held
	// MaxHandshakesPerSource, fullSource the latter alone; failed counts
	// failed handshakes.
	dropped, full, fullSource, failed atomic.Int64
}

// dtlsSession is an established DTLS session and the device it
// authenticated ("" when anonymous).
type dtlsSession struct {
	net.Conn
	device string
	psk    []byte            // the key of a PSK session, checked again on each request
	cert   *x509.Certificate // the client certificate of a certificate session, likewise
	once   sync.Once
	free   func()
}

func (s *dtlsSession) Close() error {
	err := s.Conn.Close()
	s.once.Do(s.free)
	return err
}

// ListenCoAPS binds the CoAPS ingest's UDP socket: CoAP over DTLS 1.2
// with the credentials of d. maxSessions is the default of
// d.Limits.MaxSessions.
func ListenCoAPS(addr string, d DTLS, maxSessions int, log *slog.Logger) (*CoAPSListener, error) {
	lim := d.Limits
	setZero(&lim.MaxHandshakes, DefaultDTLSMaxHandshakes)
	setZero(&lim.MaxHandshakesPerSource, DefaultDTLSMaxHandshakesPerSource)
	setZero(&lim.MaxHellos, 16*lim.MaxHandshakes)
	setZero(&lim.HelloTimeout, DefaultDTLSHelloTimeout)
	setZero(&lim.HandshakeTimeout, DefaultDTLSHandshakeTimeout)
	setZero(&lim.MaxSessions, maxSessions)
	setZero(&lim.IdleTimeout, DefaultDTLSIdleTimeout)
	if lim.MaxSessions < lim.MaxHandshakes {
		lim.MaxSessions = lim.MaxHandshakes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []piondtls.ServerOption{
		piondtls.WithExtendedMasterSecret(piondtls.RequestExtendedMasterSecret),
		piondtls.WithFlightInterval(time.Second),
	}
	var suites []piondtls.CipherSuiteID
	if d.PSKs != nil {
		psks := d.PSKs
		opts = append(opts, piondtls.WithPSK(func(identity []byte) ([]byte, error) {
			if key, ok := psks.For(string(identity)); ok {
				return key, nil
			}
			return nil, fmt.Errorf("psk identity %q: no such device, or revoked", identity)
		}))
		suites = append(suites, pskSuites...)
	}
	if d.TLS != nil && len(d.TLS.Certificates) > 0 {
		opts = append(opts, piondtls.WithCertificates(d.TLS.Certificates...))
		suites = append(suites, certSuites...)
		if d.TLS.ClientCAs != nil {
			opts = append(opts, piondtls.WithClientCAs(d.TLS.ClientCAs), piondtls.WithClientAuth(piondtls.VerifyClientCertIfGiven))
		}
	}
	if len(suites) == 0 {
		return nil, errors.New("coaps funnel: no credential to serve DTLS with: set auth.devices_psk_key_file or funnel.tls")
	}
	opts = append(opts, piondtls.WithCipherSuites(suites...))
	// certDevices, set by ServeCoAPS, is the funnel's credentials file: a
	// certificate of a revoked device fails the handshake.
	certDevices := new(atomic.Pointer[auth.Devices])
	opts = append(opts, piondtls.WithVerifyConnection(func(s *piondtls.State) error {
		if d.RequireDevice && len(s.IdentityHint) == 0 && len(s.PeerCertificates) == 0 {
			return errNoDeviceCredential
		}
		if devs := certDevices.Load(); devs != nil && len(s.PeerCertificates) > 0 {
			cert, err := x509.ParseCertificate(s.PeerCertificates[0])
			if err != nil {
				return err
			}
			return devs.CheckCertificate(cert.Subject.CommonName, cert.NotBefore)
		}
		return nil
	}))
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coaps funnel: %w", err)
	}
	udpl, err := (&udp.ListenConfig{AcceptFilter: isDTLSHandshake}).Listen("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("coaps funnel: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &CoAPSListener{
		limits: lim, psks: d.PSKs, certDevices: certDevices, log: log,
		hs:       make(chan struct{}, lim.MaxHandshakes),
		sessions: make(chan struct{}, lim.MaxSessions),
		ready:    make(chan *dtlsSession),
		hsSrc:    map[netip.Addr]int{},
		ctx:      ctx, cancel: cancel,
	}
	l.hellos = &helloListener{Listener: udpl, q: newHelloQueue(lim.MaxHellos, lim.HelloTimeout, l.takeSlots, &l.dropped)}
	if l.inner, err = piondtls.NewListenerWithOptions(dtlsnet.PacketListenerFromListener(l.hellos), opts...); err != nil {
		udpl.Close()
		cancel()
		return nil, fmt.Errorf("coaps funnel: %w", err)
	}
	l.wg.Go(l.acceptLoop)
	return l, nil
}

// Addr is the listener's UDP address.
func (l *CoAPSListener) Addr() net.Addr { return l.inner.Addr() }

// Limits are the bounds in force, defaults filled in.
func (l *CoAPSListener) Limits() DTLSLimits { return l.limits }

// Close stops accepting, ends the handshakes in progress and waits for
// them; established sessions are their server's to close.
func (l *CoAPSListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

// AcceptWithContext returns the next session whose handshake succeeded.
func (l *CoAPSListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, coapnet.ErrListenerIsClosed
	case s := <-l.ready:
		return s, nil
	}
}

// acceptLoop takes every new peer from the DTLS listener at once (a peer
// left waiting there buffers its datagrams without bound) and starts its
// handshake. The peer is a hello (helloQueue) until it echoes the cookie;
// only then does it take a handshake and a session slot (takeSlots).
func (l *CoAPSListener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		p := l.hellos.last
		l.hellos.last = nil
		if err != nil {
			if p != nil {
				l.hellos.q.remove(p)
				p.Close()
			}
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Debug("coaps accept", "err", err)
			continue
		}
		l.wg.Go(func() { l.handshake(c, p) })
	}
}

// takeSlots takes a handshake and a session slot for p, which echoed its
// cookie, and counts the handshake against p's source; false when a
// bound is reached.
func (l *CoAPSListener) takeSlots(p *dtlsPeer) bool {
	p.src = peerSource(p.RemoteAddr())
	l.srcMu.Lock()
	defer l.srcMu.Unlock()
	if l.hsSrc[p.src] >= l.limits.MaxHandshakesPerSource {
		l.fullSource.Add(1)
		l.full.Add(1)
		return false
	}
	select {
	case l.sessions <- struct{}{}:
	default:
		l.full.Add(1)
		return false
	}
	select {
	case l.hs <- struct{}{}:
	default:
		<-l.sessions
		l.full.Add(1)
		return false
	}
	l.hsSrc[p.src]++
	return true
}

// freeHandshake gives back the handshake slot of p, which took it with
// takeSlots.
func (l *CoAPSListener) freeHandshake(p *dtlsPeer) {
	l.srcMu.Lock()
	if n := l.hsSrc[p.src] - 1; n > 0 {
		l.hsSrc[p.src] = n
	} else {
		delete(l.hsSrc, p.src)
	}
	l.srcMu.Unlock()
	<-l.hs
}

// peerSource is the source a peer's handshakes count against: as for
// HTTP connections (source), its IPv4 address or its IPv6 /64.
func peerSource(a net.Addr) netip.Addr {
	var ap netip.AddrPort
	if ua, ok := a.(*net.UDPAddr); ok {
		ap = ua.AddrPort()
	} else if a != nil {
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return source(ap.Addr().Unmap())
}

func (l *CoAPSListener) handshake(c net.Conn, p *dtlsPeer) {
	ctx, cancel := context.WithTimeout(l.ctx, l.limits.HandshakeTimeout)
	defer cancel()
	dc := c.(*piondtls.Conn)
	err := dc.HandshakeContext(ctx)
	verified := p.verified.Load()
	if verified {
		l.freeHandshake(p)
	} else if l.hellos.q.remove(p) {
		p.timer.Stop()
	}
	if err == nil && !verified {
		// A handshake pion completed without the watch seeing the
		// cookie echoed: it still needs a session slot.
		select {
		case l.sessions <- struct{}{}:
			verified = true
		default:
			err = errors.New("every session slot is taken")
		}
	}
	if err != nil {
		l.failed.Add(1)
		l.log.Debug("coaps handshake", "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		if verified {
			<-l.sessions
		}
		return
	}
	s := &dtlsSession{Conn: c, free: func() { <-l.sessions }}
	st, _ := dc.ConnectionState()
	switch {
	case len(st.IdentityHint) > 0:
		s.device = string(st.IdentityHint)
		s.psk, _ = l.psks.For(s.device)
	case len(st.PeerCertificates) > 0:
		if cert, err := x509.ParseCertificate(st.PeerCertificates[0]); err == nil {
			s.device, s.cert = cert.Subject.CommonName, cert
		}
	}
	select {
	case l.ready <- s:
	case <-l.ctx.Done():
		s.Close()
	}
}

// ServeCoAPS serves the ingest route over CoAP over DTLS on l, as
// ServeCoAP does over plain CoAP: the same handler and limits, with the
// device the session authenticated. It returns nil when ctx ended or l was
// closed, and closes l.
func (f *Funnel) ServeCoAPS(ctx context.Context, l *CoAPSListener, limits CoAPLimits) error {
	ci := f.newCoAPIngest(limits)
	ci.psks = l.psks
	if f.auth.Devices != nil {
		l.certDevices.Store(f.auth.Devices)
	}
	f.log.Info("coaps funnel serving", "addr", l.Addr().String(), "max_handshakes", l.limits.MaxHandshakes,
		"max_handshakes_per_source", l.limits.MaxHandshakesPerSource,
		"handshake_timeout", l.limits.HandshakeTimeout, "max_sessions", l.limits.MaxSessions, "idle_timeout", l.limits.IdleTimeout)
	return serveCoAPIngest(ctx, ci, "coaps", dtlsserver.Listener(l), coapdtls.NewServer,
		dtlsserver.Option(options.WithInactivityMonitor(l.limits.IdleTimeout, func(cc *udpclient.Conn) { cc.Close() })))
}

// sessionDevice returns the device a CoAPS request's session
// authenticated: "" over plain CoAP or on an anonymous session. It is
// checked on every request, so a revocation cuts open sessions off too:
// the error says why the session's credential no longer holds (its
// pre-shared key was revoked, or re-added with a new token, since the
// handshake; its client certificate's device was revoked).
func (ci *coapIngest) sessionDevice(w mux.ResponseWriter) (device string, err error) {
	s, isDTLS := w.Conn().NetConn().(*dtlsSession)
	if !isDTLS {
		return "", nil
	}
	if s.psk != nil {
		cur, valid := ci.psks.For(s.device)
		if !valid || !bytes.Equal(cur, s.psk) {
			return s.device, fmt.Errorf("device %q's key was revoked or replaced since the handshake: make a new one", s.device)
		}
	}
	if s.cert != nil && ci.f.auth.Devices != nil {
		if err := ci.f.auth.Devices.CheckCertificate(s.device, s.cert.NotBefore); err != nil {
			return s.device, err
		}
	}
	return s.device, nil
}
