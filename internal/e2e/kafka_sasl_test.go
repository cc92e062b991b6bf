package e2e

// The Apache Kafka suite with security: the same 3-node KRaft cluster as
// TestApacheKafka, but its client listener is SASL_SSL (SCRAM-SHA-512 over
// TLS, PEM stores) and Kafka's StandardAuthorizer checks ACLs.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/kafkatest"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// saslCluster is a secured cluster and its pipeline user's credentials.
type saslCluster struct {
	*kafkatest.Cluster
	user, password, passwordFile string
	// stranger is a SCRAM user without ACLs; strangerFile its password.
	strangerFile string
	dir          string
}

// TestApacheKafkaSASL runs ddnn's Kafka clients and the whole pipeline
// against Apache Kafka requiring SASL_SSL with SCRAM-SHA-512 and ACLs:
// one 3-node cluster for every subtest (the brokers talk to each other
// over SASL_SSL too). The pipeline user "ddnn" has ALL on the prefixed
// topics and groups of its pipelines and nothing else; "stranger" can
// authenticate but has no ACL. It skips, saying why, without Java 17+ or
// the jars.
func TestApacheKafkaSASL(t *testing.T) {
	dir := t.TempDir()
	secret := func() string {
		b := make([]byte, 12)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	sc := &saslCluster{user: "ddnn", password: "ddnn-" + secret(), dir: dir,
		passwordFile: filepath.Join(dir, "ddnn.pw"), strangerFile: filepath.Join(dir, "stranger.pw")}
	stranger := "stranger-" + secret()
	for f, pw := range map[string]string{sc.passwordFile: sc.password + "\n", sc.strangerFile: stranger} {
		if err := os.WriteFile(f, []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sc.Cluster = kafkatest.New(t, kafkatest.Config{Root: root(t), Security: &kafkatest.Security{
		Users: map[string]string{sc.user: sc.password, "stranger": stranger},
		ACLs:  true,
	}})
	t.Run("Clients", func(t *testing.T) { testSASLClients(t, sc) })
	t.Run("MatchesEval", func(t *testing.T) { testSASLMatchesEval(t, sc) })
}

// saslPipeline writes the shipped pipeline against the secured cluster
// (replication factor 3, min.insync.replicas 2) with kafka.tls and
// kafka.sasl as the pipeline user, password from a file, and grants that
// user ALL on <name>.* topics and groups.
func saslPipeline(t *testing.T, sc *saslCluster, name string) testPipeline {
	t.Helper()
	tp := kafkaPipeline(t, sc.Cluster, name)
	b, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	sec := fmt.Sprintf("kafka:\n  tls: {enabled: true, root_cas_file: %s}\n  sasl: [{mechanism: SCRAM-SHA-512, username: %s, password_file: %s}]\n",
		sc.Certs().CA, sc.user, sc.passwordFile)
	if err := os.WriteFile(tp.file, []byte(strings.Replace(string(b), "kafka:\n", sec, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sc.AllowPrefix(ctx, sc.user, name+"."); err != nil {
		t.Fatal(err)
	}
	return tp
}

// saslClient is a client built by internal/kafka.ClientOptions from k,
// with a short retry budget so a refusal shows quickly.
func saslClient(t *testing.T, k pipeline.Kafka, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts, err := kafka.ClientOptions(&k, "e2e", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(append(opts, kgo.RetryTimeout(3*time.Second), kgo.ProducerLinger(0)), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// testSASLClients: a franz-go client from the pipeline YAML's kafka.tls
// and kafka.sasl (internal/kafka.ClientOptions) creates a topic, produces
// and consumes in a group; without TLS, without SASL, with a wrong
// password or an unknown user it is refused; an authenticated user
// without ACLs, or the pipeline user outside its prefix, is not
// authorised.
func testSASLClients(t *testing.T, sc *saslCluster) {
	tp := saslPipeline(t, sc, "aksaslcl")
	k := loadPipeline(t, tp.file).Kafka
	topic, group := tp.name+".check", tp.name+".check-group"

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := saslClient(t, k)
	adm := kadm.NewClient(app)
	if _, err := adm.CreateTopic(ctx, 2, 3, nil, topic); err != nil {
		t.Fatalf("pipeline user creates %s: %v", topic, err)
	}
	const n = 20
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	t0 := time.Now()
	if err := app.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("pipeline user produces to %s: %v", topic, err)
	}
	reader := saslClient(t, k, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < n && ctx.Err() == nil {
		fs := reader.PollFetches(ctx)
		if err := fs.Err0(); err != nil && ctx.Err() == nil {
			t.Fatalf("pipeline user consumes %s in group %s: %v", topic, group, err)
		}
		got += len(fs.Records())
	}
	if got != n {
		t.Fatalf("consumed %d of %d records", got, n)
	}
	if err := reader.CommitUncommittedOffsets(ctx); err != nil {
		t.Errorf("pipeline user commits in group %s: %v", group, err)
	}
	t.Logf("SASL_SSL/SCRAM-SHA-512 as %s: created %s (RF 3), produced and consumed %d records in group %s in %s",
		sc.user, topic, n, group, time.Since(t0).Round(time.Millisecond))
	// Kafka's own tool, with the admin's --command-config (SASL_SSL,
	// SCRAM-SHA-512, PEM truststore), sees the group's commits.
	out, err := sc.Tool(ctx, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--describe", "--group", group)
	if err != nil {
		t.Fatal(err)
	}
	if lag, parts := parseGroupDescribe(t, out, topic); lag != 0 || len(parts) != 2 {
		t.Errorf("kafka-consumer-groups over SASL_SSL: lag %d on %v, want 0 on 2 partitions:\n%s", lag, parts, out)
	}

	// A refused connection shows in a metadata request (a produce would
	// keep the record buffered and retry until its context ends).
	metadata := func(cl *kgo.Client, topic string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		_, err := req.RequestWith(ctx, cl)
		return err
	}
	produce := func(cl *kgo.Client, topic string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	}
	withSASL := func(user, file string) pipeline.Kafka {
		c := k
		c.SASL = []pipeline.KafkaSASL{{Mechanism: pipeline.SASLScramSHA512, Username: user, PasswordFile: file}}
		return c
	}
	wrongPW := filepath.Join(sc.dir, "wrong.pw")
	if err := os.WriteFile(wrongPW, []byte("guess"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := k
	plain.TLS, plain.SASL = nil, nil
	noSASL := k
	noSASL.SASL = nil
	for _, c := range []struct {
		name string
		k    pipeline.Kafka
		try  func(*kgo.Client, string) error
		want error  // the error, when it has a kerr code
		says string // else what its message names
	}{
		{"plaintext", plain, metadata, nil, "tls"},
		{"TLS without SASL", noSASL, metadata, nil, "SASL"},
		{"wrong password", withSASL(sc.user, wrongPW), metadata, kerr.SaslAuthenticationFailed, ""},
		{"unknown user", withSASL("nobody", sc.passwordFile), metadata, kerr.SaslAuthenticationFailed, ""},
		{"stranger (no ACLs)", withSASL("stranger", sc.strangerFile), produce, kerr.TopicAuthorizationFailed, ""},
	} {
		t0 := time.Now()
		err := c.try(saslClient(t, c.k), topic)
		switch {
		case err == nil:
			t.Errorf("%s: produced to %s", c.name, topic)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		case !strings.Contains(err.Error(), c.says):
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.says)
		default:
			t.Logf("%s: refused in %s: %v", c.name, time.Since(t0).Round(time.Millisecond), err)
		}
	}
	// The pipeline user outside its prefix.
	other := "aksaslother.check"
	res, err := adm.CreateTopic(ctx, 1, 3, nil, other)
	if err == nil {
		err = res.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("pipeline user creates %s outside its prefix: %v, want TOPIC_AUTHORIZATION_FAILED", other, err)
	} else {
		t.Logf("pipeline user outside its prefix: %v", err)
	}
}

// testSASLMatchesEval is testKafkaMatchesEval over SASL_SSL: `ddnn up`
// with kafka.brokers = the secured cluster, kafka.tls and kafka.sasl
// (password_file); the 2,000 test images each get exactly one result, and
// exits and accuracy equal `ddnn models eval`. The password is on no
// command line and not in up's output.
func testSASLMatchesEval(t *testing.T, sc *saslCluster) {
	tp := saslPipeline(t, sc, "aksasl")
	upProc := up(t, tp)
	p := loadPipeline(t, tp.file)
	reader, err := kafka.ClientOptions(&p.Kafka, "e2e", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sendTestSet(t, tp.funnel, tp.broker, tp.name+".results", tp.file, " through Apache Kafka over SASL_SSL (SCRAM-SHA-512, ACLs, RF 3)", reader...)

	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), sc.password) {
			t.Errorf("%s holds the pipeline user's password", f)
		}
	}
	if strings.Contains(upProc.out.String(), sc.password) {
		t.Error("ddnn up's output holds the pipeline user's password")
	}
}
