package funnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// certEnv is a client CA, a server certificate, and a credentials file
// that lists cam-7 (which also has a client certificate).
type certEnv struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
	creds  string
	d      *auth.Devices
}

func newCertEnv(t *testing.T) *certEnv {
	t.Helper()
	ca, caKey := testCA(t)
	ce := &certEnv{pool: x509.NewCertPool(), server: testCert(t, ca, caKey, "localhost", false),
		client: testCert(t, ca, caKey, "cam-7", true), creds: filepath.Join(t.TempDir(), "devices.yaml")}
	ce.pool.AddCert(ca)
	if _, err := auth.AddDevice(ce.creds, "cam-7", time.Now()); err != nil {
		t.Fatal(err)
	}
	var err error
	if ce.d, err = auth.LoadDevices(ce.creds); err != nil {
		t.Fatal(err)
	}
	return ce
}

// TestHTTPSRevokedCertificate: a device's client certificate gets 202
// before ddnn devices revoke and 401 after, on a new connection and on one
// opened before the revocation.
func TestHTTPSRevokedCertificate(t *testing.T) {
	e := setupYAML(t, "", testYAML)
	ce := newCertEnv(t)
	e.f.SetAuth(Auth{Devices: ce.d})
	srv := httptest.NewUnstartedServer(e.f.DeviceHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ce.server}, ClientCAs: ce.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	defer srv.Close()
	newClient := func() *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ce.pool, ServerName: "localhost", Certificates: []tls.Certificate{ce.client}}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	post := func(c *http.Client) (int, string) {
		t.Helper()
		resp, err := c.Post(srv.URL+httpapi.PathIngest, "application/octet-stream", bytes.NewReader(floats(1, 2, 3, 4)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	open := newClient()
	if code, body := post(open); code != http.StatusAccepted {
		t.Fatalf("before revoking: %d %s, want 202", code, body)
	}
	if err := auth.RevokeDevice(ce.creds, "cam-7", time.Now()); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 3*time.Second, "a new connection with the revoked certificate to be refused", func() bool {
		code, _ := post(newClient())
		return code == http.StatusUnauthorized
	})
	if code, body := post(open); code != http.StatusUnauthorized || !bytes.Contains([]byte(body), []byte("revoked")) {
		t.Errorf("the connection opened before the revocation: %d %s, want 401 naming the revocation", code, body)
	}
}

// TestCoAPSRevokedCertificate: over CoAP over DTLS, a device's client
// certificate gets 2.01 before ddnn devices revoke; after it, a new
// handshake with it fails and a session opened before gets 4.01.
func TestCoAPSRevokedCertificate(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	ce := newCertEnv(t)
	e.f.SetAuth(Auth{Devices: ce.d})
	addr := startCoAPS(t, e, DTLS{TLS: &tls.Config{Certificates: []tls.Certificate{ce.server}, ClientCAs: ce.pool}, RequireDevice: true})
	dial := func() *udpclient.Conn {
		return dialDTLS(t, addr, &piondtls.Config{Certificates: []tls.Certificate{ce.client}, RootCAs: ce.pool, ServerName: "localhost"})
	}
	open := dial()
	if code, body, err := postCoAPS(open, ""); err != nil || code != codes.Created {
		t.Fatalf("before revoking: %v %q %v, want 2.01", code, body, err)
	}
	if err := auth.RevokeDevice(ce.creds, "cam-7", time.Now()); err != nil {
		t.Fatal(err)
	}
	// A handshake refused by the server ends with its alert, at once (not
	// at the client's deadline, as when every slot were taken).
	testsupport.WaitFor(t, 3*time.Second, "a handshake with the revoked certificate to be refused", func() bool {
		raddr, _ := net.ResolveUDPAddr("udp", addr)
		conn, err := piondtls.Dial("udp", raddr, &piondtls.Config{Certificates: []tls.Certificate{ce.client}, RootCAs: ce.pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err = conn.HandshakeContext(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the handshake timed out: %v", err)
		}
		return err != nil
	})
	if code, body, err := postCoAPS(open, ""); err != nil || code != codes.Unauthorized || !bytes.Contains([]byte(body), []byte("revoked")) {
		t.Errorf("the session opened before the revocation: %v %q %v, want 4.01 naming the revocation", code, body, err)
	}
}
