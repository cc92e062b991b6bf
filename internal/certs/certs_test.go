package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Make writes a CA, a server certificate for the hosts and a client
// certificate per device, all verifying against the CA for their use;
// keys are 0600, and nothing is overwritten.
func TestMake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	f, err := Make(dir, []string{"127.0.0.1", "localhost"}, []string{"cam-7"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pemCA, _ := os.ReadFile(f.CA)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		t.Fatal("no CA certificate")
	}
	leaf := func(cert, key string) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", key, st.Mode().Perm())
		}
		c, _ := x509.ParseCertificate(pair.Certificate[0])
		return c
	}
	srv := leaf(f.Cert, f.Key)
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate for 127.0.0.1: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
		t.Errorf("server certificate for localhost: %v", err)
	}
	cl := leaf(f.Clients["cam-7"][0], f.Clients["cam-7"][1])
	if _, err := cl.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || cl.Subject.CommonName != "cam-7" {
		t.Errorf("client certificate %q: %v", cl.Subject.CommonName, err)
	}
	b, _ := os.ReadFile(f.CAKey)
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Error("the CA key is not a PEM private key")
	}
	if _, err := Make(dir, []string{"127.0.0.1"}, nil, time.Now()); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a second Make over the first: %v", err)
	}
	if _, err := Make(t.TempDir(), nil, nil, time.Now()); err == nil {
		t.Error("no host accepted")
	}
}

// MakeWith names the server key as asked and lets the server certificate
// authenticate as a client when asked; Make does neither.
func TestMakeWith(t *testing.T) {
	serverUses := func(t *testing.T, f *Files) []x509.ExtKeyUsage {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c.ExtKeyUsage
	}
	f, err := MakeWith(t.TempDir(), []string{"127.0.0.1"}, nil, time.Now(), Options{ServerKey: "server.key", ServerAsClient: true})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(f.Key) != "server.key" {
		t.Errorf("server key %s, want server.key", f.Key)
	}
	if got := serverUses(t, f); !slices.Contains(got, x509.ExtKeyUsageClientAuth) || !slices.Contains(got, x509.ExtKeyUsageServerAuth) {
		t.Errorf("server certificate uses %v, want server and client authentication", got)
	}
	f, err = Make(t.TempDir(), []string{"127.0.0.1"}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(f.Key) != "server-key.pem" {
		t.Errorf("server key %s, want server-key.pem", f.Key)
	}
	if got := serverUses(t, f); slices.Contains(got, x509.ExtKeyUsageClientAuth) {
		t.Errorf("server certificate uses %v, want server authentication only", got)
	}
}
