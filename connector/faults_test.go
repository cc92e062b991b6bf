package connector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// setupCluster is setup on a kfake cluster the test controls, for fault
// injection.
func setupCluster(t *testing.T) (*env, *kfake.Cluster) {
	t.Helper()
	p, err := pipeline.Parse([]byte(testYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := testsupport.KafkaCluster(t, p.Kafka.Partitions, p.Topics()...)
	p.Kafka.Brokers = c.ListenAddrs()
	return &env{p: p, cl: testsupport.KafkaClient(t, kgo.SeedBrokers(p.Kafka.Brokers...), kgo.ProducerBatchMaxBytes(2<<20))}, c
}

// checkCommittedToEnd checks that the group's committed offset on each
// partition of the edge topic is the partition's end.
func (e *env) checkCommittedToEnd(t *testing.T) {
	t.Helper()
	adm := kadm.NewClient(e.cl)
	ctx := context.Background()
	offs, err := adm.FetchOffsets(ctx, e.p.ConsumerGroup("edge"))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "t.edge.in")
	if err != nil {
		t.Fatal(err)
	}
	committed := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "t.edge.in" {
			committed[o.Partition] = o.At
		}
	})
	ends.Each(func(o kadm.ListedOffset) {
		if committed[o.Partition] != o.Offset {
			t.Errorf("partition %d committed at %d, end %d", o.Partition, committed[o.Partition], o.Offset)
		}
	})
}

func union(rs ...*fakeReplica) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		for id, n := range r.ids() {
			out[id] += n
		}
	}
	return out
}

// outage is a fake replica's switchable failure: while it lasts, each
// call it fails counts a failed try for every record the call carries.
type outage struct {
	mu     sync.Mutex
	tries  map[string]int // failed calls per record
	broken bool
}

// newOutage returns an outage that has begun.
func newOutage() *outage {
	return &outage{tries: map[string]int{}, broken: true}
}

// fail reports whether the outage still lasts and, if it does, counts a
// failed try for each of msgs.
func (o *outage) fail(msgs []wire.Message) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.broken {
		return false
	}
	for _, m := range msgs {
		o.tries[m.ID]++
	}
	return true
}

// end ends the outage: from now on fail reports false.
func (o *outage) end() {
	o.mu.Lock()
	o.broken = false
	o.mu.Unlock()
}

// recover ends the outage, waits until the connector caught up, and
// checks that charged (what the connector counts when it gives records
// up) stayed 0 and that rep got every one of m0..m(n-1).
func (o *outage) recover(t *testing.T, e *env, rep *fakeReplica, n int, charged prometheus.Counter, what string) {
	t.Helper()
	o.end()
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if v := testutil.ToFloat64(charged); v != 0 {
		t.Errorf("%v %s", v, what)
	}
	if miss := missing(rep.ids(), "m", n); len(miss) > 0 {
		t.Errorf("not delivered: %v", miss)
	}
}

// leastTries is the fewest failed calls of the records m0..m(n-1): 0
// until every one was tried.
func (o *outage) leastTries(n int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	least := len(o.tries)
	for i := 0; i < n && least > 0; i++ {
		least = min(least, o.tries["m"+strconv.Itoa(i)])
	}
	return least
}

// missing lists ids prefix0..prefix(n-1) that seen lacks.
func missing(seen map[string]int, prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		if id := prefix + strconv.Itoa(i); seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestOnlyReplicaDiesAndComesBack: the tier's only replica goes away with
// records in flight and comes back on the same address. The connector
// marks the tier down, waits without dead-lettering anything, and resumes
// as soon as the replica answers; every record is delivered.
func TestOnlyReplicaDiesAndComesBack(t *testing.T) {
	e := setup(t)
	first := newFakeReplica(t, nil)
	addr := first.srv.Listener.Addr().String()
	c, _, _ := e.start(t, first)
	e.produce(t, 100, "a")
	testsupport.WaitFor(t, 15*time.Second, "the first records delivered", func() bool { return len(first.ids()) == 100 })

	first.srv.CloseClientConnections()
	first.srv.Close()
	e.produce(t, 100, "b")
	closed := time.Now()
	testsupport.WaitFor(t, 15*time.Second, "the tier marked down", func() bool { return testutil.ToFloat64(c.m.down) == 1 })
	// ddnn status reads when the tier went down from the down-since gauge.
	if since := time.Unix(0, int64(testutil.ToFloat64(c.m.downSince)*1e9)); since.Before(closed.Add(-time.Second)) || since.After(time.Now()) {
		t.Errorf("down since %s, want between the replica's close (%s) and now", since, closed)
	}
	time.Sleep(time.Second) // longer than max_attempts backoffs: nothing may be charged
	if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
		t.Fatalf("%v records dead-lettered during the outage", n)
	}

	back := time.Now()
	second := newFakeReplicaOn(t, addr, nil)
	testsupport.WaitFor(t, 15*time.Second, "every record delivered after the replica came back", func() bool {
		return len(missing(union(first, second), "b", 100)) == 0 && e.lag(t) == 0
	})
	t.Logf("resumed %s after the replica came back", time.Since(back).Round(time.Millisecond))
	if testutil.ToFloat64(c.m.down) != 0 || testutil.ToFloat64(c.m.downSince) != 0 {
		t.Errorf("tier still marked down (since %v)", testutil.ToFloat64(c.m.downSince))
	}
}

// TestOutageIsNotChargedToRecords: the only replica answers 502 (its
// deliveries fail: the funnel is down), 429 (busy) or 401/403 (the
// service token is wrong or missing) for far longer than
// max_attempts backoffs; no record is dead-lettered and all are delivered
// once it takes calls again.
func TestOutageIsNotChargedToRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"funnel down", 502, `{"error":"delivery: funnel unreachable"}`},
		{"busy", 429, `{"error":"too many requests"}`},
		// A refused credential is the setup's fault, not the records'.
		{"service token refused", 401, `{"error":"this route is for the pipeline's own parts: send its service token"}`},
		{"forbidden", 403, `{"error":"forbidden"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			out := newOutage()
			rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
				if !out.fail(msgs) {
					return 200, ""
				}
				return tc.status, tc.body
			})
			e.produce(t, 50, "m")
			c, _, _ := e.start(t, rep)
			attempts := e.p.Tiers[0].Connector.MaxAttempts
			testsupport.WaitFor(t, 15*time.Second, "every record tried more than max_attempts times, or one dead-lettered", func() bool {
				return out.leastTries(50) > attempts || testutil.ToFloat64(c.m.exhausts) > 0
			})
			out.recover(t, e, rep, 50, c.m.deadLetters, "records dead-lettered for an outage")
		})
	}
}

// TestPoisonRecordExhaustsAttempts: one record makes every call that
// carries it fail while other records keep arriving and succeeding; it is
// isolated and parked on the DLQ with "attempts exhausted", the records
// that shared its batch are delivered (max_attempts 2 is fewer than the
// splits a full batch of 8 needs), and the partition moves on.
func TestPoisonRecordExhaustsAttempts(t *testing.T) {
	e := setup(t)
	e.p.Tiers[0].Connector.MaxAttempts = 2
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		for _, m := range msgs {
			if m.ID == "m7" {
				return 502, `{"error":"delivery: downstream refused"}`
			}
		}
		return 200, ""
	})
	e.produce(t, 100, "m")
	c, _, _ := e.start(t, rep)
	// Other records keep succeeding meanwhile (bounded: 10s at most).
	for i := 0; testutil.ToFloat64(c.m.exhausts) == 0 && i < 500; i++ {
		e.produce(t, 1, "more"+strconv.Itoa(i)+"-")
		time.Sleep(20 * time.Millisecond)
	}
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if miss := missing(rep.ids(), "m", 100); len(miss) != 1 || miss[0] != "m7" {
		t.Errorf("not delivered: %v, want only m7", miss)
	}
	dlq := consumeAll(t, e, "t.edge.dlq", 1)
	reason := header(dlq[0], wire.HeaderReason)
	if !strings.HasPrefix(reason, "attempts exhausted: ") || !strings.Contains(reason, "downstream refused") {
		t.Errorf("reason %q", reason)
	}
	if n := testutil.ToFloat64(c.m.exhausts); n != 1 {
		t.Errorf("attempts exhausted counted %v times, want 1", n)
	}
}

// TestPendingWindowBounded: while one record is stuck and the others
// succeed, the connector stops fetching the stuck record's partition at its
// share of max_pending_records instead of holding an ever longer window.
func TestPendingWindowBounded(t *testing.T) {
	e := setup(t)
	const limit = 96 // a share of 32 per partition: twice what is in flight
	e.p.Tiers[0].Connector.MaxPendingRecords = limit
	e.p.Tiers[0].Connector.MaxAttempts = 1000
	var stuck atomic.Bool
	stuck.Store(true)
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		for _, m := range msgs {
			if m.ID == "m0" && stuck.Load() {
				return 503, "busy"
			}
		}
		return 200, ""
	})
	e.produce(t, 600, "m")
	c, _, _ := e.start(t, rep)
	peak := 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		peak = max(peak, c.offsets.Window())
		time.Sleep(2 * time.Millisecond)
	}
	delivered := len(rep.ids())
	if peak > limit {
		t.Errorf("offset window reached %d records, limit %d", peak, limit)
	}
	if delivered >= 599 {
		t.Errorf("%d records delivered past the stuck one: fetching did not pause", delivered)
	}
	stuck.Store(false)
	testsupport.WaitFor(t, 15*time.Second, "all delivered once unstuck", func() bool { return len(rep.ids()) == 600 && e.lag(t) == 0 })
	t.Logf("window peak %d (limit %d); %d delivered while stuck", peak, limit, delivered)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestOversizedDeadLetter: a record just under the broker's limit cannot
// be copied to the DLQ with headers added; the copy keeps the reason, the
// original size and the source in headers, its value is cut to fit, and
// the partition moves on within 5s.
func TestOversizedDeadLetter(t *testing.T) {
	e, _ := setupCluster(t)
	rep := newFakeReplica(t, nil)
	big := make([]byte, 1_048_000)
	for i := range big {
		big[i] = byte(i)
	}
	res := e.cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t.edge.in", Value: big})
	src, err := res.First()
	if err != nil {
		t.Fatalf("producing the big record: %v", err)
	}
	e.produce(t, 30, "m")
	start := time.Now()
	e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("partition moved on after %s, want within 5s", d)
	}
	if miss := missing(rep.ids(), "m", 30); len(miss) > 0 {
		t.Errorf("not delivered: %v", miss)
	}
	r := consumeAll(t, e, "t.edge.dlq", 1)[0]
	if got := kafka.RecordSize(r); got > e.p.Kafka.MaxRecordBytes {
		t.Errorf("dead-letter copy of %d bytes, limit %d", got, e.p.Kafka.MaxRecordBytes)
	}
	for key, want := range map[string]string{
		records.HeaderOriginalSize:    "1048000",
		records.HeaderSourceTopic:     "t.edge.in",
		records.HeaderSourcePartition: strconv.Itoa(int(src.Partition)),
		records.HeaderSourceOffset:    strconv.FormatInt(src.Offset, 10),
	} {
		if got := header(r, key); got != want {
			t.Errorf("header %s = %q, want %q", key, got, want)
		}
	}
	if reason := header(r, wire.HeaderReason); !strings.Contains(reason, "raw value has 1048000 bytes, want 4") {
		t.Errorf("reason %q", reason)
	}
	if note := header(r, records.HeaderTruncated); !strings.HasPrefix(note, fmt.Sprintf("value cut to %d of 1048000 bytes", len(r.Value))) {
		t.Errorf("%s = %q (value has %d bytes)", records.HeaderTruncated, note, len(r.Value))
	}
	if len(r.Value) == 0 || r.Value[1] != 1 {
		t.Error("the truncated value does not start with the original bytes")
	}
}

// TestCommitFailuresAreRetried: OffsetCommit requests fail for a while,
// covering the moment every record is done. Nothing may be marked
// committed that Kafka did not confirm: after a clean stop the group's
// offsets equal the end offsets, and a restarted connector gets nothing
// again.
func TestCommitFailuresAreRetried(t *testing.T) {
	e, cluster := setupCluster(t)
	var failing atomic.Bool
	var failed atomic.Int64
	failing.Store(true)
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		failed.Add(1)
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	rep := newFakeReplica(t, nil)
	e.produce(t, 200, "m")
	c, cancel, done := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "all delivered", func() bool { return len(rep.ids()) == 200 })
	testsupport.WaitFor(t, 15*time.Second, "commits refused", func() bool { return testutil.ToFloat64(c.m.commitFails) >= 2 })
	failing.Store(false)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.checkCommittedToEnd(t)
	t.Logf("%d commit requests refused", failed.Load())

	again := newFakeReplica(t, nil)
	e.start(t, again)
	e.produce(t, 1, "after")
	testsupport.WaitFor(t, 15*time.Second, "the new record", func() bool { return len(again.ids()) >= 1 && e.lag(t) == 0 })
	if ids := again.ids(); len(ids) != 1 {
		t.Errorf("restart redelivered %d records, want only the new one", len(ids)-1)
	}
}

// TestRequestLevelCommitFailure: the commit request itself fails (the
// connection drops); the offsets must not be taken as committed.
func TestRequestLevelCommitFailure(t *testing.T) {
	e, cluster := setupCluster(t)
	var failing atomic.Bool
	failing.Store(true)
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		return nil, errors.New("injected: connection dropped"), true
	})
	rep := newFakeReplica(t, nil)
	e.produce(t, 100, "m")
	c, cancel, done := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "all delivered", func() bool { return len(rep.ids()) == 100 })
	testsupport.WaitFor(t, 15*time.Second, "commits failed", func() bool { return testutil.ToFloat64(c.m.commitFails) >= 1 })
	failing.Store(false)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.checkCommittedToEnd(t)
}

// TestDeadLetterProduceRetried: the DLQ refuses the first produces; the
// dead letter is retried (and counted) until it lands, and only then is
// the record committed.
func TestDeadLetterProduceRetried(t *testing.T) {
	e, cluster := setupCluster(t)
	cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "t.edge.dlq", Err: kerr.InvalidRecord, Count: 3})
	rep := newFakeReplica(t, nil)
	if err := e.cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t.edge.in", Value: []byte("garbage!")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.produce(t, 20, "m")
	c, _, _ := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if n := testutil.ToFloat64(c.m.dlqRetries); n < 1 {
		t.Errorf("dead-letter retries %v, want at least 1", n)
	}
	if r := consumeAll(t, e, "t.edge.dlq", 1)[0]; string(r.Value) != "garbage!" {
		t.Errorf("DLQ holds %q", r.Value)
	}
}

// TestOutageWithRejectionsIsNotChargedToRecords: the funnel is down, so
// the only replica answers 502 to every batch it would deliver, while it
// still rejects bad records (400, before delivering) as they keep
// arriving. A rejection is no delivery: the good records must not be
// charged for the outage, and all of them are delivered afterwards.
func TestOutageWithRejectionsIsNotChargedToRecords(t *testing.T) {
	e := setup(t)
	out := newOutage()
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		var rej []string
		for i, m := range msgs {
			if strings.HasPrefix(m.ID, "bad") {
				rej = append(rej, fmt.Sprintf(`{"index":%d,"id":%q,"reason":"tensor has NaN"}`, i, m.ID))
			}
		}
		if len(rej) > 0 {
			return 400, fmt.Sprintf(`{"error":"%d of %d messages rejected","rejected":[%s]}`, len(rej), len(msgs), strings.Join(rej, ","))
		}
		if !out.fail(msgs) {
			return 200, ""
		}
		return 502, `{"error":"delivery: funnel unreachable"}`
	})
	e.produce(t, 50, "m")
	c, _, _ := e.start(t, rep)
	attempts := e.p.Tiers[0].Connector.MaxAttempts
	tried := func() bool {
		return out.leastTries(50) > attempts || testutil.ToFloat64(c.m.exhausts) > 0
	}
	bad := 0
	for deadline := time.Now().Add(15 * time.Second); !tried(); bad++ {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for every record to be tried more than max_attempts times")
		}
		e.produce(t, 1, "bad"+strconv.Itoa(bad)+"-")
		time.Sleep(10 * time.Millisecond)
	}
	out.recover(t, e, rep, 50, c.m.exhausts, "good records dead-lettered for the outage (attempts exhausted)")
}

// TestDeadReplicaUnderLoadIsNotChargedToRecords: one of two replicas is
// dead (connection refused) while the other is busy, so the dead one keeps
// getting calls whenever the live one has no free slot. Those failures are
// the replica's, not the records': none may be dead-lettered, although
// the live replica delivers meanwhile.
func TestDeadReplicaUnderLoadIsNotChargedToRecords(t *testing.T) {
	e := setup(t)
	live := newFakeReplica(t, func([]wire.Message) (int, string) {
		time.Sleep(20 * time.Millisecond)
		return 200, ""
	})
	dead := newFakeReplica(t, nil)
	dead.srv.Close()
	e.produce(t, 600, "m")
	c, _, _ := e.start(t, live, dead)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if n := testutil.ToFloat64(c.m.exhausts); n != 0 {
		t.Errorf("%v records dead-lettered for a dead replica while the other delivered", n)
	}
	if miss := missing(live.ids(), "m", 600); len(miss) > 0 {
		t.Errorf("not delivered: %d records", len(miss))
	}
}

// TestDeadLetterWithHugeReason: a record whose ddnn-encoding header is
// 300 KB of non-UTF-8 bytes is undecodable, and the decoder's error quotes
// the header, escaped to four times its size. The dead letter must still
// fit kafka.max_record_bytes (its reason cut), land on the DLQ, and let
// the partition move on.
func TestDeadLetterWithHugeReason(t *testing.T) {
	e := setup(t)
	rep := newFakeReplica(t, nil)
	enc := make([]byte, 300_000)
	for i := range enc {
		enc[i] = 0xff
	}
	rec := &kgo.Record{Topic: "t.edge.in", Value: []byte{1, 2, 3, 4}, Headers: []kgo.RecordHeader{{Key: wire.HeaderEncoding, Value: enc}}}
	if err := e.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.produce(t, 30, "m")
	c, _, _ := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if miss := missing(rep.ids(), "m", 30); len(miss) > 0 {
		t.Errorf("not delivered: %v", miss)
	}
	r := consumeAll(t, e, "t.edge.dlq", 1)[0]
	if got := kafka.RecordSize(r); got > e.p.Kafka.MaxRecordBytes {
		t.Errorf("dead-letter copy of %d bytes, limit %d", got, e.p.Kafka.MaxRecordBytes)
	}
	if reason := header(r, wire.HeaderReason); !strings.HasPrefix(reason, "undecodable record: header ddnn-encoding: unknown encoding") {
		t.Errorf("reason %.200q", reason)
	}
	if n := testutil.ToFloat64(c.m.dlqRetries); n != 0 {
		t.Errorf("%v dead-letter produces retried", n)
	}
}

// TestUnencodableRecordIsDeadLettered: a raw record whose ddnn-sent-at is
// past 2262 decodes but cannot be encoded for a replica. That is the record's fault, not the replica's: it goes to the
// DLQ at once, the partition moves on, and the tier is never taken for
// down. Today it is retried forever as a replica failure.
func TestUnencodableRecordIsDeadLettered(t *testing.T) {
	e := setup(t)
	rep := newFakeReplica(t, nil)
	// It decodes (a key that is not a valid id would not: see
	// TestDeadLetters) but its send time cannot be encoded.
	rec := &kgo.Record{Topic: "t.edge.in", Value: []byte{1, 2, 3, 4}, Headers: []kgo.RecordHeader{{Key: wire.HeaderSentAt, Value: []byte("9999-01-01T00:00:00Z")}}}
	if err := e.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c, _, _ := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 || testutil.ToFloat64(c.m.down) == 1 })
	if testutil.ToFloat64(c.m.down) == 1 {
		t.Error("tier marked down for a record that cannot be encoded")
	}
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	r := consumeAll(t, e, "t.edge.dlq", 1)[0]
	if reason := header(r, wire.HeaderReason); !strings.Contains(reason, "outside the years 1678..2262") {
		t.Errorf("reason %q", reason)
	}
	e.produce(t, 20, "m")
	testsupport.WaitFor(t, 15*time.Second, "the records after it", func() bool { return len(rep.ids()) == 20 && e.lag(t) == 0 })
}

// TestRejectionNamingNoRecord: a replica answers 400 with a rejected list
// whose indexes name no record of the batch. The batch must not be sent
// again and again without pause: it is taken as rejected as a whole, as a
// 400 without a list is.
func TestRejectionNamingNoRecord(t *testing.T) {
	e := setup(t)
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		return 400, fmt.Sprintf(`{"error":"1 of %d messages rejected","rejected":[{"index":%d,"reason":"tensor has NaN"}]}`, len(msgs), len(msgs)+5)
	})
	e.produce(t, 3, "m")
	c, _, _ := e.start(t, rep)
	deadline := time.Now().Add(5 * time.Second)
	for e.lag(t) != 0 && time.Now().Before(deadline) && rep.calls.Load() < 10_000 {
		time.Sleep(10 * time.Millisecond)
	}
	if n := rep.calls.Load(); n > 100 {
		t.Errorf("%d calls for 3 records", n)
	}
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	if n := testutil.ToFloat64(c.m.deadLetters); n != 3 {
		t.Errorf("%v records dead-lettered, want 3", n)
	}
}

// TestRevokeFreesTheWindow: partition 0's window is full (its share of
// max_pending_records) behind a record whose call hangs, so it is paused.
// When a rebalance revokes it, its window is let go and the poll must
// resume and fetch it again at once (kgo still hands it out here: the test
// calls the callback itself), not only once the hanging call ends.
func TestRevokeFreesTheWindow(t *testing.T) {
	e := setup(t)
	const limit = 18 // a share of 6 per partition
	e.p.Tiers[0].Connector.MaxPendingRecords = limit
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the replica's server closes
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		for _, m := range msgs {
			if m.ID == "m0" {
				<-release
			}
		}
		return 200, ""
	})
	manual := testsupport.KafkaClient(t, kgo.SeedBrokers(e.p.Kafka.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := 0; i < 40; i++ {
		m := wire.Message{ID: "m" + strconv.Itoa(i), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, 4}}}
		r, err := records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := manual.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c, _, _ := e.start(t, rep)
	const share = limit / 3
	testsupport.WaitFor(t, 15*time.Second, "partition 0's window full behind m0", func() bool { return c.offsets.Window() == share })

	// What kgo does when a rebalance moves partition 0 elsewhere.
	c.onRevoked(context.Background(), c.cl, map[string][]int32{"t.edge.in": {0}})
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(c.m.fetchedRecs) <= share && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.ToFloat64(c.m.fetchedRecs); n <= share {
		t.Errorf("the poll fetched nothing after the revocation freed the window (fetched %v, window %d)", n, c.offsets.Window())
	}
	unblock()
}

// TestFencedInstanceStops: a second connector joining with the first one's
// instance id fences it; the first stops with an error naming the id
// instead of polling on without partitions.
func TestFencedInstanceStops(t *testing.T) {
	e := setup(t)
	rep := newFakeReplica(t, nil)
	start := func() (*Connector, <-chan error) {
		c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: []string{rep.srv.URL}, InstanceID: "edge-0", DrainTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		stopped := make(chan struct{})
		go func() { defer close(stopped); done <- c.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-stopped })
		return c, done
	}
	_, first := start()
	e.produce(t, 10, "a")
	testsupport.WaitFor(t, 15*time.Second, "the first connector consuming", func() bool { return len(rep.ids()) == 10 })
	start()
	select {
	case err := <-first:
		if err == nil || !strings.Contains(err.Error(), `instance id "edge-0"`) {
			t.Errorf("first connector stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the fenced connector did not stop")
	}
	e.produce(t, 10, "b")
	testsupport.WaitFor(t, 15*time.Second, "the second connector consuming", func() bool { return len(missing(rep.ids(), "b", 10)) == 0 })
}
