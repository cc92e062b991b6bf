package funnel

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// pskEnv is a credentials file with dev-1 and a PSK master key.
type pskEnv struct {
	creds, keyFile string
	psks           *auth.PSKs
}

func newPSKEnv(t *testing.T, devices ...string) *pskEnv {
	t.Helper()
	dir := t.TempDir()
	pe := &pskEnv{creds: filepath.Join(dir, "devices.yaml"), keyFile: filepath.Join(dir, "psk.key")}
	for _, d := range devices {
		if _, err := auth.AddDevice(pe.creds, d, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(pe.keyFile, []byte(auth.NewPSKKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := auth.LoadDevices(pe.creds)
	if err != nil {
		t.Fatal(err)
	}
	if pe.psks, err = auth.NewPSKs(d, pe.keyFile); err != nil {
		t.Fatal(err)
	}
	return pe
}

func (pe *pskEnv) key(t *testing.T, id string) []byte {
	t.Helper()
	k, err := auth.DevicePSK(pe.creds, pe.keyFile, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startCoAPS serves the funnel's CoAPS route on a free loopback UDP port.
func startCoAPS(t *testing.T, e *env, d DTLS) string {
	t.Helper()
	l, err := ListenCoAPS("127.0.0.1:0", d, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.f.ServeCoAPS(ctx, l, CoAPLimits{}); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return addr
}

func dialPSK(t *testing.T, addr, id string, key []byte) *udpclient.Conn {
	t.Helper()
	return dialDTLS(t, addr, &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(id),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
}

// dialDTLS opens a DTLS session to addr and completes its handshake
// within 3 s, or returns nil when it fails: go-coap's own Dial hands the
// handshake to the first write, where a failed one can hold the session's
// lock past every request's deadline.
func dialDTLS(t *testing.T, addr string, cfg *piondtls.Config) *udpclient.Conn {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := piondtls.Dial("udp", raddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil
	}
	cc := coapdtls.Client(conn, clientRunner(t))
	t.Cleanup(func() { cc.Close() })
	return cc
}

// post sends the image and returns the answer's code and payload, or the
// error (a failed handshake).
func postCoAPS(cc *udpclient.Conn, query string) (codes.Code, string, error) {
	if cc == nil {
		return 0, "", errors.New("the DTLS handshake failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var opts []message.Option
	if query != "" {
		for q := range strings.SplitSeq(query, "&") {
			opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
		}
	}
	resp, err := cc.Post(ctx, httpapi.PathIngest, message.AppOctets, bytes.NewReader(float32Image()), opts...)
	if err != nil {
		return 0, "", err
	}
	var body []byte
	if resp.Body() != nil {
		body, _ = io.ReadAll(resp.Body())
	}
	return resp.Code(), string(body), nil
}

// TestCoAPSPSK: the right key gets 2.01 and the record carries the
// identity as its device; claiming another device gets 4.03; a wrong key
// or an unknown identity fails the handshake.
func TestCoAPSPSK(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	pe := newPSKEnv(t, "dev-1")
	addr := startCoAPS(t, e, DTLS{PSKs: pe.psks, RequireDevice: true})

	cc := dialPSK(t, addr, "dev-1", pe.key(t, "dev-1"))
	code, body, err := postCoAPS(cc, "id=psk-1")
	if err != nil || code != codes.Created || body != "psk-1" {
		t.Fatalf("right key: %v %q %v, want 2.01 psk-1", code, body, err)
	}
	if code, body, _ := postCoAPS(cc, "id=psk-2&device=dev-2"); code != codes.Forbidden {
		t.Errorf("claiming dev-2: %v %q, want 4.03", code, body)
	}
	recs := e.records(t, "c.edge.in")
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	if m := decodeRecord(t, recs[0]); m.ID != "psk-1" || m.Device != "dev-1" {
		t.Errorf("record %s device %q, want psk-1 from dev-1", m.ID, m.Device)
	}

	wrong := pe.key(t, "dev-1")
	wrong = append([]byte{}, wrong...)
	wrong[0] ^= 1
	for name, cc := range map[string]*udpclient.Conn{
		"wrong key":        dialPSK(t, addr, "dev-1", wrong),
		"unknown identity": dialPSK(t, addr, "dev-9", pe.key(t, "dev-1")),
	} {
		if code, body, err := postCoAPS(cc, ""); err == nil {
			t.Errorf("%s: answered %v %q, want a failed handshake", name, code, body)
		}
	}
}

// TestCoAPSRevoked: after ddnn devices revoke, a new handshake with the
// device's key fails within 2 s, and its open session is answered 4.01.
func TestCoAPSRevoked(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	pe := newPSKEnv(t, "dev-1")
	addr := startCoAPS(t, e, DTLS{PSKs: pe.psks, RequireDevice: true})
	key := pe.key(t, "dev-1")
	open := dialPSK(t, addr, "dev-1", key)
	if code, _, err := postCoAPS(open, ""); err != nil || code != codes.Created {
		t.Fatalf("before revoking: %v %v", code, err)
	}
	if err := auth.RevokeDevice(pe.creds, "dev-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		code, _, err := postCoAPS(dialPSK(t, addr, "dev-1", key), "")
		if err != nil {
			break
		}
		if time.Since(revoked) > 2*time.Second {
			t.Fatalf("a new session with the revoked key still answered %v after 2s", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("handshakes refused %v after the revocation", time.Since(revoked).Round(time.Millisecond))
	if code, body, err := postCoAPS(open, ""); err != nil || code != codes.Unauthorized {
		t.Errorf("the session opened before the revocation: %v %q %v, want 4.01", code, body, err)
	}
}

// TestCoAPSCertificate: a device with a client certificate of the client
// CA gets in as its common name; with device auth required, a handshake
// with neither a certificate nor a key fails.
func TestCoAPSCertificate(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	ca, caKey := testCA(t)
	server := testCert(t, ca, caKey, "localhost", false)
	client := testCert(t, ca, caKey, "cam-7", true)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	addr := startCoAPS(t, e, DTLS{TLS: &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: pool}, RequireDevice: true})

	dial := func(certs ...tls.Certificate) *udpclient.Conn {
		return dialDTLS(t, addr, &piondtls.Config{Certificates: certs, RootCAs: pool, ServerName: "localhost"})
	}
	if code, body, err := postCoAPS(dial(client), "id=cert-1"); err != nil || code != codes.Created {
		t.Fatalf("client certificate: %v %q %v, want 2.01", code, body, err)
	}
	recs := e.records(t, "c.edge.in")
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	if m := decodeRecord(t, recs[0]); m.Device != "cam-7" {
		t.Errorf("device %q, want the certificate's cam-7", m.Device)
	}
	if code, body, err := postCoAPS(dial(), ""); err == nil {
		t.Errorf("no certificate: answered %v %q, want a failed handshake", code, body)
	}
}

// TestCoAPSHandshakeBounds: peers that echo their cookie and then stall
// hold at most MaxHandshakes slots, each for at most HandshakeTimeout; a
// real device gets in once they time out.
func TestCoAPSHandshakeBounds(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	pe := newPSKEnv(t, "dev-1")
	l, err := ListenCoAPS("127.0.0.1:0", DTLS{PSKs: pe.psks, RequireDevice: true,
		Limits: DTLSLimits{MaxHandshakes: 4, HandshakeTimeout: 500 * time.Millisecond}}, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.f.ServeCoAPS(ctx, l, CoAPLimits{}) }()
	defer func() { cancel(); <-done }()

	stalled := make([]func(), 16)
	for i := range stalled {
		stalled[i] = stalledClient(t, l.Addr().String())
	}
	testsupport.WaitFor(t, 2*time.Second, "12 of 16 stalled peers refused a handshake slot", func() bool { return l.full.Load() >= 12 })
	if n := len(l.hs); n > 4 {
		t.Fatalf("%d handshakes in progress, over the bound of 4", n)
	}
	for _, stop := range stalled {
		stop()
	}
	testsupport.WaitFor(t, 2*time.Second, "the stalled handshakes to time out", func() bool { return len(l.hs) == 0 })
	cc := dialPSK(t, l.Addr().String(), "dev-1", pe.key(t, "dev-1"))
	if code, _, err := postCoAPS(cc, ""); err != nil || code != codes.Created {
		t.Fatalf("a device after the stalled handshakes: %v %v", code, err)
	}
}

// TestCoAPSHandshakesPerSource: one host that echoes its cookie from 64
// ports and then stalls holds at most MaxHandshakesPerSource (8) of the
// 64 handshake slots, not all of them for the handshake timeout (10 s): a
// real device from another address gets in at once (dialDTLS's 3 s
// handshake), and again while the host keeps trying.
func TestCoAPSHandshakesPerSource(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	pe := newPSKEnv(t, "dev-1")
	l, err := ListenCoAPS("127.0.0.1:0", DTLS{PSKs: pe.psks, RequireDevice: true}, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	lim := l.Limits()
	if lim.MaxHandshakes != 64 || lim.MaxHandshakesPerSource != 8 || lim.HandshakeTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", lim)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.f.ServeCoAPS(ctx, l, CoAPLimits{}) }()
	defer func() { cancel(); <-done }()

	// The host is 127.0.0.2: every stalled client echoes once (its
	// retransmissions are dropped), so each holds a slot or was refused.
	const ports = 64
	for range ports {
		stalledClientFrom(t, "127.0.0.2", l.Addr().String())
	}
	testsupport.WaitFor(t, 10*time.Second, "every stalled echo to take a slot or be refused", func() bool {
		return int64(len(l.hs))+l.full.Load() >= ports
	})
	held := len(l.hs)
	start := time.Now()
	cc := dialPSK(t, l.Addr().String(), "dev-1", pe.key(t, "dev-1"))
	took := time.Since(start)
	if held > lim.MaxHandshakesPerSource {
		t.Errorf("one source holds %d handshake slots, over the bound of %d", held, lim.MaxHandshakesPerSource)
	}
	if code, _, err := postCoAPS(cc, ""); err != nil || code != codes.Created {
		t.Fatalf("a device from 127.0.0.1 while 127.0.0.2 stalls %d handshakes: %v %v", held, code, err)
	}
	if n := l.fullSource.Load(); n != ports-int64(held) {
		t.Errorf("%d echoes refused at the source bound, want %d", n, ports-held)
	}
	t.Logf("a device got in %v while one source stalled %d handshakes (%d echoes refused)", took.Round(time.Millisecond), held, ports-held)
}

// TestPeerSource: a peer's handshakes count against its IPv4 address
// (an IPv4-mapped IPv6 address is the same) or its IPv6 /64.
func TestPeerSource(t *testing.T) {
	udp := func(s string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(s), Port: 5684} }
	same := [][2]net.Addr{
		{udp("192.0.2.1"), udp("::ffff:192.0.2.1")},
		{udp("2001:db8:1:2::1"), udp("2001:db8:1:2:ffff:ffff:ffff:ffff")},
	}
	for _, p := range same {
		if a, b := peerSource(p[0]), peerSource(p[1]); a != b {
			t.Errorf("%v and %v: sources %v and %v, want one", p[0], p[1], a, b)
		}
	}
	differ := [][2]net.Addr{
		{udp("192.0.2.1"), udp("192.0.2.2")},
		{udp("2001:db8:1:2::1"), udp("2001:db8:1:3::1")},
	}
	for _, p := range differ {
		if a, b := peerSource(p[0]), peerSource(p[1]); a == b {
			t.Errorf("%v and %v: both source %v, want two", p[0], p[1], a)
		}
	}
}

// TestCoAPSForgedHellos: ClientHellos that never echo their cookie (as
// from forged addresses) take no handshake slot: with far more of them
// than slots, and more than the hellos held, and while more arrive, a real
// device gets in at once.
func TestCoAPSForgedHellos(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	pe := newPSKEnv(t, "dev-1")
	l, err := ListenCoAPS("127.0.0.1:0", DTLS{PSKs: pe.psks, RequireDevice: true,
		Limits: DTLSLimits{MaxHandshakes: 4, MaxHellos: 64, HandshakeTimeout: 10 * time.Second}}, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.f.ServeCoAPS(ctx, l, CoAPLimits{}) }()
	defer func() { cancel(); <-done }()

	// 200 ClientHellos, each from its own unconnected socket that never
	// reads the HelloVerifyRequest.
	const forged = 200
	hello := clientHello(t, l.Addr().String())
	to, _ := net.ResolveUDPAddr("udp", l.Addr().String())
	for range forged {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if _, err := pc.WriteTo(hello, to); err != nil {
			t.Fatal(err)
		}
	}
	testsupport.WaitFor(t, 5*time.Second, "half the forged hellos to be dropped", func() bool { return l.dropped.Load() >= forged/2 })
	if n := l.hellos.q.len(); n > 64 {
		t.Errorf("%d hellos held, over the bound of 64", n)
	}
	if n := len(l.hs); n != 0 {
		t.Errorf("%d handshake slots taken by peers that never echoed a cookie", n)
	}
	// More forged ClientHellos while the device connects: 100 a second
	// (the probe sent 30), at most 300, each from a new socket.
	stop, flooded := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for ; n < 300; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				return
			}
			pc.WriteTo(hello, to)
			pc.Close()
		}
	}()
	start := time.Now()
	cc := dialPSK(t, l.Addr().String(), "dev-1", pe.key(t, "dev-1"))
	took := time.Since(start)
	close(stop)
	during := <-flooded
	if code, _, err := postCoAPS(cc, ""); err != nil || code != codes.Created {
		t.Fatalf("a device after %d forged ClientHellos and during %d more: %v %v", forged, during, code, err)
	}
	t.Logf("a device got in %v after %d forged ClientHellos, during %d more", took.Round(time.Millisecond), forged, during)
}

// stalledClient starts a DTLS client on its own socket that completes the
// cookie round trip (ClientHello, HelloVerifyRequest, ClientHello with the
// cookie) and sends nothing after; stop ends it.
func stalledClient(t *testing.T, addr string) (stop func()) {
	t.Helper()
	return stalledClientFrom(t, "127.0.0.1", addr)
}

// stalledClientFrom is stalledClient on a socket bound to the address
// from.
func stalledClientFrom(t *testing.T, from, addr string) (stop func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(from, "0"))
	if err != nil {
		t.Fatal(err)
	}
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	c, err := piondtls.Client(&untilEcho{PacketConn: pc}, raddr, &piondtls.Config{ //nolint:staticcheck
		PSK:             func([]byte) ([]byte, error) { return []byte("k"), nil },
		PSKIdentityHint: []byte("dev-1"),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.HandshakeContext(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; c.Close(); pc.Close() }) }
	t.Cleanup(stop)
	return stop
}

// untilEcho passes a socket's writes up to and including its first
// ClientHello that carries a cookie (the echo), and drops every write
// after it: a retransmission of the first ClientHello before the cookie
// arrives passes, so the client echoes exactly once however slow the
// machine.
type untilEcho struct {
	net.PacketConn
	echoed atomic.Bool
}

func (u *untilEcho) WriteTo(b []byte, addr net.Addr) (int, error) {
	if u.echoed.Load() {
		return len(b), nil
	}
	if len(clientHelloCookie(b)) > 0 {
		u.echoed.Store(true)
	}
	return u.PacketConn.WriteTo(b, addr)
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func testCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, client bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.DNSNames = []string{cn}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// clientHello returns the first datagram a DTLS client sends: its
// ClientHello.
func clientHello(t *testing.T, _ string) []byte {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := piondtls.Dial("udp", pc.LocalAddr().(*net.UDPAddr), &piondtls.Config{ //nolint:staticcheck
		PSK:             func([]byte) ([]byte, error) { return []byte("k"), nil },
		PSKIdentityHint: []byte("dev-1"),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	done := make(chan struct{})
	go func() { defer close(done); c.HandshakeContext(ctx) }()
	defer func() { cancel(); <-done; c.Close() }()
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// clientRunner replaces a go-coap client's periodic runner, which sleeps
// in a goroutine forever, with one that ends with the test.
func clientRunner(t *testing.T) options.PeriodicRunnerOpt {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	return options.WithPeriodicRunner(func(tick func(now time.Time) bool) {
		wg.Go(func() { every(ctx, time.Second, tick) })
	})
}

// TestWaitAnswersCoAPS: over CoAP over DTLS a device that asks to wait
// gets 2.05 with its result, that of the session's device.
func TestWaitAnswersCoAPS(t *testing.T) {
	e := startWaiting(t, coapYAML)
	pe := newPSKEnv(t, "dev-1")
	addr := startCoAPS(t, &env{f: e.f}, DTLS{PSKs: pe.psks, RequireDevice: true})
	code, body, err := postCoAPS(dialPSK(t, addr, "dev-1", pe.key(t, "dev-1")), "id=dtls-1&wait=5s")
	if err != nil || code != codes.Content || !strings.Contains(body, `"id":"dtls-1"`) || !strings.Contains(body, `"device":"dev-1"`) {
		t.Errorf("%v %q %v, want 2.05 with dtls-1's result from dev-1", code, body, err)
	}
}
