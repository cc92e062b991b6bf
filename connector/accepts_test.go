package connector

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Producers of the cloud tier's forwards in the tests below: two models
// of the edge tier.
var (
	edgeV1 = wire.ModelVersion{SHA: "0123456789ab", Version: "v1"}
	edgeV2 = wire.ModelVersion{SHA: "fedcba987654", Version: "v2"}
)

// acceptingReplica is a fake replica whose model accepts forwards of
// producer only: others it answers httpapi.StatusNotAccepted, as an
// inference function does.
func acceptingReplica(t *testing.T, producer wire.ModelVersion) *fakeReplica {
	f := newFakeReplica(t, nil)
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get(httpapi.HeaderProducer); got != producer.String() {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(httpapi.StatusNotAccepted)
			fmt.Fprintf(w, `{"error":"accepts %s, not %s"}`, producer, got)
			return
		}
		inner.ServeHTTP(w, r)
	})
	return f
}

// produceForwards writes n forwards of producer to the cloud tier's input,
// each with the hop the edge's connector writes (records.HeaderHops).
func (e *env) produceForwards(t *testing.T, n int, prefix string, producer wire.ModelVersion) {
	t.Helper()
	var recs []*kgo.Record
	hops := records.NewHopAppender("edge", "127.0.0.1:1", producer, n)
	for i := range n {
		m := wire.Message{ID: fmt.Sprintf("%s%d", prefix, i), Tensor: wire.Float32TensorOf([]int{2}, []float32{1, float32(i)})}
		rec, err := records.Message(records.Destination{Topic: "t.cloud.in"}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		hops.Add(rec, &kgo.Record{}, false, &records.HopDecision{FetchedAt: time.Now()})
		rec.Partition = int32(i % 3)
		recs = append(recs, rec)
	}
	if err := e.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// replicaList serves a replica list the test changes, as ddnn up does.
type replicaList struct {
	mu   sync.Mutex
	urls []string
	srv  *httptest.Server
}

func newReplicaList(t *testing.T, urls ...string) *replicaList {
	l := &replicaList{urls: urls}
	// Only the tier's list: the connector also reads a canary list
	// beside it, which is not found here (no canary), as under ddnn up.
	mux := http.NewServeMux()
	l.srv = httptest.NewServer(mux)
	mux.HandleFunc(httpapi.ReplicasPattern, func(w http.ResponseWriter, _ *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		var out []string
		for _, u := range l.urls {
			out = append(out, fmt.Sprintf(`{"url":%q}`, u))
		}
		fmt.Fprintf(w, "[%s]", strings.Join(out, ","))
	})
	t.Cleanup(l.srv.Close)
	return l
}

func (l *replicaList) set(urls ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.urls = urls
}

// TestForwardsGoToReplicasThatAcceptThem: while a tier runs replicas of
// two models side by side (a rollout whose new model does not read the
// old forwards), each forward is read only by a replica that accepts its
// producer; one that no replica accepts waits, uncommitted and not
// dead-lettered, until one runs. Nothing is lost.
func TestForwardsGoToReplicasThatAcceptThem(t *testing.T) {
	e := setup(t)
	old := acceptingReplica(t, edgeV1)
	fresh := acceptingReplica(t, edgeV2)
	list := newReplicaList(t, old.srv.URL, fresh.srv.URL)
	reg := prometheus.NewRegistry()
	c, err := New(Config{Pipeline: e.p, Tier: "cloud", ReplicasURL: list.srv.URL + httpapi.ReplicasPath("cloud"), Registerer: reg, DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, c)

	e.produceForwards(t, 100, "a", edgeV1)
	e.produceForwards(t, 100, "b", edgeV2)
	testsupport.WaitFor(t, 15*time.Second, "every forward read", func() bool { return len(old.ids())+len(fresh.ids()) == 200 })
	for id := range old.ids() {
		if !strings.HasPrefix(id, "a") {
			t.Fatalf("the replica accepting %s read %s, a forward of another model", edgeV1, id)
		}
	}
	for id := range fresh.ids() {
		if !strings.HasPrefix(id, "b") {
			t.Fatalf("the replica accepting %s read %s, a forward of another model", edgeV2, id)
		}
	}
	if len(old.ids()) != 100 || len(fresh.ids()) != 100 {
		t.Fatalf("read %d of %s and %d of %s, want 100 each", len(old.ids()), edgeV1, len(fresh.ids()), edgeV2)
	}

	// The old model's replicas leave; its forwards wait for one that
	// accepts them.
	list.set(fresh.srv.URL)
	testsupport.WaitFor(t, 5*time.Second, "old replica left", func() bool { return len(c.pool.live()) == 1 })
	e.produceForwards(t, 30, "c", edgeV1)
	testsupport.WaitFor(t, 10*time.Second, "forwards waiting", func() bool { return testutil.ToFloat64(c.m.awaitingAccept) > 0 })
	if testutil.ToFloat64(c.m.notAccepted) == 0 {
		t.Error("no call was answered not-accepted, yet the forwards wait")
	}
	if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
		t.Fatalf("%v forwards dead-lettered while no replica accepted them", n)
	}
	list.set(fresh.srv.URL, old.srv.URL)
	testsupport.WaitFor(t, 15*time.Second, "waiting forwards read once a replica accepts them", func() bool { return len(old.ids()) == 130 })
	testsupport.WaitFor(t, 15*time.Second, "committed to the end", func() bool {
		return groupLag(t, e.cl, e.p.ConsumerGroup("cloud"), "t.cloud.in") == 0
	})
	if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
		t.Errorf("%v forwards dead-lettered", n)
	}
}

// TestForwardsOfACandidatePairGoToTheNextCandidate: with a canary on the
// previous tier whose forwards only this tier's candidate reads (a pair
// of candidates of another forward width), each forward is read by a
// model that accepts it, whichever share its id falls in: the current
// replicas' refusal sends a candidate's forward to this tier's
// candidate, and the candidate's refusal sends a current model's
// forward to the current replicas. Nothing is dead-lettered or lost.
func TestForwardsOfACandidatePairGoToTheNextCandidate(t *testing.T) {
	e := setup(t)
	e.p.Tiers[1].Canary = &pipeline.Canary{Model: "c2.onnx", Share: 0.5}
	current := acceptingReplica(t, edgeV1)
	candidate := acceptingReplica(t, edgeV2)
	url := replicaLists(t, "cloud", func() []string { return []string{current.srv.URL} }, func() []string { return []string{candidate.srv.URL} })
	c, err := New(Config{Pipeline: e.p, Tier: "cloud", ReplicasURL: url, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, c)
	e.produceForwards(t, 200, "cur", edgeV1)
	e.produceForwards(t, 200, "cand", edgeV2)
	testsupport.WaitFor(t, 20*time.Second, "every forward read", func() bool { return len(current.ids())+len(candidate.ids()) == 400 })
	for id := range current.ids() {
		if !strings.HasPrefix(id, "cur") {
			t.Errorf("the current replica read %s, a forward of the previous tier's candidate", id)
		}
	}
	for id := range candidate.ids() {
		if !strings.HasPrefix(id, "cand") {
			t.Errorf("the candidate read %s, a forward of the previous tier's current model", id)
		}
	}
	testsupport.WaitFor(t, 15*time.Second, "committed to the end", func() bool {
		return groupLag(t, e.cl, e.p.ConsumerGroup("cloud"), "t.cloud.in") == 0
	})
	if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
		t.Errorf("%v forwards dead-lettered", n)
	}
}

// TestForwardsNoReplicaAcceptsWaitBesideACanary: with a canary set on the
// tier but no candidate replica listed, forwards the current replicas
// refuse wait for one that accepts them (not for a candidate that is not
// there), and are read once it is listed.
func TestForwardsNoReplicaAcceptsWaitBesideACanary(t *testing.T) {
	e := setup(t)
	e.p.Tiers[1].Canary = &pipeline.Canary{Model: "c2.onnx", Share: 0.5}
	refusing, accepting := acceptingReplica(t, edgeV2), acceptingReplica(t, edgeV1)
	var mu sync.Mutex
	current := []string{refusing.srv.URL}
	url := replicaLists(t, "cloud", func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(current) }, func() []string { return nil })
	c, err := New(Config{Pipeline: e.p, Tier: "cloud", ReplicasURL: url, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, c)
	e.produceForwards(t, 50, "w", edgeV1)
	testsupport.WaitFor(t, 10*time.Second, "forwards waiting for an accepting replica", func() bool { return testutil.ToFloat64(c.m.awaitingAccept) > 0 })
	mu.Lock()
	current = append(current, accepting.srv.URL)
	mu.Unlock()
	testsupport.WaitFor(t, 15*time.Second, "the waiting forwards read once a replica accepts them", func() bool { return len(accepting.ids()) == 50 })
	if n := len(refusing.ids()); n != 0 {
		t.Errorf("the refusing replica read %d forwards", n)
	}
	if n := testutil.ToFloat64(c.m.deadLetters); n != 0 {
		t.Errorf("%v forwards dead-lettered", n)
	}
}
