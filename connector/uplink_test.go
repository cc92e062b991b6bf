package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// sitesYAML runs the edge tier on site edge and the cloud tier and the
// results on site cloud, so the edge -> cloud link carries both forwards
// and results.
const sitesYAML = `
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
sites:
  - {name: edge, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0}, admin: {listen: 127.0.0.1:0}}
  - {name: cloud, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
results: {site: cloud}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - name: cloud
    site: cloud
    model: c.onnx
    exit: {output: o}
    connector: {max_batch: 8, in_flight_per_replica: 2, backoff: 5ms, max_backoff: 50ms, request_timeout: 2s}
kafka: {partitions: 3}
`

// fakeFunnel answers like a site's funnel: 204 for a batch of messages
// for a tier it knows or an array of results, unless behave says
// otherwise. It counts what it took.
type fakeFunnel struct {
	mu       sync.Mutex
	seen     map[string]int // by route and id: "tier:cloud/m1", "results/r1"
	bytes    int
	messages int
	behave   atomic.Pointer[func(route string, ids []string) (int, string)]
	srv      *httptest.Server
}

func newFakeFunnelOn(t *testing.T, addr string) *fakeFunnel {
	t.Helper()
	f := &fakeFunnel{seen: map[string]int{}}
	f.srv = serveOn(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var route string
		var ids []string
		switch {
		case r.URL.Path == "/v1/results":
			route = wire.RouteResults
			rs, err := wire.DecodeResults(b)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			for _, res := range rs {
				ids = append(ids, res.ID)
			}
		case r.URL.Path == "/v1/tiers/cloud":
			route = wire.RouteTier("cloud")
			msgs, err := wire.DecodeMessages(wire.Binary, b)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			for _, m := range msgs {
				ids = append(ids, m.ID)
			}
		default:
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(map[string]string{"error": "no route " + r.URL.Path})
			return
		}
		if behave := f.behave.Load(); behave != nil {
			if code, body := (*behave)(route, ids); code != 0 {
				w.WriteHeader(code)
				io.WriteString(w, body)
				return
			}
		}
		f.mu.Lock()
		for _, id := range ids {
			f.seen[route+"/"+id]++
		}
		f.bytes += len(b)
		f.messages += len(ids)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	return f
}

func (f *fakeFunnel) counts() (seen map[string]int, bytes, messages int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen = map[string]int{}
	for k, v := range f.seen {
		seen[k] = v
	}
	return seen, f.bytes, f.messages
}

// linkEnv is two sites' Kafkas (kfake clusters) and the pipeline whose
// cloud funnel URL is set by the test.
type linkEnv struct {
	p    *pipeline.Pipeline
	edge *kgo.Client // on the edge site's Kafka
}

func setupLink(t *testing.T) *linkEnv {
	t.Helper()
	p, err := pipeline.Parse([]byte(sitesYAML))
	if err != nil {
		t.Fatal(err)
	}
	testsupport.SiteClusters(t, p)
	return &linkEnv{p: p, edge: testsupport.KafkaClient(t, kgo.SeedBrokers(p.SiteList[0].Kafka.Brokers...))}
}

// queue writes n forwards (ids prefix+"m"<i>) and n results (prefix+"r"<i>)
// to the edge site's queue for the cloud, as the edge funnel does.
func (e *linkEnv) queue(t *testing.T, n int, prefix string) {
	t.Helper()
	route := func(r string) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: wire.HeaderRoute, Value: []byte(r)}}
	}
	var recs []*kgo.Record
	for i := range n {
		m := wire.Message{ID: fmt.Sprintf("%sm%d", prefix, i), Route: "cloud", SentAt: time.Now().UTC(),
			Tensor: wire.Float32Tensor([]int{2}, []float32{1, float32(i)})}
		rec, err := records.Message(records.Destination{Topic: "t.uplink.cloud", Route: wire.RouteTier("cloud")}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		res := wire.Result{ID: fmt.Sprintf("%sr%d", prefix, i), Tier: "edge", Label: "a", Confidence: 0.9, ExitedAt: time.Now().UTC()}
		rv, err := wire.AppendResult(nil, &res)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec, &kgo.Record{Topic: "t.uplink.cloud", Value: rv, Headers: route(wire.RouteResults)})
	}
	if err := e.edge.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (e *linkEnv) start(t *testing.T) (*Connector, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Config{Pipeline: e.p, Link: &pipeline.Link{From: "edge", To: "cloud"}, Registerer: reg, DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := c.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("uplink did not stop")
		}
	})
	return c, reg
}

// lag is the uplink group's lag on the edge queue, -1 before it joined.
func (e *linkEnv) lag(t *testing.T) int64 {
	return groupLag(t, e.edge, e.p.UplinkGroup("cloud"), "t.uplink.cloud")
}

// delivered reports whether every forward and result of prefix 0..n-1
// reached f, and the ids seen more than once.
func delivered(f *fakeFunnel, prefix string, n int) (all bool, dups []string) {
	seen, _, _ := f.counts()
	all = true
	for i := range n {
		for _, k := range []string{fmt.Sprintf("tier:cloud/%sm%d", prefix, i), fmt.Sprintf("results/%sr%d", prefix, i)} {
			switch seen[k] {
			case 0:
				all = false
			case 1:
			default:
				dups = append(dups, k)
			}
		}
	}
	return all, dups
}

func linkCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["from"] == "edge" && labels["to"] == "cloud" {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{from=edge,to=cloud}", name)
	return 0
}

// TestUplinkDeliversOnce: with nothing failing, every forward and result
// queued on the edge reaches the cloud's funnel exactly once, on its route,
// batched; the link counters equal what the funnel took; the queue is
// committed.
func TestUplinkDeliversOnce(t *testing.T) {
	e := setupLink(t)
	f := newFakeFunnelOn(t, "127.0.0.1:0")
	e.p.SiteList[1].Funnel.URL = f.srv.URL
	_, reg := e.start(t)
	e.queue(t, 200, "a")
	testsupport.WaitFor(t, 15*time.Second, "every record delivered and committed", func() bool {
		all, _ := delivered(f, "a", 200)
		return all && e.lag(t) == 0
	})
	if _, dups := delivered(f, "a", 200); len(dups) > 0 {
		t.Errorf("delivered more than once: %v", dups)
	}
	_, bytes, messages := f.counts()
	if messages != 400 {
		t.Errorf("funnel took %d messages, want 400", messages)
	}
	if got := linkCounter(t, reg, "ddnn_link_messages_total"); got != float64(messages) {
		t.Errorf("ddnn_link_messages_total = %v, funnel took %d", got, messages)
	}
	if got := linkCounter(t, reg, "ddnn_link_bytes_total"); got != float64(bytes) {
		t.Errorf("ddnn_link_bytes_total = %v, funnel took %d bytes", got, bytes)
	}
	if got := linkCounter(t, reg, "ddnn_connector_invocations_total"); got >= 400 {
		t.Errorf("%v calls for 400 records: not batched", got)
	}
}

// TestUplinkRemoteDown: the remote funnel unreachable, or failing, for far
// longer than max_attempts backoffs: nothing is dead-lettered, the link is
// marked down, and everything is delivered once the funnel answers again.
func TestUplinkRemoteDown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int // 0: the funnel is not listening
	}{
		{"unreachable", 0},
		{"kafka not acknowledging", http.StatusServiceUnavailable},
		{"failing", http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setupLink(t)
			f := newFakeFunnelOn(t, "127.0.0.1:0")
			addr := f.srv.Listener.Addr().String()
			e.p.SiteList[1].Funnel.URL = f.srv.URL
			c, _ := e.start(t)
			e.queue(t, 20, "a")
			testsupport.WaitFor(t, 15*time.Second, "the first records delivered", func() bool { all, _ := delivered(f, "a", 20); return all })

			if tc.status == 0 {
				f.srv.CloseClientConnections()
				f.srv.Close()
			} else {
				fail := func(string, []string) (int, string) { return tc.status, `{"error":"kafka did not acknowledge"}` }
				f.behave.Store(&fail)
			}
			e.queue(t, 100, "b")
			testsupport.WaitFor(t, 15*time.Second, "the link marked down", func() bool { return testutil.ToFloat64(c.m.down) == 1 })
			time.Sleep(time.Second) // longer than max_attempts backoffs: nothing may be charged
			if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
				t.Fatalf("%v records dead-lettered during the outage", n)
			}

			if tc.status == 0 {
				f = newFakeFunnelOn(t, addr)
			} else {
				f.behave.Store(nil)
			}
			testsupport.WaitFor(t, 15*time.Second, "every record delivered after the funnel came back", func() bool {
				all, _ := delivered(f, "b", 100)
				return all && e.lag(t) == 0
			})
			if testutil.ToFloat64(c.m.down) != 0 {
				t.Error("link still marked down")
			}
			if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
				t.Errorf("%v records dead-lettered", n)
			}
		})
	}
}

// TestUplinkRefused: what the remote funnel refuses (4xx) and records that
// are not an uplink's go to the link's dead-letter topic on the sending
// site, with the reason; the rest is delivered.
func TestUplinkRefused(t *testing.T) {
	e := setupLink(t)
	f := newFakeFunnelOn(t, "127.0.0.1:0")
	e.p.SiteList[1].Funnel.URL = f.srv.URL
	refuse := func(route string, ids []string) (int, string) {
		for _, id := range ids {
			if id == "am3" {
				return http.StatusBadRequest, `{"error":"message 0: tensor has NaN"}`
			}
		}
		return 0, ""
	}
	f.behave.Store(&refuse)
	e.queue(t, 3, "a")
	_, reg := e.start(t)
	testsupport.WaitFor(t, 15*time.Second, "the first records delivered", func() bool { all, _ := delivered(f, "a", 3); return all })
	e.queue(t, 4, "a") // am0..am3 again: am3 is refused
	bad := []*kgo.Record{
		{Topic: "t.uplink.cloud", Value: []byte("x")},
		{Topic: "t.uplink.cloud", Value: []byte("x"), Headers: []kgo.RecordHeader{{Key: wire.HeaderRoute, Value: []byte("tier:moon")}}},
	}
	if err := e.edge.ProduceSync(context.Background(), bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dl := consumeAllFrom(t, e.p.SiteList[0].Kafka.Brokers, "t.uplink.cloud.dlq", 3)
	var reasons []string
	for _, r := range dl {
		reasons = append(reasons, header(r, wire.HeaderReason))
	}
	all := strings.Join(reasons, " | ")
	for _, want := range []string{
		"funnel answered 400: message 0: tensor has NaN",
		`undecodable record: header ddnn-route: "" is neither "results" nor "tier:"<tier>`,
		`undecodable record: header ddnn-route: no tier "moon"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("dead-letter reasons %q lack %q", all, want)
		}
	}
	testsupport.WaitFor(t, 15*time.Second, "the queue committed", func() bool { return e.lag(t) == 0 })
	// 7 forwards and 7 results less am3: its batch was split until it
	// was alone, its companions delivered.
	if _, _, messages := f.counts(); messages != 13 {
		t.Errorf("funnel took %d messages, want 13", messages)
	}
	if got := linkCounter(t, reg, "ddnn_link_messages_total"); got != 13 {
		t.Errorf("ddnn_link_messages_total = %v, want 13", got)
	}
	if len(dl) != 3 {
		t.Errorf("%d dead letters, want 3", len(dl))
	}
}

func consumeAllFrom(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	return consumeAll(t, &env{p: &pipeline.Pipeline{Kafka: pipeline.Kafka{Brokers: brokers}}}, topic, n)
}

// TestBatchFlushesEveryRoute: a batch that fills up on one route must not
// leave another route's partial batch waiting when no more records come.
func TestBatchFlushesEveryRoute(t *testing.T) {
	e := setupLink(t)
	f := newFakeFunnelOn(t, "127.0.0.1:0")
	e.p.SiteList[1].Funnel.URL = f.srv.URL
	e.p.Tiers[1].Connector.MaxBatch = 2
	c, err := New(Config{Pipeline: e.p, Link: &pipeline.Link{From: "edge", To: "cloud"}})
	if err != nil {
		t.Fatal(err)
	}
	c.work = context.Background()
	res := wire.Result{ID: "r", Tier: "edge"}
	fwd := func(id string) item {
		return item{rec: &kgo.Record{}, route: wire.RouteTier("cloud"), msg: wire.Message{ID: id, Tensor: wire.Float32Tensor([]int{1}, []float32{1})}}
	}
	items := make(chan item, 3)
	items <- item{rec: &kgo.Record{}, route: wire.RouteResults, result: &res}
	items <- fwd("m0")
	items <- fwd("m1") // fills the forwards' batch; nothing follows
	done := make(chan struct{})
	go func() { defer close(done); c.batch(items) }()
	defer func() { close(items); <-done; c.inflight.Wait() }()
	testsupport.WaitFor(t, 15*time.Second, "both routes delivered", func() bool {
		seen, _, _ := f.counts()
		return seen["results/r"] == 1 && seen["tier:cloud/m0"] == 1 && seen["tier:cloud/m1"] == 1
	})
}

// TestTierConsumesItsSitesKafka: the connector of a tier on the cloud site
// of a two-site pipeline, given the whole pipeline, consumes the cloud
// site's Kafka: the pipeline-wide kafka section names no brokers there.
func TestTierConsumesItsSitesKafka(t *testing.T) {
	e := setupLink(t)
	cloud := testsupport.KafkaClient(t, kgo.SeedBrokers(e.p.SiteList[1].Kafka.Brokers...))
	m := wire.Message{ID: "c0", Route: "cloud", SentAt: time.Now().UTC(), Tensor: wire.Float32Tensor([]int{2}, []float32{1, 2})}
	rec, err := records.Message(records.Destination{Topic: e.p.InputTopic("cloud")}, wire.Binary, &m)
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep := newFakeReplica(t, nil)
	c, err := New(Config{Pipeline: e.p, Tier: "cloud", Replicas: []string{rep.srv.URL}, DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("connector did not stop")
		}
	}()
	testsupport.WaitFor(t, 15*time.Second, "the cloud replica gets c0 from the cloud site's Kafka", func() bool { return rep.ids()["c0"] == 1 })
}
