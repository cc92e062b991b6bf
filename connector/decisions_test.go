package connector

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// newDecidingReplica answers like an inference function of tier, with
// decide's decision for each message, naming testModel.
func newDecidingReplica(t *testing.T, tier string, decide func(m *wire.Message) wire.Decision) *fakeReplica {
	t.Helper()
	return newReplicaNaming(t, tier, testModel, decide)
}

// newReplicaNaming is newDecidingReplica naming model in its answers
// (httpapi.HeaderModel).
func newReplicaNaming(t *testing.T, tier, model string, decide func(m *wire.Message) wire.Decision) *fakeReplica {
	t.Helper()
	f := &fakeReplica{seen: map[string]int{}}
	f.srv = serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		msgs, err := wire.DecodeMessages(wire.Binary, b)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ds := make([]wire.Decision, len(msgs))
		f.mu.Lock()
		for i := range msgs {
			f.seen[msgs[i].ID]++
			ds[i] = decide(&msgs[i])
			ds[i].ID, ds[i].Tier = msgs[i].ID, tier
		}
		f.mu.Unlock()
		out, err := wire.AppendDecisions(nil, wire.Binary, ds)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", wire.ContentTypeBinary)
		w.Header().Set(httpapi.HeaderModel, model)
		w.Write(out)
	}))
	return f
}

// testModel is the model version newDecidingReplica's answers name
// (a sha256 prefix and a version label).
const testModel = "0123456789ab@v2"

// checkHop checks that rec carries one hop (records.HeaderHops) of tier
// by rep, with the decision and confidence d, fetched after before.
func checkHop(t *testing.T, rec *kgo.Record, tier string, rep *fakeReplica, d wire.Decision, before time.Time) {
	t.Helper()
	hs, err := records.ReadHops(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 {
		t.Fatalf("record %s/%d carries hops %+v, want one", rec.Topic, rec.Offset, hs)
	}
	h := hs[0]
	if h.Tier != tier || "http://"+h.Replica != rep.srv.URL || h.Model.String() != testModel || h.Exit != d.Exit || h.Confidence != d.Confidence {
		t.Errorf("hop %+v, want tier %s, replica %s, model %s, exit %v, confidence %v", h, tier, rep.srv.URL, testModel, d.Exit, d.Confidence)
	}
	if h.FetchedAt.Before(before.Truncate(time.Millisecond)) || h.KafkaWait < 0 || h.Service <= 0 {
		t.Errorf("hop %+v: fetched before the test produced, or no service time", h)
	}
}

// exitOrForward exits messages whose last sample byte is even and
// forwards the others with a two-element tensor.
func exitOrForward(m *wire.Message) wire.Decision {
	if m.Tensor.Data[3]%2 == 0 {
		return wire.Decision{Exit: true, Class: 1, Label: "b", Confidence: 0.9}
	}
	fw := wire.Float32Tensor([]int{2}, []float32{1, float32(m.Tensor.Data[3])})
	return wire.Decision{Confidence: 0.2, Forward: &fw}
}

// TestDecisionsGoWhereTheyBelong: the connector writes what its tier
// decided: exits as results on the results topic, forwards as messages
// for the next tier's input topic, each with the tier's hop, the sample's
// send time and device, and the forward tensor as the function answered
// it; then it commits.
func TestDecisionsGoWhereTheyBelong(t *testing.T) {
	e := setup(t)
	rep := newDecidingReplica(t, "edge", exitOrForward)
	e.produce(t, 40, "m")
	before := time.Now()
	c, _, _ := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	results := consumeAll(t, e, "t.results", 20)
	for _, r := range results {
		res, err := records.DecodeResult(r)
		if err != nil {
			t.Fatal(err)
		}
		if res.Model != (wire.ModelVersion{SHA: "0123456789ab", Version: "v2"}) {
			t.Errorf("result %s: model %+v, want the replica's %s", res.ID, res.Model, testModel)
		}
		if res.Tier != "edge" || res.Label != "b" || len(res.Hops) != 1 || res.Hops[0].Tier != "edge" || res.Hops[0].At.Before(before.Add(-time.Second)) || res.ExitedAt.Before(res.Hops[0].At) {
			t.Errorf("result %+v", res)
		}
		if len(r.Headers) != 1 {
			t.Errorf("result %s carries headers %v, want its hops alone on its own site", res.ID, r.Headers)
		}
		checkHop(t, r, "edge", rep, wire.Decision{Exit: true, Confidence: 0.9}, before)
	}
	fwds := consumeAll(t, e, "t.cloud.in", 20)
	for _, r := range fwds {
		m, err := records.DecodeMessage(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Route != "cloud" || len(m.Hops) != 1 || m.Hops[0].Tier != "edge" || m.Tensor.DType != wire.Float32 || m.Tensor.Len() != 2 {
			t.Errorf("forward %+v", m)
		}
		checkHop(t, r, "edge", rep, wire.Decision{Confidence: 0.2}, before)
	}
	if n := testutil.ToFloat64(c.m.decisionRecords.WithLabelValues(kindResults)); n != 20 {
		t.Errorf("results counted %v, want 20", n)
	}
	if n := testutil.ToFloat64(c.m.decisionRecords.WithLabelValues(kindForwards)); n != 20 {
		t.Errorf("forwards counted %v, want 20", n)
	}
	if n := testutil.CollectAndCount(c.m.e2e); n != 1 {
		t.Errorf("e2e latency series %d", n)
	}
	e.checkCommittedToEnd(t)
}

// TestReplicaNamingNoModel: a replica whose answers name no model, or
// name one in a form that does not read, has its decisions written all
// the same, their results and hops naming no model.
func TestReplicaNamingNoModel(t *testing.T) {
	for _, named := range []string{"", "not,a;model", "0123456789ab@v 2"} {
		t.Run(named, func(t *testing.T) {
			e := setup(t)
			rep := newReplicaNaming(t, "edge", named, exitOrForward)
			e.produce(t, 10, "m")
			e.start(t, rep)
			testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
			for _, r := range consumeAll(t, e, "t.results", 5) {
				res, err := records.DecodeResult(r)
				if err != nil {
					t.Fatal(err)
				}
				hs, err := records.ReadHops(r)
				if err != nil {
					t.Fatal(err)
				}
				if !res.Model.IsZero() || len(hs) != 1 || !hs[0].Model.IsZero() {
					t.Errorf("result %+v with hops %+v, want no model named", res, hs)
				}
			}
		})
	}
}

// TestDecisionsForAnotherSiteGoToTheUplinkQueue: a tier whose next tier
// and results are on another site writes both to the queue of the link
// there, with the route the uplink delivers them by.
func TestDecisionsForAnotherSiteGoToTheUplinkQueue(t *testing.T) {
	le := setupLink(t)
	p := le.p
	edge, err := p.OnSite("edge")
	if err != nil {
		t.Fatal(err)
	}
	rep := newDecidingReplica(t, "edge", exitOrForward)
	var recs []*kgo.Record
	for i := range 10 {
		m := wire.Message{ID: "s" + string(rune('0'+i)), Device: "cam", Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, byte(i)}}}
		rec, err := records.Message(records.Destination{Topic: p.InputTopic("edge")}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := le.edge.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Pipeline: p, Tier: "edge", Replicas: []string{rep.srv.URL}, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, c)
	routes := map[string]int{}
	for _, r := range consumeAllFrom(t, edge.Kafka.Brokers, p.UplinkTopic("cloud"), 10) {
		tier, results, err := records.Route(r)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case results:
			_, err = records.DecodeResult(r)
		default:
			var m wire.Message
			m, err = records.DecodeMessage(r, nil)
			if err == nil && (m.Route != tier || m.Device != "cam" || string(r.Key) != "cam") {
				t.Errorf("forward %+v (key %q) on route %q", m, r.Key, tier)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		routes[tier]++
	}
	if routes[""] != 5 || routes["cloud"] != 5 {
		t.Errorf("routes %v, want 5 results and 5 for tier cloud", routes)
	}
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return groupLag(t, le.edge, p.ConsumerGroup("edge"), p.InputTopic("edge")) == 0 })
	if n := testutil.ToFloat64(c.m.decisionRecords.WithLabelValues(kindUplink)); n != 10 {
		t.Errorf("uplink records counted %v, want 10", n)
	}
}

// runUntilCleanup runs c until the test ends.
func runUntilCleanup(t *testing.T, c *Connector) {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("connector did not stop")
		}
	})
}

// TestDecisionTooLargeIsDeadLettered: a forward whose record would be
// over kafka.max_record_bytes is its source record's fault: that record
// is dead-lettered with the reason, the others flow on.
func TestDecisionTooLargeIsDeadLettered(t *testing.T) {
	e := setup(t)
	e.p.Kafka.MaxRecordBytes = 4096
	rep := newDecidingReplica(t, "edge", func(m *wire.Message) wire.Decision {
		if m.ID == "m7" {
			fw := wire.Float32Tensor([]int{2048}, make([]float32, 2048))
			return wire.Decision{Forward: &fw}
		}
		return wire.Decision{Exit: true, Label: "a", Confidence: 1}
	})
	e.produce(t, 20, "m")
	e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	dl := consumeAll(t, e, "t.edge.dlq", 1)[0]
	m, err := records.DecodeMessage(dl, nil)
	if err != nil || m.ID != "m7" {
		t.Fatalf("dead letter %v (%v), want m7", m.ID, err)
	}
	if reason := header(dl, wire.HeaderReason); !strings.Contains(reason, "over kafka.max_record_bytes 4096") {
		t.Errorf("reason %q", reason)
	}
	if n := len(consumeAll(t, e, "t.results", 19)); n != 19 {
		t.Errorf("%d results, want 19", n)
	}
}

// TestLastTierForwardIsDeadLettered: the last tier must exit every
// sample; a forward from it is a function bug, and its source record is
// dead-lettered with the reason.
func TestLastTierForwardIsDeadLettered(t *testing.T) {
	e := setup(t)
	rep := newDecidingReplica(t, "cloud", func(m *wire.Message) wire.Decision {
		if m.ID == "c3" {
			fw := wire.Float32Tensor([]int{2}, []float32{1, 2})
			return wire.Decision{Forward: &fw}
		}
		return wire.Decision{Exit: true, Label: "a", Confidence: 1}
	})
	var recs []*kgo.Record
	for i := range 6 {
		m := wire.Message{ID: "c" + string(rune('0'+i)), Tensor: wire.Float32Tensor([]int{2}, []float32{1, 2})}
		rec, err := records.Message(records.Destination{Topic: "t.cloud.in"}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := e.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Pipeline: e.p, Tier: "cloud", Replicas: []string{rep.srv.URL}, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, c)
	dl := consumeAll(t, e, "t.cloud.dlq", 1)[0]
	if reason := header(dl, wire.HeaderReason); !strings.Contains(reason, `message c3 from the last tier "cloud"`) {
		t.Errorf("reason %q", reason)
	}
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return groupLag(t, e.cl, e.p.ConsumerGroup("cloud"), "t.cloud.in") == 0 })
	if n := len(consumeAll(t, e, "t.results", 5)); n != 5 {
		t.Errorf("%d results, want 5", n)
	}
}

// TestDecisionsUnackedStayUncommitted: while Kafka does not acknowledge
// the decision records (a broker that fails every produce to the results
// topic), no source record is charged or marked done, nothing is
// committed, and the produces are retried; once Kafka acknowledges again
// every record is written and committed.
func TestDecisionsUnackedStayUncommitted(t *testing.T) {
	e, cluster := setupCluster(t)
	e.p.Kafka.ProduceTimeout = time.Second
	down := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "t.results", Err: kerr.NotEnoughReplicas, Count: -1})
	rep := newFakeReplica(t, nil)
	e.produce(t, 30, "m")
	c, _, _ := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "produce retries", func() bool { return testutil.ToFloat64(c.m.decisionRetries) >= 30 })
	if got := e.lag(t); got != 30 && got != -1 {
		t.Errorf("lag %d while Kafka refuses the decisions, want all 30 uncommitted", got)
	}
	if n := c.offsets.Pending(); n != 30 {
		t.Errorf("%d records pending, want 30", n)
	}
	if n := testutil.ToFloat64(c.m.deadLetters) + testutil.ToFloat64(c.m.exhausts); n != 0 {
		t.Errorf("%v records dead-lettered or charged for Kafka being down", n)
	}
	down.Remove()
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	ids := map[string]int{}
	for _, r := range consumeAll(t, e, "t.results", 30) {
		res, err := records.DecodeResult(r)
		if err != nil {
			t.Fatal(err)
		}
		ids[res.ID]++
	}
	if miss := missing(ids, "m", 30); len(miss) > 0 {
		t.Errorf("results missing: %v", miss)
	}
	e.checkCommittedToEnd(t)
}

// TestDecisionsAnsweredWrongAreCharged: an answer whose decisions are
// not the batch's (another count) is the function failing the call: it
// is charged to the records and, alone and exhausted, they go to the DLQ.
func TestDecisionsAnsweredWrongAreCharged(t *testing.T) {
	e := setup(t)
	e.p.Tiers[0].Connector.MaxAttempts = 2
	f := &fakeReplica{seen: map[string]int{}}
	f.srv = serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := wire.AppendDecisions(nil, wire.Binary, nil)
		w.Write(out)
	}))
	e.produce(t, 3, "m")
	c, _, _ := e.start(t, f)
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })
	dls := consumeAll(t, e, "t.edge.dlq", 3)
	if reason := header(dls[0], wire.HeaderReason); !strings.Contains(reason, "0 decisions for 1 messages") {
		t.Errorf("reason %q", reason)
	}
	if n := testutil.ToFloat64(c.m.exhausts); n != 3 {
		t.Errorf("exhausted %v, want 3", n)
	}
}
