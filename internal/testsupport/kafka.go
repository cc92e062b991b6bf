package testsupport

import (
	"testing"

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
