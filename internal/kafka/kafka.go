// Package kafka owns ddnn's Kafka plumbing shared by every role: client
// options built from the pipeline's kafka section (with franz-go's kprom
// metrics), topic creation, and the embedded Kafka-protocol broker that
// `ddnn up` and `ddnn broker` run when no brokers are configured.
//
// It must not know about messages or tiers beyond topic names: encoding is
// internal/wire's, consuming and producing policy is the funnel's and the
// connector's.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// ClientOptions are the options every ddnn Kafka client starts from: seed
// brokers, a client id naming the role, and kprom metrics when reg is set.
func ClientOptions(k *pipeline.Kafka, role string, reg prometheus.Registerer) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.SeedBrokers()...),
		kgo.ClientID(k.ClientID + "-" + role),
		kgo.DialTimeout(3 * time.Second),
		kgo.RetryTimeout(k.ProduceTimeout),
	}
	if reg != nil {
		m := kprom.NewMetrics("ddnn_kafka", kprom.Registerer(reg), kprom.WithClientLabel())
		opts = append(opts, kgo.WithHooks(m))
	}
	return opts
}

// EnsureTopics creates the topics that do not exist yet, each with the
// given partitions.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, topics ...string) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for _, t := range resp.Sorted() {
		if t.Err != nil && !errors.Is(t.Err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Topic, t.Err))
		}
	}
	return errors.Join(errs...)
}

// Broker is the embedded Kafka-protocol broker. It keeps everything in
// memory: a restart loses every topic.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// StartBroker listens on addr (host:port; port 0 picks one) and seeds topics.
func StartBroker(addr string, partitions int32, topics []string, log *slog.Logger) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: bad port", addr)
	}
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.ListenFn(func(network, given string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(given)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.DefaultNumPartitions(int(partitions)),
	}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", addr, err)
	}
	b := &Broker{cluster: c, addr: c.ListenAddrs()[0]}
	if log != nil {
		log.Info("embedded broker listening", "addr", b.addr, "topics", len(topics), "partitions", partitions)
	}
	return b, nil
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker.
func (b *Broker) Close() { b.cluster.Close() }

// batchOverhead is a record batch's header: what a batch of one record
// adds to the record.
const batchOverhead = 61

// ProducerOptions are the options of every ddnn producer: acks from all
// in-sync replicas, the pipeline's delivery timeout, and batches that stay
// within kafka.max_record_bytes plus a batch header, so that no record
// ddnn accepts is refused by a broker keeping Kafka's 1 MiB default.
func ProducerOptions(k *pipeline.Kafka) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(k.ProduceTimeout),
		kgo.ProducerBatchMaxBytes(int32(k.MaxRecordBytes + batchOverhead)),
	}
}

// RecordSize is an upper bound of r's encoded size in a record batch: its
// key, value and headers with the largest length prefixes.
func RecordSize(r *kgo.Record) int {
	const (
		varint  = 5  // a length or count
		varlong = 10 // the timestamp delta
	)
	n := varint + 1 + varlong + varint + varint + len(r.Key) + varint + len(r.Value) + varint
	for _, h := range r.Headers {
		n += varint + len(h.Key) + varint + len(h.Value)
	}
	return n
}
