package connector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

const testYAML = `
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
tiers:
  - name: edge
    model: e.onnx
    exit: {output: o, threshold: 0.5}
    forward: {output: f}
    connector: {max_batch: 8, max_wait: 2ms, in_flight_per_replica: 2, backoff: 5ms, max_backoff: 50ms, request_timeout: 2s}
  - {name: cloud, model: c.onnx, exit: {output: o}}
kafka: {partitions: 3}
`

// fakeReplica answers like an inference function: 200 with one exit per
// message, unless behave says otherwise.
type fakeReplica struct {
	mu     sync.Mutex
	seen   map[string]int
	calls  atomic.Int64
	behave func(msgs []wire.Message) (int, string)
	srv    *httptest.Server
}

func newFakeReplica(t *testing.T, behave func([]wire.Message) (int, string)) *fakeReplica {
	return newFakeReplicaOn(t, "127.0.0.1:0", behave)
}

// newFakeReplicaOn serves a fake replica on addr (host:port; port 0 picks
// one), so that a test can stop a replica and start another on the same
// address.
func newFakeReplicaOn(t *testing.T, addr string, behave func([]wire.Message) (int, string)) *fakeReplica {
	t.Helper()
	f := &fakeReplica{seen: map[string]int{}, behave: behave}
	f.srv = serveOn(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		msgs, err := wire.DecodeMessages(wire.Binary, b)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if f.behave != nil {
			if code, body := f.behave(msgs); code != 200 {
				w.WriteHeader(code)
				io.WriteString(w, body)
				return
			}
		}
		f.mu.Lock()
		ds := make([]wire.Decision, len(msgs))
		for i, m := range msgs {
			f.seen[m.ID]++
			ds[i] = wire.Decision{ID: m.ID, Tier: "edge", Exit: true, Label: "a", Confidence: 1}
		}
		f.mu.Unlock()
		out, _ := wire.AppendDecisions(nil, wire.Binary, ds)
		w.Header().Set("Content-Type", wire.ContentTypeBinary)
		w.Write(out)
	}))
	return f
}

// serveOn serves h on addr (host:port; port 0 picks one) until the test
// ends.
func serveOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func (f *fakeReplica) ids() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.seen {
		out[k] = v
	}
	return out
}

type env struct {
	p  *pipeline.Pipeline
	cl *kgo.Client
}

func setup(t *testing.T) *env {
	t.Helper()
	p, err := pipeline.Parse([]byte(testYAML))
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p.Kafka.Brokers = []string{b.Addr()}
	return &env{p: p, cl: testsupport.KafkaClient(t, kgo.SeedBrokers(b.Addr()))}
}

// produce writes n envelope records with ids m0..m(n-1), plus raw ones when
// raw is set (the value is the 4 sample bytes, the id from the key).
func (e *env) produce(t *testing.T, n int, prefix string) {
	t.Helper()
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		m := wire.Message{ID: fmt.Sprintf("%s%d", prefix, i), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, byte(i)}}}
		rec, err := records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		rec.Partition = int32(i % 3)
		recs = append(recs, rec)
	}
	if err := e.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (e *env) start(t *testing.T, replicas ...*fakeReplica) (*Connector, context.CancelFunc, <-chan error) {
	t.Helper()
	var urls []string
	for _, r := range replicas {
		urls = append(urls, r.srv.URL)
	}
	c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: urls, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := e.run(t, c)
	return c, cancel, done
}

// run runs c until the test ends.
func (e *env) run(t *testing.T, c *Connector) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		done <- c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("connector did not stop")
		}
	})
	return cancel, done
}

// lag is the group's total lag on the edge topic (never-committed
// partitions count in full).
func (e *env) lag(t *testing.T) int64 {
	return groupLag(t, e.cl, e.p.ConsumerGroup("edge"), "t.edge.in")
}

// groupLag is group's total lag on topic, -1 before the group joined.
func groupLag(t *testing.T, cl *kgo.Client, group, topic string) int64 {
	adm := kadm.NewClient(cl)
	lags, err := adm.Lag(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range lags {
		// A group that has not joined yet reports no partitions: that is
		// not "no lag".
		if l.Error() != nil || len(l.Lag[topic]) == 0 {
			return -1
		}
		for _, pl := range l.Lag[topic] {
			total += pl.Lag
		}
	}
	if len(lags) == 0 {
		return -1
	}
	return total
}

func TestDeliversAllAndCommits(t *testing.T) {
	e := setup(t)
	a, b := newFakeReplica(t, nil), newFakeReplica(t, nil)
	e.produce(t, 300, "m")
	e.start(t, a, b)
	testsupport.WaitFor(t, 15*time.Second, "all records invoked and committed", func() bool {
		return len(a.ids())+len(b.ids()) >= 300 && e.lag(t) == 0
	})
	seen := map[string]int{}
	for _, r := range []*fakeReplica{a, b} {
		for id, n := range r.ids() {
			seen[id] += n
		}
	}
	for i := 0; i < 300; i++ {
		if n := seen[fmt.Sprintf("m%d", i)]; n != 1 {
			t.Errorf("m%d invoked %d times", i, n)
		}
	}
	if a.calls.Load() == 0 || b.calls.Load() == 0 {
		t.Errorf("calls a=%d b=%d: want both replicas used", a.calls.Load(), b.calls.Load())
	}
	if calls := a.calls.Load() + b.calls.Load(); calls >= 300 {
		t.Errorf("%d calls for 300 records: not batched", calls)
	}
}

// TestBatchesBacklogWithoutWaiting: with max_wait 0 (the default) a lone
// record goes at once, and a backlog still travels in batches because
// records queue while every replica slot is busy.
func TestBatchesBacklogWithoutWaiting(t *testing.T) {
	e := setup(t)
	e.p.Tiers[0].Connector.MaxWait = 0
	slow := func([]wire.Message) (int, string) { time.Sleep(5 * time.Millisecond); return 200, "" }
	a := newFakeReplica(t, slow)
	e.start(t, a)
	e.produce(t, 1, "lone")
	testsupport.WaitFor(t, 15*time.Second, "the lone record invoked", func() bool { return len(a.ids()) == 1 })
	e.produce(t, 300, "m")
	testsupport.WaitFor(t, 15*time.Second, "all records invoked and committed", func() bool { return len(a.ids()) >= 301 && e.lag(t) == 0 })
	// One slot-holder per in-flight slot, the rest batched behind them.
	if calls := a.calls.Load(); calls > 150 {
		t.Errorf("%d calls for 301 records: the backlog was not batched", calls)
	}
}

// TestRetriesOnAnotherReplica: one replica always fails with 503; every
// record still gets through the other.
func TestRetriesOnAnotherReplica(t *testing.T) {
	e := setup(t)
	bad := newFakeReplica(t, func([]wire.Message) (int, string) { return 503, "overloaded" })
	good := newFakeReplica(t, nil)
	e.produce(t, 100, "m")
	e.start(t, bad, good)
	testsupport.WaitFor(t, 15*time.Second, "all records through the good replica", func() bool { return len(good.ids()) == 100 && e.lag(t) == 0 })
	if bad.calls.Load() == 0 {
		t.Error("the failing replica was never tried")
	}
}

// TestDeadLetters: an undecodable record, a record whose id breaks the id
// rule and a record the function rejects go to the DLQ with reasons;
// everything else is invoked.
func TestDeadLetters(t *testing.T) {
	e := setup(t)
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		for i, m := range msgs {
			if m.ID == "m7" {
				return 400, fmt.Sprintf(`{"error":"1 of %d messages rejected","rejected":[{"index":%d,"id":"m7","reason":"tensor has NaN"}]}`, len(msgs), i)
			}
		}
		return 200, ""
	})
	e.produce(t, 20, "m")
	if err := e.cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t.edge.in", Value: []byte("garbage!")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A raw sample a device produced with an id over 128 bytes.
	longID := &kgo.Record{Topic: "t.edge.in", Value: []byte{1, 2, 3, 4}, Headers: []kgo.RecordHeader{{Key: wire.HeaderID, Value: bytes.Repeat([]byte("x"), 200)}}}
	if err := e.cl.ProduceSync(context.Background(), longID).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	ids := rep.ids()
	if len(ids) != 19 || ids["m7"] != 0 {
		t.Errorf("invoked %d ids (m7: %d), want 19 without m7", len(ids), ids["m7"])
	}
	dlq := consumeAll(t, e, "t.edge.dlq", 3)
	reasons := map[string]string{}
	for _, r := range dlq {
		for _, h := range r.Headers {
			if h.Key == wire.HeaderReason {
				reasons[string(r.Value[:min(8, len(r.Value))])] = string(h.Value)
			}
		}
	}
	var joined []string
	for _, v := range reasons {
		joined = append(joined, v)
	}
	all := strings.Join(joined, " | ")
	if !strings.Contains(all, "undecodable record: raw value has 8 bytes, want 4") || !strings.Contains(all, "tensor has NaN") ||
		!strings.Contains(all, "invalid id: record id (ddnn-id header): 200 bytes, over the limit of 128") {
		t.Errorf("dead-letter reasons: %s", all)
	}
}

func consumeAll(t *testing.T, e *env, topic string, n int) []*kgo.Record {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(e.p.Kafka.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // stop fetching now: callers may consume again
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d records from %s", len(out), n, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// TestNoCommitPastUnfinished holds one record in a replica and checks the
// group's committed offset on its partition stops before it, then catches up
// once it is released.
func TestNoCommitPastUnfinished(t *testing.T) {
	e := setup(t)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var held atomic.Bool
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		for _, m := range msgs {
			if m.ID == "m0" && !held.Load() {
				held.Store(true)
				<-release
			}
		}
		return 200, ""
	})
	e.produce(t, 60, "m")
	e.start(t, rep)
	// m0 is on partition 0 at offset 0; its batch (at most 8) is held.
	// Wait until everything else is done.
	testsupport.WaitFor(t, 15*time.Second, "the other records invoked", func() bool { return len(rep.ids()) >= 60-8 })
	time.Sleep(1200 * time.Millisecond) // two commit rounds
	adm := kadm.NewClient(e.cl)
	offs, err := adm.FetchOffsets(context.Background(), e.p.ConsumerGroup("edge"))
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("t.edge.in", 0); ok && o.At > 0 {
		t.Errorf("partition 0 committed at %d while offset 0 is unfinished", o.At)
	}
	unblock()
	testsupport.WaitFor(t, 15*time.Second, "lag 0 after release", func() bool { return e.lag(t) == 0 })
}

// TestGracefulStop stops the connector with records flowing: Run returns,
// and what was committed was invoked.
func TestGracefulStop(t *testing.T) {
	e := setup(t)
	rep := newFakeReplica(t, func([]wire.Message) (int, string) {
		time.Sleep(5 * time.Millisecond)
		return 200, ""
	})
	e.produce(t, 500, "m")
	_, cancel, done := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "some progress", func() bool { return len(rep.ids()) > 50 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	adm := kadm.NewClient(e.cl)
	offs, err := adm.FetchOffsets(context.Background(), e.p.ConsumerGroup("edge"))
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed == 0 || committed > int64(len(rep.ids())) {
		t.Errorf("committed %d records, invoked %d", committed, len(rep.ids()))
	}
	// A new connector picks up the rest: every record ends up invoked.
	e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "the rest after restart", func() bool { return len(rep.ids()) == 500 && e.lag(t) == 0 })
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt < 12; attempt++ {
		d := backoff(10*time.Millisecond, 100*time.Millisecond, attempt)
		want := min(10*time.Millisecond<<(attempt-1), 100*time.Millisecond)
		if d < want/2 || d > want {
			t.Errorf("attempt %d: %s not in [%s, %s]", attempt, d, want/2, want)
		}
	}
}

func TestPoolUpdate(t *testing.T) {
	p := newPool([]string{"a", "b"}, 2)
	ctx := context.Background()
	ra, _ := p.acquire(ctx, nil, "") // a or b, whichever has fewer
	added, removed := p.update([]string{"b", "c"})
	if added != 1 || removed != 1 {
		t.Fatalf("added %d removed %d", added, removed)
	}
	// a (if it was acquired) stays until released but gets no new calls.
	for i := 0; i < 3; i++ {
		r, err := p.acquire(ctx, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.url == "a" {
			t.Fatal("removed replica got a new call")
		}
	}
	p.release(ra, true, true, 0)
	urls := map[string]bool{}
	for _, u := range p.live() {
		urls[u] = true
	}
	if urls["a"] || !urls["b"] || !urls["c"] || len(p.reps) != 2 {
		t.Errorf("pool after update and release: %v", urls)
	}
	// A replica that comes back is used again.
	if added, _ := p.update([]string{"a", "b", "c"}); added != 1 || p.size() != 3 {
		t.Errorf("re-add: added %d, size %d", added, p.size())
	}
}

// TestFollowsReplicaSet: a connector reading its replicas from a URL sends
// only to the replicas listed, and a new one gets traffic once listed.
func TestFollowsReplicaSet(t *testing.T) {
	e := setup(t)
	a, b := newFakeReplica(t, nil), newFakeReplica(t, nil)
	var mu sync.Mutex
	listed := []string{a.srv.URL}
	list := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, u := range listed {
			out = append(out, fmt.Sprintf(`{"url":%q}`, u))
		}
		fmt.Fprintf(w, "[%s]", strings.Join(out, ","))
	}))
	t.Cleanup(list.Close)
	c, err := New(Config{Pipeline: e.p, Tier: "edge", ReplicasURL: list.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.produce(t, 50, "x")
	testsupport.WaitFor(t, 15*time.Second, "first batch on a", func() bool { return len(a.ids()) == 50 })
	mu.Lock()
	listed = []string{b.srv.URL}
	mu.Unlock()
	testsupport.WaitFor(t, 15*time.Second, "pool switched", func() bool { l := c.pool.live(); return len(l) == 1 && l[0] == b.srv.URL })
	e.produce(t, 50, "y")
	testsupport.WaitFor(t, 15*time.Second, "second batch on b", func() bool { return len(b.ids()) == 50 })
	if n := len(a.ids()); n != 50 {
		t.Errorf("a got %d calls after it left the set", n-50)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
