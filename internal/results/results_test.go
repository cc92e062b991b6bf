package results

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(readerEnv); addr != "" {
		os.Exit(readChild(addr))
	}
	goleak.VerifyTestMain(m)
}

const topic = "p.results"

// cluster is a kfake broker with the results topic in three partitions.
type cluster struct {
	c  *kfake.Cluster
	cl *kgo.Client
	t0 time.Time
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := testsupport.KafkaCluster(t, 3, topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{c: c, cl: cl, t0: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// produce writes a result of id to partition p, stamped n seconds after t0.
func (c *cluster) produce(t *testing.T, p int32, n int, id string) {
	t.Helper()
	c.produceResult(t, p, n, wire.Result{ID: id, Device: "cam-1", Tier: "edge", Label: "cat", Confidence: 0.9,
		SentAt: c.t0, ExitedAt: c.t0.Add(12300 * time.Microsecond)})
}

// produceResult writes r to partition p, stamped n seconds after t0.
func (c *cluster) produceResult(t *testing.T, p int32, n int, r wire.Result) {
	t.Helper()
	b, err := wire.AppendResult(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: topic, Partition: p, Key: []byte(r.ID), Value: b, Timestamp: c.t0.Add(time.Duration(n) * time.Second)}
	if err := c.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) config(out *testsupport.Buffer) Config {
	return Config{Kafka: pipeline.Kafka{Brokers: c.c.ListenAddrs()}, Topic: topic, Out: out, JSON: true, Timeout: 20 * time.Second}
}

// ids are the ids of the JSON results in out, in order.
func ids(out string) []string {
	var ids []string
	for line := range strings.Lines(out) {
		_, rest, _ := strings.Cut(line, `"id":"`)
		id, _, _ := strings.Cut(rest, `"`)
		ids = append(ids, id)
	}
	return ids
}

func eq(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// TestReadToEnd: without --follow or --count every result there is now is
// printed, and Read returns at once.
func TestReadToEnd(t *testing.T) {
	c := newCluster(t)
	c.produce(t, 0, 1, "a")
	c.produce(t, 1, 2, "b")
	c.produce(t, 0, 3, "c")
	var out testsupport.Buffer
	start := time.Now()
	if err := Read(context.Background(), c.config(&out)); err != nil {
		t.Fatal(err)
	}
	if got := ids(out.String()); len(got) != 3 {
		t.Errorf("printed %v, want a, b and c", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s: it should stop at the end", d)
	}
}

// TestFollow: --follow starts at the end, so only results that arrive
// after it started are printed; --from-beginning prints the old ones too.
func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fromBeginning bool
		want          []string
	}{
		{"from the end", false, []string{"new"}},
		{"from the beginning", true, []string{"old-1", "old-2", "new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			c.produce(t, 0, 1, "old-1")
			c.produce(t, 0, 2, "old-2")
			var out testsupport.Buffer
			cfg := c.config(&out)
			cfg.Follow, cfg.FromBeginning, cfg.JSON = true, tc.fromBeginning, false
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Read(ctx, cfg) }()
			waitFor(t, &out, "LATENCY") // the header: positioned
			c.produce(t, 1, 3, "new")
			waitFor(t, &out, "new ")
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Read: %v", err)
			}
			var got []string
			for line := range strings.Lines(out.String()) {
				if f := strings.Fields(line); f[0] != "ID" {
					got = append(got, f[0])
				}
			}
			// Partitions are read side by side: "new" (partition 1) may
			// come before the old ones (partition 0), which keep their
			// order.
			sorted := slices.Sorted(slices.Values(got))
			if !eq(sorted, slices.Sorted(slices.Values(tc.want))...) || slices.Index(got, "old-2") < slices.Index(got, "old-1") {
				t.Errorf("printed %v, want %v, old-1 before old-2\n%s", got, tc.want, out.String())
			}
		})
	}
}

// TestLast: --last N prints the N newest results over every partition by
// their timestamps, oldest first.
func TestLast(t *testing.T) {
	c := newCluster(t)
	// Partition 0 holds most, but the newest are spread.
	for i, id := range []string{"r1", "r2", "r3", "r4", "r6"} {
		c.produce(t, 0, []int{1, 2, 3, 4, 6}[i], id)
	}
	c.produce(t, 1, 5, "r5")
	c.produce(t, 2, 7, "r7")
	for _, tc := range []struct {
		last int
		want []string
	}{
		{1, []string{"r7"}},
		{3, []string{"r5", "r6", "r7"}},
		{4, []string{"r4", "r5", "r6", "r7"}},
		{50, []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"}},
	} {
		var out testsupport.Buffer
		cfg := c.config(&out)
		cfg.Last = tc.last
		if err := Read(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if got := ids(out.String()); !eq(got, tc.want...) {
			t.Errorf("--last %d: %v, want %v", tc.last, got, tc.want)
		}
	}
}

// TestLastFollow: --last N --follow prints the N newest, then every
// result that arrives, each once: one that arrived between the topic's
// ends being asked and read (here, r2: the broker gives partition 0's end
// as 1), and new ones on partitions that held results and on one that was
// empty.
func TestLastFollow(t *testing.T) {
	c := newCluster(t)
	c.produce(t, 0, 1, "r1")
	c.produce(t, 0, 2, "r2")
	c.produce(t, 1, 3, "r3")
	c.c.ControlKey(int16(kmsg.ListOffsets), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.c.KeepControl()
		req := kr.(*kmsg.ListOffsetsRequest)
		if len(req.Topics) == 0 || len(req.Topics[0].Partitions) == 0 || req.Topics[0].Partitions[0].Timestamp != -1 {
			return nil, nil, false // not the ends
		}
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Timestamp, sp.LeaderEpoch = rp.Partition, -1, -1
				sp.Offset = map[int32]int64{0: 1, 1: 1}[rp.Partition]
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	var out testsupport.Buffer
	cfg := c.config(&out)
	cfg.Last, cfg.Follow = 2, true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Read(ctx, cfg) }()
	waitFor(t, &out, `"id":"r3"`)
	c.produce(t, 2, 4, "n1")
	c.produce(t, 0, 5, "n2")
	c.produce(t, 1, 6, "n3")
	for _, id := range []string{"r2", "n1", "n2", "n3"} {
		waitFor(t, &out, `"id":"`+id+`"`)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := ids(out.String())
	if len(got) > 2 {
		slices.Sort(got[2:]) // what followed comes in partition order
	}
	if !eq(got, "r1", "r3", "n1", "n2", "n3", "r2") {
		t.Errorf("printed %v, want r1 and r3, then r2, n1, n2 and n3 once each", got)
	}
}

// TestID: --id prints only that message's results; with --count 1 Read
// returns as soon as it is found, and a message never found is an error
// naming it.
func TestID(t *testing.T) {
	c := newCluster(t)
	c.produce(t, 0, 1, "a")
	c.produce(t, 1, 2, "want-me")
	c.produce(t, 2, 3, "b")

	var out testsupport.Buffer
	cfg := c.config(&out)
	cfg.ID = "want-me"
	if err := Read(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := ids(out.String()); !eq(got, "want-me") {
		t.Errorf("--id: %v", got)
	}

	out = testsupport.Buffer{}
	cfg.Count, cfg.Timeout = 1, time.Minute
	start := time.Now()
	if err := Read(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("--id --count 1 took %s; it should return once found", d)
	}
	if got := ids(out.String()); !eq(got, "want-me") {
		t.Errorf("--id --count 1: %v", got)
	}

	cfg.ID, cfg.Timeout = "never", 500*time.Millisecond
	err := Read(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `0 of 1 results of message "never" within 500ms`) {
		t.Errorf("missing id: %v", err)
	}
}

// TestNoBroker: with nothing listening, Read fails within the connect
// timeout naming the brokers it tried, with or without --follow.
func TestNoBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, follow := range []bool{false, true} {
		cfg := Config{Kafka: pipeline.Kafka{Brokers: []string{addr}}, Topic: topic, Out: &bytes.Buffer{},
			Follow: follow, Count: 1, ConnectTimeout: 2 * time.Second}
		start := time.Now()
		err := Read(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "no Kafka broker reachable at "+addr) {
			t.Errorf("follow %v: %v", follow, err)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("follow %v: failed after %s, want about the 2s connect timeout", follow, d)
		}
	}
}

// TestNoTopic: a broker without the results topic is an error naming it.
func TestNoTopic(t *testing.T) {
	c := newCluster(t)
	var out testsupport.Buffer
	cfg := c.config(&out)
	cfg.Topic = "other.results"
	if err := Read(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "topic other.results on ") {
		t.Errorf("Read: %v", err)
	}
}

// TestNotAtEnd: a read that cannot reach the end of the topic (every fetch
// fails) is an error saying why, the timeout or an interruption, rather
// than passing for the whole topic.
func TestNotAtEnd(t *testing.T) {
	c := newCluster(t)
	c.produce(t, 0, 1, "a")
	c.c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.c.KeepControl()
		return nil, errors.New("fetch refused"), true
	})
	for _, last := range []int{0, 2} {
		cfg := c.config(&testsupport.Buffer{})
		cfg.Last, cfg.Timeout = last, 300*time.Millisecond
		err := Read(context.Background(), cfg)
		if err == nil || err.Error() != "the end of p.results not reached within 300ms (--timeout)" {
			t.Errorf("--last %d, timeout: %v", last, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel) // as Ctrl-C does
		cfg.Timeout = time.Minute
		err = Read(ctx, cfg)
		if err == nil || err.Error() != "interrupted before the end of p.results" {
			t.Errorf("--last %d, interrupted: %v", last, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := Config{Last: 2, Count: 1, FromBeginning: true, ID: "x", Timeout: -time.Second}
	err := Read(context.Background(), cfg)
	for _, want := range []string{"no results topic", "--last and --from-beginning", "--last prints the newest N and --count",
		"--last reads the newest N records and --id", "--timeout -1s: want a positive duration", "no output"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
}

func TestLatency(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{12300 * time.Microsecond, "     12.3 ms"},
		{250 * time.Microsecond, "      0.2 ms"},
		{7*time.Minute + 3247800*time.Microsecond, " 423247.8 ms"},
	} {
		if got := Latency(wire.Result{SentAt: t0, ExitedAt: t0.Add(tc.d)}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := Latency(wire.Result{ExitedAt: t0}); got != "           -" {
		t.Errorf("no sent_at: %q", got)
	}
}

// TestTable: the table's columns, the exit model's version (sha@version,
// the sha alone, or "-" for a result that names none) and latency in
// milliseconds; --json carries the model as the record holds it.
func TestTable(t *testing.T) {
	c := newCluster(t)
	c.produce(t, 0, 1, "a")
	labeled := wire.Result{ID: "b", Device: "cam-1", Tier: "fog", Label: "cat", Confidence: 0.9,
		SentAt: c.t0, ExitedAt: c.t0.Add(12300 * time.Microsecond), Model: wire.ModelVersion{SHA: "3f9a1c0b2d4e", Version: "v2"}}
	c.produceResult(t, 0, 2, labeled)
	shaOnly := labeled
	shaOnly.ID, shaOnly.Model.Version = "c", ""
	c.produceResult(t, 0, 3, shaOnly)
	var out testsupport.Buffer
	cfg := c.config(&out)
	cfg.JSON = false
	if err := Read(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.HasSuffix(lines[0], "CONFIDENCE  MODEL                 LATENCY") ||
		!strings.HasSuffix(lines[1], "0.900       -                     12.3 ms") ||
		!strings.HasSuffix(lines[2], "0.900       3f9a1c0b2d4e@v2       12.3 ms") ||
		!strings.HasSuffix(lines[3], "0.900       3f9a1c0b2d4e          12.3 ms") {
		t.Errorf("table:\n%s", out.String())
	}

	var js testsupport.Buffer
	cfg = c.config(&js)
	if err := Read(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"id":"b",`, `"model":{"sha":"3f9a1c0b2d4e","version":"v2"}}`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("--json lacks %s:\n%s", want, js.String())
		}
	}
	if strings.Count(js.String(), `"model":`) != 2 {
		t.Errorf("--json: want a model on the two results that name one:\n%s", js.String())
	}
}

// waitFor waits until out holds s.
func waitFor(t *testing.T, out *testsupport.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", s, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
