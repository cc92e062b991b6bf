package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// plainKafka is a kafka section without security, its defaults set.
func plainKafka(brokers ...string) pipeline.Kafka {
	return pipeline.Kafka{
		Brokers:        brokers,
		ClientID:       pipeline.DefaultClientID,
		ProduceTimeout: 7 * time.Second,
		MaxRecordBytes: 2000,
	}
}

// fakeKafka is plainKafka of a kfake cluster with a topic "t", closed by
// the test.
func fakeKafka(t *testing.T) pipeline.Kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return plainKafka(c.ListenAddrs()...)
}

// checkOpts compares the client's value of each option with want.
func checkOpts(t *testing.T, cl *kgo.Client, want map[string]any) {
	t.Helper()
	for opt, w := range want {
		if got := cl.OptValue(opt); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %v (%T), want %v (%T)", opt, got, got, w, w)
		}
	}
}

func TestClientOptions(t *testing.T) {
	k := plainKafka("127.0.0.1:1", "127.0.0.1:2")
	opts, err := ClientOptions(&k, "connector-edge", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkOpts(t, testsupport.KafkaClient(t, opts...), map[string]any{
		"SeedBrokers":   []string{"127.0.0.1:1", "127.0.0.1:2"},
		"ClientID":      "ddnn-connector-edge",
		"DialTimeout":   3 * time.Second,
		"RetryTimeout":  7 * time.Second,
		"DialTLSConfig": (*tls.Config)(nil), // no TLS without kafka.tls
	})
}

// TestClientOptionsMetrics: with a registerer the client's own metrics
// are registered under ddnn_kafka_, labelled with its client id.
func TestClientOptionsMetrics(t *testing.T) {
	k := fakeKafka(t)
	reg := prometheus.NewRegistry()
	cl, err := NewClient(&k, "funnel", reg, nil, kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// kprom counts a batch in a hook that may run after the record's
	// promise: gather until the produce counter shows (or 5s passed).
	var mfs []*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if mfs, err = reg.Gather(); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == "ddnn_kafka_produce_bytes_total" }) ||
			time.Now().After(deadline) {
			break
		}
	}
	var names []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "ddnn_kafka_") {
			t.Errorf("metric %s outside ddnn_kafka_", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "client_id" && l.GetValue() != "ddnn-funnel" {
					t.Errorf("%s: client_id %q, want ddnn-funnel", mf.GetName(), l.GetValue())
				}
			}
		}
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "ddnn_kafka_produce_bytes_total") {
		t.Errorf("no ddnn_kafka_produce_bytes_total among %v", names)
	}
}

func TestGroupConsumerOptions(t *testing.T) {
	cl := testsupport.KafkaClient(t, GroupConsumerOptions("p.edge.connector", "p.edge.in")...)
	checkOpts(t, cl, map[string]any{
		"ConsumerGroup":        "p.edge.connector",
		"ConsumeTopics":        map[string]*regexp.Regexp{"p.edge.in": nil},
		"ConsumeResetOffset":   kgo.NewOffset().AtStart(),
		"DisableAutoCommit":    true,
		"BlockRebalanceOnPoll": true,
		"FetchMaxWait":         250 * time.Millisecond,
		"SessionTimeout":       10 * time.Second,
		"HeartbeatInterval":    time.Second,
	})
}

func TestProducerOptions(t *testing.T) {
	k := plainKafka("127.0.0.1:1")
	checkOpts(t, testsupport.KafkaClient(t, ProducerOptions(&k)...), map[string]any{
		"RequiredAcks":          kgo.AllISRAcks(),
		"RecordDeliveryTimeout": 7 * time.Second,
		"ProducerBatchMaxBytes": int32(2000 + batchOverhead),
		// No linger: kgo's default of 10 ms is a wait on every hop.
		"ProducerLinger": time.Duration(0),
	})
}

// TestProducerOptionsFitRecordSize: a record whose RecordSize is exactly
// kafka.max_record_bytes is produced, one a byte larger is refused by the
// client before it is sent.
func TestProducerOptionsFitRecordSize(t *testing.T) {
	k := fakeKafka(t)
	cl, err := NewClient(&k, "test", nil, nil, ProducerOptions(&k)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: "t", Key: []byte("key"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
	rec.Value = make([]byte, k.MaxRecordBytes-RecordSize(rec))
	if n := RecordSize(rec); n != k.MaxRecordBytes {
		t.Fatalf("record size %d, want %d", n, k.MaxRecordBytes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("record of max_record_bytes: %v", err)
	}
	// RecordSize is an upper bound: the client only refuses a record
	// larger than the batch limit itself.
	big := &kgo.Record{Topic: "t", Value: make([]byte, k.MaxRecordBytes+batchOverhead)}
	if err := cl.ProduceSync(ctx, big).FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("record over the batch limit: %v, want MESSAGE_TOO_LARGE", err)
	}
}

func TestRecordSize(t *testing.T) {
	empty := RecordSize(&kgo.Record{})
	for _, tc := range []struct {
		name string
		rec  *kgo.Record
		want int
	}{
		{"key and value", &kgo.Record{Key: []byte("abc"), Value: []byte("12345")}, empty + 8},
		{"header", &kgo.Record{Headers: []kgo.RecordHeader{{Key: "k", Value: []byte("vv")}}}, empty + 5 + 1 + 5 + 2},
		{"topic is not in the record", &kgo.Record{Topic: "a-long-topic-name"}, empty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RecordSize(tc.rec); got != tc.want {
				t.Errorf("RecordSize = %d, want %d", got, tc.want)
			}
		})
	}
}
