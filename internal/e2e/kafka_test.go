package e2e

// The Apache Kafka suite: the binary against a real 3-node KRaft cluster
// (internal/kafkatest), started once for every subtest of TestApacheKafka.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafkatest"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestApacheKafka is the Apache Kafka suite: one 3-node KRaft cluster for
// every subtest, stopped (by PID) when the suite ends. It skips, saying
// why, without Java 17+ or the jars (make kafka-deps fetches them).
func TestApacheKafka(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Config{Root: root(t)})
	t.Run("TopicMismatch", func(t *testing.T) { testKafkaTopicMismatch(t, c) })
	t.Run("MatchesEval", func(t *testing.T) { testKafkaMatchesEval(t, c) })
	t.Run("ConnectorKill", func(t *testing.T) { testKafkaConnectorKill(t, c) })
	t.Run("LagMatchesGroupTool", func(t *testing.T) { testKafkaLagMatchesGroupTool(t, c) })
	// Last: it kills a broker (the cluster is whole again when it ends).
	t.Run("BrokerKill", func(t *testing.T) { testKafkaBrokerKill(t, c) })
}

// kafkaPipeline writes the shipped pipeline against the cluster with
// replication factor 3 and min.insync.replicas 2 (ddnn produces with
// acks=all). tp.broker is one node, for readers.
func kafkaPipeline(t *testing.T, c *kafkatest.Cluster, name string) testPipeline {
	t.Helper()
	tp := writePipeline(t, name, 1, strings.Join(c.Brokers(), ", "))
	b, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "kafka:\n", "kafka:\n  replication_factor: 3\n  topic_config: {min.insync.replicas: 2}\n", 1)
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	tp.broker = c.Brokers()[0]
	return tp
}

func adminClient(t *testing.T, c *kafkatest.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// gatherResults reads the results topic from the start until every id in
// want has a result, no new result came for quiet, or timeout passed; it
// returns every result per id with the prefix and never fails the test.
func gatherResults(t *testing.T, broker, topic, prefix string, want []string, quiet, timeout time.Duration) map[string][]wire.Result {
	t.Helper()
	cl := readFromStart(t, broker, topic)
	defer cl.Close()
	got := map[string][]wire.Result{}
	missing := func() int {
		n := 0
		for _, id := range want {
			if len(got[id]) == 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for missing() > 0 && time.Now().Before(deadline) && time.Since(last) < quiet {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		for _, rec := range fs.Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatalf("result record: %v", err)
			}
			if strings.HasPrefix(r.ID, prefix) {
				got[r.ID] = append(got[r.ID], r)
				last = time.Now()
			}
		}
	}
	readLate(cl, prefix, got)
	return got
}

// lostAndDuplicates counts accepted ids without a result and extra results.
func lostAndDuplicates(got map[string][]wire.Result, accepted []string) (lost []string, dups int) {
	for _, id := range accepted {
		switch n := len(got[id]); {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dups += n - 1
		}
	}
	return lost, dups
}

// topicProblems lists how topics differ from 4 partitions with 3 replicas
// and min.insync.replicas 2.
func topicProblems(ctx context.Context, adm *kadm.Client, topics []string) []string {
	md, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return []string{err.Error()}
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, name := range topics {
		td := md[name]
		if td.Err != nil || len(td.Partitions) != 4 || td.Partitions.NumReplicas() != 3 {
			out = append(out, fmt.Sprintf("topic %s: %d partitions with %d replicas (%v), want 4 with 3", name, len(td.Partitions), td.Partitions.NumReplicas(), td.Err))
		}
	}
	for _, rc := range cfgs {
		for _, cf := range rc.Configs {
			if cf.Key == "min.insync.replicas" && cf.MaybeValue() != "2" {
				out = append(out, fmt.Sprintf("topic %s: min.insync.replicas %s, want 2", rc.Name, cf.MaybeValue()))
			}
		}
	}
	return out
}

func loadPipeline(t *testing.T, file string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testKafkaTopicMismatch: `ddnn up` against topics that exist with
// fewer partitions and another replication factor stops and says so,
// naming the topic, what it has and what is wanted.
func testKafkaTopicMismatch(t *testing.T, c *kafkatest.Cluster) {
	tp := kafkaPipeline(t, c, "akmismatch")
	adm := adminClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"min.insync.replicas": kadm.StringPtr("1")}, "akmismatch.fog.in"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, ddnn, "up", "-f", tp.file).CombinedOutput()
	if err == nil {
		t.Fatalf("ddnn up accepted a mismatched topic:\n%s", out)
	}
	for _, want := range []string{
		`topic "akmismatch.fog.in": has 2 partitions, want at least 4 (kafka.partitions)`,
		`topic "akmismatch.fog.in": has replication factor 1 (partition 0), want 3 (kafka.replication_factor)`,
		`topic "akmismatch.fog.in": has min.insync.replicas=1, want 2 (kafka.topic_config)`,
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// testKafkaMatchesEval is TestPipelineMatchesEval against Apache
// Kafka: topics with replication factor 3 and min.insync.replicas 2,
// acks=all; every image gets exactly one result, and exits and accuracy
// equal `ddnn models eval`.
func testKafkaMatchesEval(t *testing.T, c *kafkatest.Cluster) {
	tp := kafkaPipeline(t, c, "akeval")
	up(t, tp)
	p := loadPipeline(t, tp.file)

	// The topics ddnn created: 4 partitions, 3 replicas, min.insync.replicas 2.
	adm := adminClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var problems []string
	for {
		problems = topicProblems(ctx, adm, p.Topics())
		if len(problems) == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // metadata reaches every broker shortly
	}
	for _, pr := range problems {
		t.Error(pr)
	}

	sendTestSet(t, tp.funnel, tp.broker, tp.name+".results", tp.file, " through Apache Kafka (RF 3, min.insync.replicas 2, acks=all) by 4 senders")
}

// testKafkaConnectorKill SIGKILLs the edge connector under `ddnn up`
// at ~300 msg/s; the supervisor starts it again and the group hands it the
// partitions. Every accepted message has a result; duplicates are at most
// what the connector can have fetched and not committed: its in-flight
// invocations (max_batch × in_flight_per_replica × replicas) plus one
// poll. The pause (from the kill until a message sent after it has a
// result) is measured.
func testKafkaConnectorKill(t *testing.T, c *kafkatest.Cluster) {
	tp := kafkaPipeline(t, c, "akconn")
	upProc := up(t, tp)
	p := loadPipeline(t, tp.file)
	edge, _, _ := p.Tier("edge")
	conns := childPIDs(t, upProc.cmd.Process.Pid, "connector", "--tier=edge")
	if len(conns) != 1 {
		t.Fatalf("%d edge connectors, want 1", len(conns))
	}
	ds := testSet(t)
	const n, rate = 3600, 300
	l := startLoad(t, tp.funnel, ds.Samples, "ac-", n, rate)
	testsupport.WaitFor(t, 60*time.Second, "900 messages accepted", func() bool { return len(l.ids()) >= 900 })
	killed := time.Now()
	if err := syscall.Kill(conns[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-l.done
	paced := float64(n) / l.ended.Sub(l.began).Seconds()
	accepted := l.ids()
	got := gatherResults(t, tp.broker, tp.name+".results", "ac-", accepted, 30*time.Second, 120*time.Second)
	lost, dups := lostAndDuplicates(got, accepted)

	// The pause: the first result of a message the funnel accepted after
	// the kill (the edge tier consumes nothing until the group has given
	// the restarted connector the partitions).
	var resumed time.Time
	for _, rs := range got {
		for _, r := range rs {
			if r.SentAt.After(killed) && (resumed.IsZero() || r.ExitedAt.Before(resumed)) {
				resumed = r.ExitedAt
			}
		}
	}
	pause := "never"
	if !resumed.IsZero() {
		pause = resumed.Sub(killed).Round(time.Millisecond).String()
	}
	inflight := edge.Connector.MaxBatch * edge.Connector.InFlightPerReplica * edge.Replicas.Max
	poll := edge.Connector.MaxBatch * edge.Connector.InFlightPerReplica // one poll: the batch queue's size
	after := childPIDs(t, upProc.cmd.Process.Pid, "connector", "--tier=edge")
	t.Logf("connector SIGKILL at %.0f msg/s: sent %d, accepted %d, refused %d %v, lost %d, duplicates %d (bound %d = %d in flight + %d one poll); results flowed again %s after the kill; edge connector pid %d -> %v",
		paced, n, len(accepted), len(l.refused), l.reasons, len(lost), dups, inflight+poll, inflight, poll, pause, conns[0], after)
	reportLost(t, "connector SIGKILL", accepted, lost)
	if len(lost) > 0 {
		logBacklog(t, tp.broker, tp.name)
	}
	if dups > inflight+poll {
		t.Errorf("%d duplicates, more than the connector's window %d", dups, inflight+poll)
	}
	if resumed.IsZero() {
		t.Error("no message sent after the kill got a result")
	}
}

// testKafkaLagMatchesGroupTool compares the lag ddnn's scaler
// computes (kafka.Lag, the ddnn_scaler_lag_records metric) with what
// Kafka's own kafka-consumer-groups (ConsumerGroupCommand, from the same
// jars) reports for the edge connector's group, stopped, with a known
// backlog on every partition; then shows where the two differ (a
// partition without a committed offset).
func testKafkaLagMatchesGroupTool(t *testing.T, c *kafkatest.Cluster) {
	tp := kafkaPipeline(t, c, "aklag")
	// The scaler watches the lag of the tiers it may scale: the edge's.
	b, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "    replicas: 1\n", "    replicas: {min: 1, max: 2}\n", 1)
	if y == string(b) {
		t.Fatal("no edge replicas to make scaled in the pipeline")
	}
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPipeline(t, tp.file)
	brokers := c.Bootstrap()
	topic, group := p.InputTopic("edge"), p.ConsumerGroup("edge")
	start(t, "funnel", "-f", tp.file, "--brokers", brokers)
	testsupport.WaitFor(t, 30*time.Second, "funnel", func() bool { return ready("http://" + tp.funnel + "/readyz") })
	scalerAdmin := proctest.FreeAddr(t)
	start(t, "scaler", "-f", tp.file, "--brokers", brokers, "--admin", scalerAdmin)
	replicas := "http://" + scalerAdmin + "/v1/tiers/edge/replicas"
	testsupport.WaitFor(t, 30*time.Second, "scaler", func() bool { return ready("http://" + scalerAdmin + "/readyz") })
	connAdmin := proctest.FreeAddr(t)
	conn := start(t, "connector", "-f", tp.file, "--tier", "edge", "--replicas-url", replicas, "--brokers", brokers, "--admin", connAdmin)
	testsupport.WaitFor(t, 30*time.Second, "edge connector", func() bool { return ready("http://" + connAdmin + "/readyz") })

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ds := testSet(t)
	produce := func(prefix string, perPartition func(p int32) int) int {
		var recs []*kgo.Record
		for part := range p.Kafka.Partitions {
			for i := range perPartition(part) {
				id := fmt.Sprintf("%s%d-%d", prefix, part, i)
				recs = append(recs, &kgo.Record{Topic: topic, Partition: part, Key: []byte(id), Value: ds.Samples[len(recs)%len(ds.Samples)]})
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	// Every partition gets records the group consumes and commits, so
	// Kafka's tool lists every partition (it shows only committed ones).
	produce("lag-a-", func(int32) int { return 5 })
	testsupport.WaitFor(t, 60*time.Second, "the group committed every partition", func() bool {
		l, err := adm.Lag(ctx, group)
		if err != nil {
			return false
		}
		g := l[group]
		if g.Error() != nil {
			return false
		}
		parts := g.Lag[topic]
		if len(parts) != int(p.Kafka.Partitions) {
			return false
		}
		for _, pl := range parts {
			if pl.Commit.At < 0 || pl.Lag != 0 {
				return false
			}
		}
		return true
	})
	conn.term(t)
	// The backlog: 10, 20, 30, 40 records on partitions 0 to 3.
	backlog := produce("lag-b-", func(part int32) int { return 10 * int(part+1) })

	var scalerLag float64
	testsupport.WaitFor(t, 30*time.Second, "the scaler reads the backlog", func() bool {
		scalerLag = scrape(scalerAdmin).lag
		return scalerLag == float64(backlog)
	})
	out, err := c.Tool(ctx, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--describe", "--group", group)
	if err != nil {
		t.Fatal(err)
	}
	toolLag, perPartition := parseGroupDescribe(t, out, topic)
	t.Logf("group %s stopped with a backlog of %d: ddnn scaler lag %v, kafka-consumer-groups lag %d %v",
		group, backlog, scalerLag, toolLag, perPartition)
	if toolLag != int64(scalerLag) {
		t.Errorf("kafka-consumer-groups reports lag %d, the scaler %v:\n%s", toolLag, scalerLag, out)
	}
	for part := range p.Kafka.Partitions {
		if want := int64(10 * (part + 1)); perPartition[part] != want {
			t.Errorf("kafka-consumer-groups: %s[%d] lag %d, want %d", topic, part, perPartition[part], want)
		}
	}

	// Where they part: a partition the group has no commit for. The
	// scaler counts it from the log start (5 consumed + 40 waiting); Kafka's
	// tool shows no lag for it.
	last := p.Kafka.Partitions - 1
	if _, err := adm.DeleteOffsets(ctx, group, kadm.TopicsSet{topic: {last: {}}}); err != nil {
		t.Fatal(err)
	}
	want := float64(backlog + 5)
	testsupport.WaitFor(t, 30*time.Second, "the scaler counts the uncommitted partition in full", func() bool {
		scalerLag = scrape(scalerAdmin).lag
		return scalerLag == want
	})
	out, err = c.Tool(ctx, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--describe", "--group", group)
	if err != nil {
		t.Fatal(err)
	}
	toolLag, perPartition = parseGroupDescribe(t, out, topic)
	t.Logf("with %s[%d] uncommitted: ddnn scaler lag %v, kafka-consumer-groups lag %d %v (-1: listed without lag)",
		topic, last, scalerLag, toolLag, perPartition)
	if lag, listed := perPartition[last]; listed && lag != -1 {
		t.Errorf("kafka-consumer-groups shows lag %d for the uncommitted %s[%d]:\n%s", lag, topic, last, out)
	}
	if toolLag != int64(backlog)-int64(10*(last+1)) {
		t.Errorf("kafka-consumer-groups reports lag %d for the committed partitions, want %d:\n%s", toolLag, int64(backlog)-int64(10*(last+1)), out)
	}
}

// parseGroupDescribe sums the LAG column of kafka-consumer-groups
// --describe for topic, and returns it per partition listed (-1 for a
// partition listed with no lag, "-").
func parseGroupDescribe(t *testing.T, out []byte, topic string) (int64, map[int32]int64) {
	t.Helper()
	var (
		cols  []string
		total int64
		parts = map[int32]int64{}
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "GROUP" {
			cols = f
			continue
		}
		if cols == nil || len(f) != len(cols) {
			continue
		}
		row := map[string]string{}
		for i, col := range cols {
			row[col] = f[i]
		}
		if row["TOPIC"] != topic {
			continue
		}
		part, err := strconv.Atoi(row["PARTITION"])
		if err != nil {
			t.Fatalf("kafka-consumer-groups row %q: %v", sc.Text(), err)
		}
		if row["LAG"] == "-" {
			parts[int32(part)] = -1
			continue
		}
		lag, err := strconv.ParseInt(row["LAG"], 10, 64)
		if err != nil {
			t.Fatalf("kafka-consumer-groups row %q: %v", sc.Text(), err)
		}
		parts[int32(part)] = lag
		total += lag
	}
	if cols == nil || !slices.Contains(cols, "LAG") {
		t.Fatalf("kafka-consumer-groups printed no LAG column:\n%s", out)
	}
	return total, parts
}

// testKafkaBrokerKill SIGKILLs the broker leading <name>.fog.in
// partition 0 while ~300 msg/s flow through `ddnn up`, then starts it
// again. Every message the funnel accepted has a result; sends refused
// while partitions moved and duplicates are reported. The cluster is
// whole again (every replica in sync) when it ends.
func testKafkaBrokerKill(t *testing.T, c *kafkatest.Cluster) {
	tp := kafkaPipeline(t, c, "akbroker")
	up(t, tp)
	p := loadPipeline(t, tp.file)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fogIn := p.InputTopic("fog")
	leader, err := c.Leader(ctx, fogIn, 0)
	if err != nil {
		t.Fatal(err)
	}
	ds := testSet(t)
	const n, rate = 3600, 300
	l := startLoad(t, tp.funnel, ds.Samples, "ab-", n, rate)
	testsupport.WaitFor(t, 60*time.Second, "900 messages accepted", func() bool { return len(l.ids()) >= 900 })
	killed := time.Now()
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	var moved time.Duration
	testsupport.WaitFor(t, 60*time.Second, "a new leader of "+fogIn+"[0]", func() bool {
		l, err := c.Leader(ctx, fogIn, 0)
		moved = time.Since(killed)
		return err == nil && l != leader
	})
	// Keep it down a while longer under load, then restart it.
	down := len(l.ids())
	testsupport.WaitFor(t, 60*time.Second, "300 more messages accepted", func() bool { return len(l.ids()) >= down+300 })
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	restarted := time.Since(killed)
	<-l.done
	paced := float64(n) / l.ended.Sub(l.began).Seconds()
	accepted := l.ids()
	lost, dups := awaitResults(t, tp.broker, tp.name+".results", accepted, 120*time.Second)
	t.Logf("broker SIGKILL (node %d, leader of %s[0]) at %.0f msg/s: new leader after %s, node back after %s; sent %d, accepted %d, refused %d %v, lost %d, duplicates %d; results gathered %s after the kill",
		leader, fogIn, paced, moved.Round(time.Millisecond), restarted.Round(time.Millisecond), n, len(accepted), len(l.refused), l.reasons, len(lost), dups, time.Since(killed).Round(time.Millisecond))
	reportLost(t, "broker SIGKILL", accepted, lost)
	if len(lost) > 0 {
		logBacklog(t, tp.broker, tp.name)
	}
	if err := c.WaitInSync(ctx, append(p.Topics(), "__consumer_offsets")...); err != nil {
		t.Error(err)
	}
	t.Logf("every replica in sync %s after the kill", time.Since(killed).Round(time.Millisecond))
}
