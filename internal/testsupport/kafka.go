package testsupport

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// KafkaCluster is a one-broker kfake cluster on loopback with topics of
// partitions partitions each, closed when the test ends.
func KafkaCluster(tb testing.TB, partitions int32, topics ...string) *kfake.Cluster {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// KafkaClient is a client built from opts, closed when the test ends; it
// dials nothing until used.
func KafkaClient(tb testing.TB, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// SiteClusters gives each site p declares a KafkaCluster of its own with
// the topics that live on it (pipeline.TopicsOn) and makes it the site's
// kafka.brokers. It returns each cluster's address by site name.
func SiteClusters(tb testing.TB, p *pipeline.Pipeline) map[string]string {
	tb.Helper()
	addrs := map[string]string{}
	for i := range p.SiteList {
		s := &p.SiteList[i]
		c := KafkaCluster(tb, s.Kafka.Partitions, p.TopicsOn(s.Name)...)
		s.Kafka.Brokers = c.ListenAddrs()
		addrs[s.Name] = c.ListenAddrs()[0]
	}
	return addrs
}

// Fill produces n one-byte records to each topic on the broker at addr,
// alternating partitions 0 and 1, and returns an admin client of it for
// reading offsets and committing, closed when the test ends.
func Fill(tb testing.TB, addr string, n int, topics ...string) *kadm.Client {
	tb.Helper()
	cl := KafkaClient(tb, kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for _, topic := range topics {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte("x")})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
	return kadm.NewClient(cl)
}
