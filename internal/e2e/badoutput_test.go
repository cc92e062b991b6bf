package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestModelOverflowDeadLetteredAtOnce puts a forged record on the fog's
// topic whose forward tensor is 3e38 everywhere: finite, so it passes the
// input checks, but it drives the shipped fog model to NaN. The real fog
// function behind a real connector must treat that as the record's fault:
// it reaches the DLQ with the reason after one call, no call is retried,
// and the tier is never marked down; a good record beside it is served.
// So does a record carrying 20,000 forged hops. It runs in process (the
// connector's own tests have only fake replicas, which cannot show what
// the real function answers).
func TestModelOverflowDeadLetteredAtOnce(t *testing.T) {
	if _, err := onnx.Init(""); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(filepath.Join(root(t), "deploy/pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p.Kafka.Brokers = []string{b.Addr()}

	// The fog replica: the shipped model behind the function's handler,
	// counting the calls each record is in.
	_, fogIndex, err := p.Tier("fog")
	if err != nil {
		t.Fatal(err)
	}
	f, err := inference.New(inference.Config{Pipeline: p, Tier: "fog"})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := inference.NewSession(p, fogIndex, inference.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	if err := f.SetSession(sess); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	h := f.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if enc, err := wire.EncodingFor(r.Header.Get("Content-Type")); err == nil {
			if msgs, err := wire.DecodeMessages(enc, body); err == nil {
				mu.Lock()
				for _, m := range msgs {
					calls[m.ID]++
				}
				mu.Unlock()
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	reg := prometheus.NewRegistry()
	logs := &testsupport.Buffer{}
	c, err := connector.New(connector.Config{
		Pipeline: p, Tier: "fog", Replicas: []string{srv.URL}, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), DrainTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("connector: %v", err)
		}
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(p.DLQTopic("fog")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	filled := func(v float32) []float32 {
		out := make([]float32, 32)
		for i := range out {
			out[i] = v
		}
		return out
	}
	// 20,000 hops would be copied into the record's forward and result.
	forgedHops := make([]wire.Hop, 20000)
	for i := range forgedHops {
		forgedHops[i] = wire.Hop{Tier: "edge", At: time.Now().UTC()}
	}
	var recs []*kgo.Record
	for _, m := range []wire.Message{
		{ID: "forged", Hops: []wire.Hop{{Tier: "edge", At: time.Now().UTC()}}, Tensor: wire.Float32Tensor([]int{32}, filled(3e38))},
		{ID: "good", Tensor: wire.Float32Tensor([]int{32}, filled(1))},
		{ID: "hops", Hops: forgedHops, Tensor: wire.Float32Tensor([]int{32}, filled(1))},
	} {
		rec, err := records.Message(records.Destination{Topic: p.InputTopic("fog")}, p.Encoding(), &m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	start := time.Now()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	reasons := map[string]string{}
	for len(reasons) < 2 && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			reasons[header(r, wire.HeaderID)] = header(r, wire.HeaderReason)
		})
	}
	took := time.Since(start)
	if len(reasons) != 2 {
		t.Fatalf("dead letters within 10s: %q, want the forged and the hops record", reasons)
	}
	reason := reasons["forged"]
	if !strings.Contains(reason, `function rejected the record: tier "fog": model output "exit_probs" is not finite for this record`) {
		t.Errorf("dead letter reason %q does not name the model output", reason)
	}
	if r := reasons["hops"]; !strings.Contains(r, `function rejected the record: hops: 20000 given, a message reaching tier "fog" has passed at most 1 tiers (edge)`) {
		t.Errorf("dead letter reason %q does not name the hops", r)
	}
	testsupport.WaitFor(t, 10*time.Second, "the good record served", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls["good"] > 0
	})
	mu.Lock()
	forgedCalls, hopsCalls := calls["forged"], calls["hops"]
	mu.Unlock()
	// A batch's records are checked before the model runs, so the hops
	// record is refused at its first call; the overflowing one, found
	// only by running the model, is sent once more when it shared that
	// batch (the caller sends the rest of a batch again), never retried.
	if hopsCalls != 1 || forgedCalls < 1 || forgedCalls > 2 {
		t.Errorf("the hops and the overflowing record were sent %d and %d times, want once and at most twice", hopsCalls, forgedCalls)
	}
	// Counted once Kafka acknowledged the copy, which may be after it is
	// readable.
	testsupport.WaitFor(t, 10*time.Second, "the dead letter counted", func() bool {
		return gathered(t, reg, "ddnn_connector_dead_lettered_records_total") == 2
	})
	for name, want := range map[string]float64{
		"ddnn_connector_retries_total":            0,
		"ddnn_connector_attempts_exhausted_total": 0,
		"ddnn_connector_tier_down":                0,
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if strings.Contains(logs.String(), "tier down") {
		t.Errorf("the tier was marked down:\n%s", logs.String())
	}
	t.Logf("dead-lettered after %d call in %s: %s", forgedCalls, took.Round(time.Millisecond), reason)
}

// gathered is the value of the unlabeled metric name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
