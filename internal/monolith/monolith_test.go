package monolith

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/ddnn-continuum/ddnn/models"
)

func TestMain(m *testing.M) {
	if _, err := onnx.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "monolith tests need ONNX Runtime:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestMonolithMatchesEval feeds raw test images and one undecodable record
// to a monolith on an embedded broker. Every image gets exactly one result,
// with the exits per tier and the accuracy `ddnn models eval` computes for
// the same images; the bad record lands in the DLQ with its reason; and the
// group has committed everything when the monolith stops.
func TestMonolithMatchesEval(t *testing.T) {
	p, err := pipeline.Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p.Kafka.Brokers = []string{b.Addr()}

	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	ds = &models.Dataset{Shape: ds.Shape, Samples: ds.Samples[:n], Labels: ds.Labels[:n]}
	chain, err := models.OpenChain(p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := chain.Eval(ds)
	chain.Close()
	if err != nil {
		t.Fatal(err)
	}

	prod, err := kgo.NewClient(kafka.ClientOptions(&p.Kafka, "test", nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := context.Background()
	in := p.InputTopic(p.Tiers[0].Name)
	var recs []*kgo.Record
	for i, s := range ds.Samples {
		recs = append(recs, &kgo.Record{Topic: in, Key: []byte("img-" + strconv.Itoa(i)), Value: s})
	}
	recs = append(recs, &kgo.Record{Topic: in, Key: []byte("bad"), Value: []byte("not an image")})
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(append(kafka.ClientOptions(&p.Kafka, "monolith", nil), ClientOptions(p)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m, err := New(Config{
		Pipeline: p, Client: cl, Workers: 2, MaxBatch: 16,
		Load: func(i int) (*inference.Session, error) {
			return inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: 1})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()

	got := map[string][]wire.Result{}
	read := consumer(t, p, p.ResultsTopic(), p.DLQTopic(p.Tiers[0].Name))
	var dlq []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for (len(got) < n || len(dlq) < 1) && time.Now().Before(deadline) {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := read.PollFetches(fctx)
		cancel()
		for _, r := range fs.Records() {
			if r.Topic != p.ResultsTopic() {
				dlq = append(dlq, r)
				continue
			}
			res, err := wire.DecodeResult(r.Value)
			if err != nil {
				t.Fatalf("result %s: %v", r.Value, err)
			}
			got[res.ID] = append(got[res.ID], res)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}

	exits := map[string]int{}
	correct := 0
	for i := 0; i < n; i++ {
		rs := got["img-"+strconv.Itoa(i)]
		if len(rs) != 1 {
			t.Errorf("image %d: %d results", i, len(rs))
			continue
		}
		exits[rs[0].Tier]++
		if rs[0].Class == ds.Labels[i] {
			correct++
		}
		if len(rs[0].Hops) == 0 || rs[0].Hops[len(rs[0].Hops)-1].Tier != rs[0].Tier {
			t.Errorf("image %d: hops %+v end elsewhere than %s", i, rs[0].Hops, rs[0].Tier)
		}
	}
	for _, tr := range want.Tiers {
		if exits[tr.Name] != tr.Exited {
			t.Errorf("tier %s: %d exits, models eval says %d", tr.Name, exits[tr.Name], tr.Exited)
		}
	}
	if acc := float64(correct) / n; acc != want.Accuracy {
		t.Errorf("accuracy %.4f, models eval says %.4f", acc, want.Accuracy)
	}
	if len(exits) < 3 {
		t.Errorf("exits only at %v: the test should see every tier", exits)
	}
	if len(dlq) != 1 || string(dlq[0].Key) != "bad" || !hasHeader(dlq[0], wire.HeaderReason, "undecodable record: raw value has 12 bytes") {
		t.Errorf("dead letters: %+v", dlq)
	}

	// Everything consumed is committed.
	adm := kadm.NewClient(prod)
	ends, err := adm.ListEndOffsets(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, Group(p))
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		c, _ := committed.Lookup(in, o.Partition)
		if o.Offset > 0 && c.At != o.Offset {
			t.Errorf("partition %d: committed %d, end %d", o.Partition, c.At, o.Offset)
		}
	})
}

func consumer(t *testing.T, p *pipeline.Pipeline, topics ...string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(kafka.ClientOptions(&p.Kafka, "reader", nil),
		kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func hasHeader(r *kgo.Record, key, prefix string) bool {
	for _, h := range r.Headers {
		if h.Key == key && len(h.Value) >= len(prefix) && string(h.Value[:len(prefix)]) == prefix {
			return true
		}
	}
	return false
}
