// Package certs makes a development certificate authority and
// certificates signed by it (`ddnn certs`): a server certificate for the
// funnel's HTTPS device listener and client certificates whose common
// name is a device id. They are for trying the secure set-up on one
// machine, not for production: an operator's own CA should sign those.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity of what Make writes.
const Validity = 365 * 24 * time.Hour

// Files are what Make wrote, by role.
type Files struct {
	CA, CAKey, Cert, Key string
	// Clients maps a device id to its certificate and key files.
	Clients map[string][2]string
}

// Make writes into dir (created if missing; existing files are kept, not
// overwritten) ca.pem and ca-key.pem, server.pem and server-key.pem for
// hosts (IP addresses or DNS names), and <id>.pem and <id>-key.pem for
// each device id. Keys are ECDSA P-256, written with mode 0600.
func Make(dir string, hosts, devices []string, now time.Time) (*Files, error) {
	return MakeWith(dir, hosts, devices, now, Options{})
}

// Options adjust what MakeWith writes for a consumer of the files other
// than the funnel.
type Options struct {
	// ServerKey is the file name of the server's key in dir (default
	// server-key.pem).
	ServerKey string
	// ServerAsClient lets the server certificate authenticate as a client
	// too, for a server that dials its peers with it (a Kafka node on its
	// controller listener).
	ServerAsClient bool
}

// MakeWith is Make with o.
func MakeWith(dir string, hosts, devices []string, now time.Time, o Options) (*Files, error) {
	if len(hosts) == 0 {
		return nil, errors.New("certs: at least one host for the server certificate")
	}
	if o.ServerKey == "" {
		o.ServerKey = "server-key.pem"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f := &Files{
		CA: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca-key.pem"),
		Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, o.ServerKey),
		Clients: map[string][2]string{},
	}
	for _, p := range []string{f.CA, f.CAKey, f.Cert, f.Key} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("certs: %s exists: choose another directory, or remove it", p)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := template("ddnn development CA", now)
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := write(f.CA, f.CAKey, caDER, caKey); err != nil {
		return nil, err
	}

	srv := template(hosts[0], now)
	srv.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if o.ServerAsClient {
		srv.ExtKeyUsage = append(srv.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	if err := sign(f.Cert, f.Key, srv, ca, caKey); err != nil {
		return nil, err
	}
	for _, id := range devices {
		c := template(id, now)
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		cert, key := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		if err := sign(cert, key, c, ca, caKey); err != nil {
			return nil, err
		}
		f.Clients[id] = [2]string{cert, key}
	}
	return f, nil
}

func template(cn string, now time.Time) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"ddnn development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func sign(certPath, keyPath string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return write(certPath, keyPath, der, key)
}

func write(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
}
