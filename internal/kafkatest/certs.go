package kafkatest

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/certs"
)

// Certs are PEM files of a throwaway CA and a server certificate it
// signed, made at test time so no key is ever committed.
type Certs struct {
	CA        string // the CA's certificate
	Cert, Key string // the server's certificate (for the hosts) and key
}

// WriteCerts makes a CA and a server certificate for hosts (IP addresses
// or DNS names; default 127.0.0.1 and localhost) with internal/certs, and
// writes them into dir as ca.pem (and ca-key.pem), server.pem and
// server.key, the names the Kafka clusters' keystores and the tests use.
// The server certificate also authenticates as a client: a Kafka node
// presents it to the others on the controller listener.
func WriteCerts(dir string, hosts ...string) (Certs, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	f, err := certs.MakeWith(dir, hosts, nil, time.Now(), certs.Options{ServerKey: "server.key", ServerAsClient: true})
	if err != nil {
		return Certs{}, err
	}
	return Certs{CA: f.CA, Cert: f.Cert, Key: f.Key}, nil
}

// principal is the Kafka principal of the certificate in the PEM file
// path: User: and its subject's distinguished name (RFC 2253, as Kafka's
// default principal builder writes it).
func principal(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s holds no certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "User:" + c.Subject.String(), nil
}
