package connector

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// BenchmarkDeliver measures a tier's connector from records on its input
// topic to their results acknowledged by Kafka, through a replica that
// answers an exit per message, on an in-process broker: 1,000 records an
// iteration. allocs/op and B/op are per iteration and include the test's
// producer and the replica (the same in every build): with tracing off,
// what telemetry must not add to.
func BenchmarkDeliver(b *testing.B) { benchmarkDeliver(b, nil) }

// benchmarkDeliver runs BenchmarkDeliver with the connector's Config as
// with sets it.
func benchmarkDeliver(b *testing.B, with func(*Config)) {
	const n = 1000
	p, err := pipeline.Parse([]byte(testYAML))
	if err != nil {
		b.Fatal(err)
	}
	br, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	p.Kafka.Brokers = []string{br.Addr()}
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		msgs, err := wire.DecodeMessages(wire.Binary, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ds := make([]wire.Decision, len(msgs))
		for i, m := range msgs {
			ds[i] = wire.Decision{ID: m.ID, Tier: "edge", Exit: true, Label: "a", Confidence: 1}
		}
		out, _ := wire.AppendDecisions(nil, wire.Binary, ds)
		w.Header().Set("Content-Type", wire.ContentTypeBinary)
		w.Write(out)
	}))
	defer replica.Close()
	cfg := Config{Pipeline: p, Tier: "edge", Replicas: []string{replica.URL}, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second}
	if with != nil {
		with(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	prod, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	results, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.ConsumeTopics("t.results"))
	if err != nil {
		b.Fatal(err)
	}
	defer results.Close()
	recs := make([]*kgo.Record, n)
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range recs {
			m := wire.Message{ID: fmt.Sprintf("r%d-%d", round, i), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, byte(i)}}}
			if recs[i], err = records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m); err != nil {
				b.Fatal(err)
			}
		}
		round++
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		for got := 0; got < n; {
			fs := results.PollFetches(wctx)
			if wctx.Err() != nil {
				b.Fatalf("%d of %d results", got, n)
			}
			got += len(fs.Records())
		}
		wcancel()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
