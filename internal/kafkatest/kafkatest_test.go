package kafkatest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestVersionMatchesScript keeps Version and the script that fetches the
// jars in step.
func TestVersionMatchesScript(t *testing.T) {
	b, err := os.ReadFile("../../scripts/kafka-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nVERSION="+Version+"\n") {
		t.Errorf("scripts/kafka-deps.sh does not fetch Kafka %s", Version)
	}
	if _, err := os.Stat("../../scripts/kafka-" + Version + ".sha256"); err != nil {
		t.Errorf("no sums for Kafka %s: %v", Version, err)
	}
}

func TestUnavailableSaysWhy(t *testing.T) {
	t.Setenv("KAFKA_LIBS", t.TempDir())
	_, err := Libs("")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "make kafka-deps") {
		t.Errorf("Libs on an empty directory: %v", err)
	}
	t.Setenv("KAFKA_LIBS", "")
	_, err = findJava("/nonexistent/java")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/java not found") {
		t.Errorf("findJava without java: %v", err)
	}
}

func TestProps(t *testing.T) {
	c := &Cluster{cfg: Config{BrokerProps: map[string]string{"num.io.threads": "4"}}}
	for i := range 3 {
		c.nodes = append(c.nodes, &Node{ID: i + 1, Addr: "127.0.0.1:1" + string(rune('0'+i)), ctrlAddr: "127.0.0.1:2" + string(rune('0'+i)), dir: "/d"})
	}
	checkProps(t, c.props(c.nodes[1]), map[string]string{
		"node.id":                          "2",
		"process.roles":                    "broker,controller",
		"controller.quorum.voters":         "1@127.0.0.1:20,2@127.0.0.1:21,3@127.0.0.1:22",
		"listeners":                        "PLAINTEXT://127.0.0.1:11,CONTROLLER://127.0.0.1:21",
		"num.io.threads":                   "4",
		"offsets.topic.replication.factor": "3",
	})
}

// checkProps reports each property of want that props lacks or sets
// otherwise.
func checkProps(t *testing.T, props, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if props[k] != v {
			t.Errorf("%s = %q, want %q", k, props[k], v)
		}
	}
}

// TestRetry: retry ends at the first nil, at once on a stopRetry with its
// error, and when ctx ends with what it awaited and the last error.
func TestRetry(t *testing.T) {
	errNotYet, errGone := errors.New("not yet"), errors.New("node gone")
	for _, tc := range []struct {
		name    string
		results []error // check's answers in turn, the last one repeated
		calls   int
		want    string // "" for success
	}{
		{"ready at once", []error{nil}, 1, ""},
		{"ready on the third try", []error{errNotYet, errNotYet, nil}, 3, ""},
		{"stopped", []error{errNotYet, stopRetry{errGone}}, 2, "node gone"},
		{"never ready", []error{errNotYet}, -1, "cluster not ready: context deadline exceeded (last: not yet)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			calls := 0
			err := retry(ctx, time.Millisecond, "cluster not ready", func() error {
				calls++
				return tc.results[min(calls, len(tc.results))-1]
			})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
				t.Errorf("retry = %v, want %q", err, tc.want)
			}
			if tc.calls >= 0 && calls != tc.calls {
				t.Errorf("check called %d times, want %d", calls, tc.calls)
			}
		})
	}
}

// TestSecurityProps: with Security the client listener is SASL_SSL
// (SCRAM-SHA-512, also between brokers), the controller listener SSL with
// client certificates, the stores PEM; ACLs add the authorizer and its
// super users; the users are created at format time.
func TestSecurityProps(t *testing.T) {
	c := &Cluster{cfg: Config{Security: &Security{Users: map[string]string{"ddnn": "pw1"}, ACLs: true}}, dir: "/d", adminPassword: "adminpw",
		certs: Certs{CA: "/d/tls/ca.pem"}, nodePrincipal: "User:CN=127.0.0.1,O=ddnn development"}
	c.nodes = append(c.nodes, &Node{ID: 1, Addr: "127.0.0.1:11", ctrlAddr: "127.0.0.1:21", dir: "/d/node-1"})
	checkProps(t, c.props(c.nodes[0]), map[string]string{
		"listeners":                                             "SASL_SSL://127.0.0.1:11,CONTROLLER://127.0.0.1:21",
		"advertised.listeners":                                  "SASL_SSL://127.0.0.1:11",
		"listener.security.protocol.map":                        "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
		"inter.broker.listener.name":                            "SASL_SSL",
		"sasl.mechanism.inter.broker.protocol":                  "SCRAM-SHA-512",
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": `org.apache.kafka.common.security.scram.ScramLoginModule required username="kafkatest-admin" password="adminpw";`,
		"ssl.keystore.type":                                     "PEM",
		"ssl.keystore.location":                                 "/d/tls/keystore.pem",
		"ssl.truststore.type":                                   "PEM",
		"ssl.truststore.location":                               "/d/tls/ca.pem",
		"listener.name.controller.ssl.client.auth":              "required",
		"authorizer.class.name":                                 "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users":                                           "User:kafkatest-admin;User:CN=127.0.0.1,O=ddnn development",
	})
	want := []string{"--add-scram", "SCRAM-SHA-512=[name=ddnn,password=pw1]", "--add-scram", "SCRAM-SHA-512=[name=kafkatest-admin,password=adminpw]"}
	if got := c.scramArgs(); !slices.Equal(got, want) {
		t.Errorf("scramArgs = %q, want %q", got, want)
	}
}

// TestWriteCerts: the files have the names the keystore and the tests
// use, the server certificate verifies against the CA for 127.0.0.1 as a
// server and as a client (the controller listener), and its principal is
// the one Kafka derives from its subject.
func TestWriteCerts(t *testing.T) {
	dir := t.TempDir()
	c, err := WriteCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Certs{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key")}); c != want {
		t.Fatalf("WriteCerts = %+v, want %+v", c, want)
	}
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(c.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate")
	}
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			t.Errorf("server certificate for use %v: %v", use, err)
		}
	}
	got, err := principal(c.Cert)
	if err != nil || got != "User:CN=127.0.0.1,O=ddnn development" {
		t.Errorf("principal = %q, %v", got, err)
	}
}

// TestFormatArgsKeepADashedID: a cluster id that starts with '-' stays
// the value of its flag (it was read as a flag, failing the format).
func TestFormatArgsKeepADashedID(t *testing.T) {
	args := formatArgs("-xY3_ab", "/d/server.properties")
	if !slices.Contains(args, "--cluster-id=-xY3_ab") || slices.Contains(args, "-xY3_ab") {
		t.Errorf("format args %q: the id is not joined to --cluster-id", args)
	}
}
