package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafkatest"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// secured writes a pipeline whose embedded broker requires TLS,
// SCRAM-SHA-512 and ACLs, with a pipeline user "app" and a device user
// "cam", their passwords in files next to the YAML, and loads it.
func secured(t *testing.T, dataDir bool) (*pipeline.Pipeline, string) {
	t.Helper()
	dir := t.TempDir()
	certs, err := kafkatest.WriteCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, pw := range map[string]string{"app.pw": "app-secret-1\n", "cam.pw": "cam-secret-1"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	y := fmt.Sprintf(`name: sec
input: {dtype: uint8, shape: [2]}
classes: [a, b]
tiers:
  - {name: edge, model: m.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, model: m.onnx, exit: {output: o}}
kafka:
  embedded_listen: 127.0.0.1:0
  partitions: 1
  tls: {enabled: true, root_cas_file: ca.pem}
  sasl: [{mechanism: SCRAM-SHA-512, username: app, password_file: app.pw}]
  embedded_tls: {cert_file: %s, key_file: server.key}
  embedded_users:
    - {username: app, mechanism: SCRAM-SHA-512, password_file: app.pw}
    - {username: cam, mechanism: SCRAM-SHA-512, password_file: cam.pw, role: device}
  embedded_acls: true
`, filepath.Base(certs.Cert))
	if dataDir {
		y += "  embedded_data_dir: data\n"
	}
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func startSecured(t *testing.T, p *pipeline.Pipeline, ephemeral bool) *Broker {
	t.Helper()
	b, err := StartSiteBroker(p, &p.Sites()[0], "", ephemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// client is a client of b as k says, with a short retry budget so a
// refusal shows quickly.
func client(t *testing.T, k pipeline.Kafka, b *Broker, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	k.Brokers = []string{b.Addr()}
	cl, err := NewClient(&k, "test", nil, nil, append([]kgo.Opt{kgo.RetryTimeout(2 * time.Second), kgo.ProducerLinger(0)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produceOne(cl *kgo.Client, topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte{1, 2}}).FirstErr()
}

// TestSecuredEmbeddedBroker: the embedded broker refuses plaintext,
// TLS without SASL and a wrong password; the pipeline user may use the
// pipeline's topics; a device user may write to the first tier's topic
// and nothing else.
func TestSecuredEmbeddedBroker(t *testing.T) {
	p, dir := secured(t, false)
	b := startSecured(t, p, true)
	defer b.Close()
	in, results := p.InputTopic("edge"), p.ResultsTopic()

	app := client(t, p.Kafka, b)
	if err := produceOne(app, in); err != nil {
		t.Fatalf("pipeline user produce to %s: %v", in, err)
	}
	if err := produceOne(app, results); err != nil {
		t.Fatalf("pipeline user produce to %s: %v", results, err)
	}

	refused := map[string]pipeline.Kafka{}
	plain := p.Kafka
	plain.TLS, plain.SASL = nil, nil
	refused["plaintext"] = plain
	noSASL := p.Kafka
	noSASL.SASL = nil
	refused["tls without sasl"] = noSASL
	wrong := p.Kafka
	os.WriteFile(filepath.Join(dir, "wrong.pw"), []byte("guess"), 0o600)
	wrong.SASL = []pipeline.KafkaSASL{{Mechanism: pipeline.SASLScramSHA512, Username: "app", PasswordFile: filepath.Join(dir, "wrong.pw")}}
	refused["wrong password"] = wrong
	t.Run("refused", func(t *testing.T) {
		for name, k := range refused {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				err := produceOne(client(t, k, b), in)
				if err == nil {
					t.Fatal("produced")
				}
				t.Logf("refused: %v", err)
			})
		}
	})

	dev := p.Kafka
	dev.SASL = []pipeline.KafkaSASL{{Mechanism: pipeline.SASLScramSHA512, Username: "cam", PasswordFile: filepath.Join(dir, "cam.pw")}}
	cam := client(t, dev, b)
	if err := produceOne(cam, in); err != nil {
		t.Fatalf("device produce to %s: %v", in, err)
	}
	if err := produceOne(cam, results); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("device produce to %s: %v, want TOPIC_AUTHORIZATION_FAILED", results, err)
	}
	reader := client(t, dev, b, kgo.ConsumeTopics(in), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	fs := reader.PollFetches(ctx)
	if len(fs.Records()) > 0 {
		t.Errorf("device read %d records of %s", len(fs.Records()), in)
	}
}

// TestSecuredBrokerRestart: with a data directory, users and ACLs come
// from the YAML at each start: a changed password replaces the old one
// and the ACLs hold after the restore. The client reads its password
// file at each authentication.
func TestSecuredBrokerRestart(t *testing.T) {
	p, dir := secured(t, true)
	b := startSecured(t, p, false)
	in := p.InputTopic("edge")
	if err := produceOne(client(t, p.Kafka, b), in); err != nil {
		t.Fatal(err)
	}
	b.Close()

	old := p.Kafka
	os.WriteFile(filepath.Join(dir, "old.pw"), []byte("app-secret-1"), 0o600)
	old.SASL = []pipeline.KafkaSASL{{Mechanism: pipeline.SASLScramSHA512, Username: "app", PasswordFile: filepath.Join(dir, "old.pw")}}
	if err := os.WriteFile(filepath.Join(dir, "app.pw"), []byte("app-secret-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	b = startSecured(t, p, false)
	defer b.Close()
	if err := produceOne(client(t, p.Kafka, b), in); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := produceOne(client(t, old, b), in); err == nil {
		t.Error("the old password still works after the restart")
	}
	dev := p.Kafka
	dev.SASL = []pipeline.KafkaSASL{{Mechanism: pipeline.SASLScramSHA512, Username: "cam", PasswordFile: filepath.Join(dir, "cam.pw")}}
	if err := produceOne(client(t, dev, b), p.ResultsTopic()); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("device produce to results after restore: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}

// TestClientOptionsErrors: unreadable files and variables are reported
// with their field, every one at once, and never with a secret.
func TestClientOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("secret-ish junk"), 0o600)
	t.Setenv("DDNN_TEST_UNSET", "")
	k := &pipeline.Kafka{
		Brokers: []string{"127.0.0.1:1"},
		TLS: &pipeline.KafkaTLS{Enabled: true, RootCAsFile: notPEM,
			ClientCerts: []pipeline.KafkaClientCert{{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}}},
		SASL: []pipeline.KafkaSASL{
			{Mechanism: pipeline.SASLPlain, Username: "u", PasswordFile: filepath.Join(dir, "missing")},
			{Mechanism: pipeline.SASLScramSHA256, Username: "u", PasswordEnv: "DDNN_TEST_UNSET"},
			{Mechanism: pipeline.SASLScramSHA512, Username: "u", PasswordFile: empty},
			{Mechanism: pipeline.SASLOAuthBearer, TokenFile: filepath.Join(dir, "token")},
		},
	}
	_, err := ClientOptions(k, "test", nil, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"kafka.tls.root_cas_file: " + notPEM + " holds no PEM certificate",
		"kafka.tls.client_certs[0]: open " + filepath.Join(dir, "c.pem"),
		"kafka.sasl[0]: password_file: open " + filepath.Join(dir, "missing"),
		"kafka.sasl[1]: password_env: environment variable DDNN_TEST_UNSET is not set or empty",
		"kafka.sasl[2]: password_file: " + empty + " is empty",
		"kafka.sasl[3]: token_file: open " + filepath.Join(dir, "token"),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "secret-ish") {
		t.Errorf("error shows file contents: %v", err)
	}
}

// TestSkipCertVerifyWarns: a client that skips verification says so at
// every start, loudly.
func TestSkipCertVerifyWarns(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	k := &pipeline.Kafka{Brokers: []string{"127.0.0.1:1"}, TLS: &pipeline.KafkaTLS{Enabled: true, SkipCertVerify: true}}
	for range 2 {
		if _, err := ClientOptions(k, "funnel", nil, log); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "level=WARN msg=\"KAFKA TLS CERTIFICATES ARE NOT VERIFIED"); n != 2 {
		t.Errorf("%d warnings for 2 starts:\n%s", n, buf.String())
	}
}

// TestOAuthTokenReread: the OAUTHBEARER token is read from its file at
// each authentication, so a rotated token is used by the next connection.
func TestOAuthTokenReread(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("tok-1\n"), 0o600)
	m, err := mechanism(pipeline.KafkaSASL{Mechanism: pipeline.SASLOAuthBearer, TokenFile: file})
	if err != nil {
		t.Fatal(err)
	}
	first := func() string {
		_, msg, err := m.Authenticate(context.Background(), "127.0.0.1:9093")
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	if got := first(); !strings.Contains(got, "auth=Bearer tok-1\x01") {
		t.Errorf("first message %q", got)
	}
	os.WriteFile(file, []byte("tok-2"), 0o600)
	if got := first(); !strings.Contains(got, "auth=Bearer tok-2\x01") {
		t.Errorf("after rotation %q", got)
	}
}
