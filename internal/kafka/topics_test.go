package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// fakeCluster is a 3-broker kfake cluster with a client and an admin
// client, all closed when t ends.
func fakeCluster(t *testing.T) (*kgo.Client, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEnsureTopicsCreates(t *testing.T) {
	cl, adm := fakeCluster(t)
	ctx := ctxT(t)
	k := &pipeline.Kafka{Brokers: []string{"x:9092"}, Partitions: 4, ReplicationFactor: 3,
		TopicConfig: map[string]string{"min.insync.replicas": "2", "retention.ms": "3600000"}}
	if err := EnsureTopics(ctx, cl, k, "p.edge.in", "p.results"); err != nil {
		t.Fatal(err)
	}
	md, err := adm.ListTopics(ctx, "p.edge.in", "p.results")
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range md.Sorted() {
		if len(td.Partitions) != 4 || td.Partitions.NumReplicas() != 3 {
			t.Errorf("%s: %d partitions, %d replicas; want 4 and 3", td.Topic, len(td.Partitions), td.Partitions.NumReplicas())
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "p.edge.in")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rcs[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["min.insync.replicas"] != "2" || got["retention.ms"] != "3600000" {
		t.Errorf("configs %v", got)
	}
	// Again: the topics exist and match.
	if err := EnsureTopics(ctx, cl, k, "p.edge.in", "p.results"); err != nil {
		t.Errorf("second run: %v", err)
	}
}

// TestEnsureTopicsReportsMismatches checks that an existing topic that
// differs from the pipeline is reported with what it has and what is
// wanted, every difference at once, and that what is acceptable (more
// partitions, the cluster's default replication) is not.
func TestEnsureTopicsReportsMismatches(t *testing.T) {
	cl, adm := fakeCluster(t)
	ctx := ctxT(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"min.insync.replicas": kadm.StringPtr("1")}, "p.fog.in"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 8, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, "p.cloud.in"); err != nil {
		t.Fatal(err)
	}
	k := &pipeline.Kafka{Brokers: []string{"x:9092"}, Partitions: 4, ReplicationFactor: 3,
		TopicConfig: map[string]string{"min.insync.replicas": "2"}}
	err := EnsureTopics(ctx, cl, k, "p.fog.in", "p.cloud.in", "p.new")
	if err == nil {
		t.Fatal("mismatched topic accepted")
	}
	for _, want := range []string{
		`topic "p.fog.in": has 2 partitions, want at least 4 (kafka.partitions)`,
		`topic "p.fog.in": has replication factor 1 (partition 0), want 3 (kafka.replication_factor)`,
		`topic "p.fog.in": has min.insync.replicas=1, want 2 (kafka.topic_config)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "p.cloud.in") || strings.Contains(err.Error(), "p.new") {
		t.Errorf("matching topics reported:\n%v", err)
	}
	if _, err := adm.ListTopics(ctx, "p.new"); err != nil {
		t.Errorf("the missing topic was not created: %v", err)
	}

	// With the cluster's default replication factor only partitions and
	// configs are checked.
	k.ReplicationFactor = -1
	k.TopicConfig = nil
	k.Partitions = 2
	if err := EnsureTopics(ctx, cl, k, "p.fog.in"); err != nil {
		t.Errorf("default replication: %v", err)
	}
}

func TestEnsureTopicsCreateError(t *testing.T) {
	cl, _ := fakeCluster(t)
	k := &pipeline.Kafka{Brokers: []string{"x:9092"}, Partitions: 1, ReplicationFactor: 5}
	err := EnsureTopics(ctxT(t), cl, k, "p.edge.in")
	if err == nil || !strings.Contains(err.Error(), `create topic "p.edge.in"`) || !strings.Contains(err.Error(), "INVALID_REPLICATION_FACTOR") {
		t.Errorf("replication factor 5 on 3 brokers: %v", err)
	}
}
