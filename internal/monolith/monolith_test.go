package monolith

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
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

// harness is the shipped pipeline on an embedded broker on 127.0.0.1 with
// a client to produce, read and inspect offsets.
type harness struct {
	p    *pipeline.Pipeline
	site *pipeline.SiteView // of p, where the monolith runs
	ds   *models.Dataset
	cl   *kgo.Client
	// claims, when set, is the monolith's Config.Claims.
	claims *auth.Claims
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	p, err := pipeline.Load("../../deploy/pipeline.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	p.Kafka.Brokers = []string{b.Addr()}
	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		tb.Fatal(err)
	}
	cl, err := kafka.NewClient(&p.Kafka, "test", nil, nil, kgo.ProducerLinger(0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return &harness{p: p, site: onSite(tb, p, p.Sites()[0].Name), ds: ds, cl: cl}
}

// onSite is the view of p's site called name.
func onSite(tb testing.TB, p *pipeline.Pipeline, name string) *pipeline.SiteView {
	tb.Helper()
	v, err := p.OnSite(name)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func (h *harness) input() string { return h.p.InputTopic(h.p.Tiers[0].Name) }

// produce writes recs and returns them with their partitions and offsets.
func (h *harness) produce(tb testing.TB, recs []*kgo.Record) []*kgo.Record {
	tb.Helper()
	if err := h.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
	return recs // ProduceSync set each record's partition and offset
}

// raw is image i as a raw record keyed img-<i>.
func (h *harness) raw(i int) *kgo.Record {
	return &kgo.Record{Topic: h.input(), Key: []byte("img-" + strconv.Itoa(i)), Value: h.ds.Samples[i]}
}

// run starts a monolith in its own client and returns how to stop it:
// stop cancels Run, waits for it and closes the client.
func (h *harness) run(tb testing.TB, workers, maxBatch int, reg prometheus.Registerer) (stop func() error) {
	tb.Helper()
	cl, err := kafka.NewClient(&h.site.Kafka, "monolith", nil, nil, ClientOptions(h.site, nil)...)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := New(Config{
		Pipeline: h.p, Client: cl, Workers: workers, MaxBatch: maxBatch, Registerer: reg, Claims: h.claims,
		Load: func(i int) (*inference.Session, error) {
			return inference.NewSession(h.p, i, inference.SessionOptions{IntraOpThreads: 1})
		},
	})
	if err != nil {
		cl.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
			m.Close()
			cl.Close()
		}
		return runErr
	}
	tb.Cleanup(func() { stop() })
	return stop
}

// reader consumes topics from the start, outside any group.
func (h *harness) reader(tb testing.TB, topics ...string) *kgo.Client {
	tb.Helper()
	cl, err := kafka.NewClient(&h.site.Kafka, "reader", nil, nil,
		kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// readUntil polls r until done says so or the deadline passes.
func readUntil(tb testing.TB, r *kgo.Client, within time.Duration, each func(*kgo.Record), done func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !done() {
		if time.Now().After(deadline) {
			tb.Fatalf("not done within %s", within)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := r.PollFetches(ctx)
		cancel()
		fs.EachRecord(each)
	}
}

// expected is a sample's exit tier and class, computed one sample at a time
// through the inference functions, as the pipeline's replicas would.
type expected struct {
	tier  string
	class int
}

func reference(t *testing.T, p *pipeline.Pipeline, ds *models.Dataset) []expected {
	t.Helper()
	msgs, err := models.Messages(p, ds)
	if err != nil {
		t.Fatal(err)
	}
	var funcs []*inference.Function
	var sessions []*inference.Session
	for i, tier := range p.Tiers {
		s, err := inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f, err := inference.New(inference.Config{Pipeline: p, Tier: tier.Name})
		if err == nil {
			err = f.SetSession(s)
		}
		if err != nil {
			t.Fatal(err)
		}
		funcs, sessions = append(funcs, f), append(sessions, s)
	}
	want := make([]expected, len(msgs))
	for j, msg := range msgs {
		for i, f := range funcs {
			ds, rej, err := f.Infer(sessions[i], []wire.Message{msg})
			if err != nil || len(rej) > 0 {
				t.Fatal(err, rej)
			}
			if ds[0].Exit {
				want[j] = expected{tier: ds[0].Tier, class: ds[0].Class}
				break
			}
			msg = wire.Message{ID: msg.ID, Tensor: *ds[0].Forward}
		}
	}
	return want
}

// TestMonolithMatchesEval feeds test images (raw, as JSON envelopes and as
// binary envelopes with headers) and two bad records to a monolith. Every
// image gets exactly one result, with the class and exit tier the inference
// functions give it alone, the exits and accuracy `ddnn models eval`
// computes, and PyTorch's decisions on the golden samples; the bad records
// land in the DLQ with their reasons without stopping the rest; and the
// group has committed everything when the monolith stops.
func TestMonolithMatchesEval(t *testing.T) {
	h := newHarness(t)
	p := h.p
	const n = 300
	ds := &models.Dataset{DType: h.ds.DType, Shape: h.ds.Shape, Samples: h.ds.Samples[:n], Labels: h.ds.Labels[:n]}
	chain, err := models.OpenChain(p)
	if err != nil {
		t.Fatal(err)
	}
	eval, err := chain.Eval(ds)
	chain.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := reference(t, p, ds)

	// Images 0-9 as JSON envelopes from device cam-json, 10-19 as binary
	// envelopes with id and device headers, the rest raw; the bad records
	// go in the middle so that images behind them in their partitions must
	// still be processed.
	sentAt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var recs []*kgo.Record
	for i := range n {
		id := "img-" + strconv.Itoa(i)
		switch {
		case i < 10:
			v, err := json.Marshal(map[string]any{
				"id": id, "device": "cam-json", "sent_at": sentAt,
				"tensor": map[string]any{"dtype": "uint8", "shape": []int{1, 28, 28}, "data": bytesToInts(ds.Samples[i])},
			})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: h.input(), Value: v})
		case i < 20:
			msg := wire.Message{ID: id, Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{1, 28, 28}, Data: ds.Samples[i]}}
			r, err := records.Message(records.Destination{Topic: h.input()}, wire.Binary, &msg)
			if err != nil {
				t.Fatal(err)
			}
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderDevice, Value: []byte("cam-bin")},
				kgo.RecordHeader{Key: wire.HeaderSentAt, Value: []byte(strconv.FormatInt(sentAt.UnixMilli(), 10))})
			recs = append(recs, r)
		default:
			recs = append(recs, h.raw(i))
		}
		if i == n/2 {
			recs = append(recs, &kgo.Record{Topic: h.input(), Key: []byte("bad-size"), Value: []byte("not an image")})
			// A binary envelope whose tensor the first tier does not take.
			msg := wire.Message{ID: "bad-dtype", Tensor: wire.Float32Tensor([]int{784}, make([]float32, 784))}
			v, err := wire.AppendMessage(nil, wire.Binary, &msg)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: h.input(), Key: []byte("bad-dtype"), Value: v})
		}
	}
	produced := h.produce(t, recs)

	reg := prometheus.NewRegistry()
	stop := h.run(t, 2, 16, reg)

	got := map[string][]wire.Result{}
	keys := map[string]string{}
	dlq := map[string]*kgo.Record{}
	read := h.reader(t, p.ResultsTopic(), p.DLQTopic(p.Tiers[0].Name))
	readUntil(t, read, 15*time.Second, func(r *kgo.Record) {
		if r.Topic != p.ResultsTopic() {
			dlq[string(r.Key)] = r
			return
		}
		res, err := wire.DecodeResult(r.Value)
		if err != nil {
			t.Fatalf("result %s: %v", r.Value, err)
		}
		got[res.ID] = append(got[res.ID], res)
		keys[res.ID] = string(r.Key)
	}, func() bool { return len(got) >= n && len(dlq) >= 2 })
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	// Anything a stop might still have produced.
	fctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	read.PollFetches(fctx).EachRecord(func(r *kgo.Record) {
		if res, err := wire.DecodeResult(r.Value); err == nil {
			got[res.ID] = append(got[res.ID], res)
		}
	})
	cancel()

	exits := map[string]int{}
	correct := 0
	tierIndex := map[string]int{}
	for i, tier := range p.Tiers {
		tierIndex[tier.Name] = i
	}
	for i := range n {
		id := "img-" + strconv.Itoa(i)
		rs := got[id]
		if len(rs) != 1 {
			t.Errorf("%s: %d results", id, len(rs))
			continue
		}
		r := rs[0]
		exits[r.Tier]++
		if r.Class == ds.Labels[i] {
			correct++
		}
		if r.Tier != want[i].tier || r.Class != want[i].class {
			t.Errorf("%s: exit %s class %d, one at a time it is %s class %d", id, r.Tier, r.Class, want[i].tier, want[i].class)
		}
		if r.Label != p.Classes[r.Class] || r.Confidence <= 0 || r.Confidence > 1 {
			t.Errorf("%s: label %q confidence %v for class %d", id, r.Label, r.Confidence, r.Class)
		}
		// One hop per tier up to the exit, in order and in time.
		if len(r.Hops) != tierIndex[r.Tier]+1 {
			t.Errorf("%s: hops %+v for an exit at %s", id, r.Hops, r.Tier)
		} else {
			for k, hop := range r.Hops {
				if hop.Tier != p.Tiers[k].Name || (k > 0 && hop.At.Before(r.Hops[k-1].At)) || hop.At.After(r.ExitedAt) {
					t.Errorf("%s: hop %d %+v (exited %v)", id, k, hop, r.ExitedAt)
				}
			}
		}
		switch {
		case i < 10:
			if r.Device != "cam-json" || keys[id] != "cam-json" || !r.SentAt.Equal(sentAt) {
				t.Errorf("%s: device %q key %q sent_at %v, want cam-json and %v", id, r.Device, keys[id], r.SentAt, sentAt)
			}
		case i < 20:
			if r.Device != "cam-bin" || keys[id] != "cam-bin" || !r.SentAt.Equal(sentAt) {
				t.Errorf("%s: device %q key %q sent_at %v, want cam-bin and %v", id, r.Device, keys[id], r.SentAt, sentAt)
			}
		default:
			// Raw records: sent_at is the record's timestamp.
			if r.Device != "" || keys[id] != "" || r.SentAt.IsZero() || r.SentAt.After(r.Hops[0].At) {
				t.Errorf("%s: device %q key %q sent_at %v, first hop %v", id, r.Device, keys[id], r.SentAt, r.Hops[0].At)
			}
		}
	}
	for _, tr := range eval.Tiers {
		if exits[tr.Name] != tr.Exited {
			t.Errorf("tier %s: %d exits, models eval says %d", tr.Name, exits[tr.Name], tr.Exited)
		}
		if e := metricValue(t, reg, "ddnn_inference_exits_total", "tier", tr.Name); int(e) != tr.Exited {
			t.Errorf("tier %s: ddnn_inference_exits_total %v, want %d", tr.Name, e, tr.Exited)
		}
	}
	if acc := float64(correct) / n; acc != eval.Accuracy {
		t.Errorf("accuracy %.4f, models eval says %.4f", acc, eval.Accuracy)
	}
	if len(exits) < 3 {
		t.Errorf("exits only at %v: the test should see every tier", exits)
	}
	checkGolden(t, p, got)

	for key, prefix := range map[string]string{
		"bad-size":  "undecodable record: raw value has 12 bytes, want 784 (uint8 [1 28 28])",
		"bad-dtype": `rejected by tier "edge": tensor dtype float32, tier "edge" takes uint8`,
	} {
		r := dlq[key]
		if r == nil {
			t.Errorf("%s: not dead-lettered (DLQ holds %d records)", key, len(dlq))
			continue
		}
		if !hasHeader(r, wire.HeaderReason, prefix) || !hasHeader(r, records.HeaderSourceTopic, h.input()) {
			t.Errorf("%s: dead letter headers %+v, want reason %q", key, r.Headers, prefix)
		}
	}
	if len(dlq) != 2 {
		t.Errorf("%d dead letters, want 2", len(dlq))
	}
	if v := metricValue(t, reg, "ddnn_monolith_records_total", "outcome", "result"); v != n {
		t.Errorf("ddnn_monolith_records_total{outcome=result} %v, want %d", v, n)
	}
	if v := metricValue(t, reg, "ddnn_monolith_records_total", "outcome", "dead_lettered"); v != 2 {
		t.Errorf("ddnn_monolith_records_total{outcome=dead_lettered} %v, want 2", v)
	}

	// Everything consumed is committed: the group's offsets are the ends.
	ends := map[int32]int64{}
	for _, r := range produced {
		ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
	}
	committed := h.committed(t)
	for part, end := range ends {
		if committed[part] != end {
			t.Errorf("partition %d: committed %d, end %d", part, committed[part], end)
		}
	}
}

// checkGolden compares the golden samples' results with the decisions the
// exit policies make on PyTorch's probabilities (models/golden.json), except
// where PyTorch's top score is too close to the threshold to tell.
func checkGolden(t *testing.T, p *pipeline.Pipeline, got map[string][]wire.Result) {
	t.Helper()
	b, err := os.ReadFile("../../models/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Samples []map[string]json.RawMessage `json:"samples"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, s := range g.Samples {
		var index int
		if err := json.Unmarshal(s["index"], &index); err != nil {
			t.Fatal(err)
		}
		rs := got["img-"+strconv.Itoa(index)]
		if len(rs) != 1 {
			continue // reported by the caller
		}
	tiers:
		for i, tier := range p.Tiers {
			var head struct {
				ExitProbs []float64 `json:"exit_probs"`
			}
			if err := json.Unmarshal(s[tier.Name], &head); err != nil {
				t.Fatalf("golden sample %d tier %s: %v", index, tier.Name, err)
			}
			class, top := 0, head.ExitProbs[0]
			for c, v := range head.ExitProbs {
				if v > top {
					class, top = c, v
				}
			}
			last := p.Last(i)
			if !last && math.Abs(top-*tier.Exit.Threshold) < 1e-4 {
				break // too close to call
			}
			if last || top >= *tier.Exit.Threshold {
				if rs[0].Tier != tier.Name || rs[0].Class != class {
					t.Errorf("golden sample %d: exit %s class %d, PyTorch's probabilities say %s class %d", index, rs[0].Tier, rs[0].Class, tier.Name, class)
				}
				checked++
				break tiers
			}
		}
	}
	if checked == 0 {
		t.Error("no golden sample checked")
	}
}

// TestMonolithStopCommitsOnlyResults stops a monolith in the middle of a
// stream: every record below a committed offset has a result, and a second
// monolith in the same group picks up the rest, so every image gets at
// least one result.
func TestMonolithStopCommitsOnlyResults(t *testing.T) {
	h := newHarness(t)
	const n = 2000
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, h.raw(i%len(h.ds.Samples)))
		recs[i].Key = []byte("img-" + strconv.Itoa(i))
	}
	produced := h.produce(t, recs)

	got := map[string]int{}
	read := h.reader(t, h.p.ResultsTopic())
	count := func(r *kgo.Record) {
		res, err := wire.DecodeResult(r.Value)
		if err != nil {
			t.Fatalf("result %s: %v", r.Value, err)
		}
		got[res.ID]++
	}
	stop := h.run(t, 2, 8, nil)
	readUntil(t, read, 15*time.Second, count, func() bool { return len(got) >= n/10 })
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	committed := h.committed(t)
	// Results of everything committed were acknowledged before the
	// commit, so they are readable now.
	var below []string
	for _, r := range produced {
		if r.Offset < committed[r.Partition] {
			below = append(below, string(r.Key))
		}
	}
	readUntil(t, read, 10*time.Second, count, func() bool {
		for _, id := range below {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	if len(below) == 0 || len(below) == n {
		t.Logf("committed %d of %d records at the stop", len(below), n)
	}

	stop = h.run(t, 2, 8, nil)
	readUntil(t, read, 15*time.Second, count, func() bool { return len(got) >= n })
	if err := stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	t.Logf("%d records committed by the first run, %d duplicates after the restart", len(below), dups)
	committed = h.committed(t)
	for _, r := range produced {
		if r.Offset >= committed[r.Partition] {
			t.Fatalf("partition %d: committed %d, record at %d", r.Partition, committed[r.Partition], r.Offset)
		}
	}
}

func TestNewRejectsNoWorkers(t *testing.T) {
	p, err := pipeline.Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Pipeline: p, Workers: 0})
	if err == nil || !strings.Contains(err.Error(), "workers") {
		t.Fatalf("New with 0 workers: %v", err)
	}
}

// BenchmarkMonolith measures end to end throughput on the embedded broker:
// b.N raw images are on the input topic before the monolith starts; the
// clock stops when the group has committed them all.
func BenchmarkMonolith(b *testing.B) {
	h := newHarness(b)
	var recs []*kgo.Record
	for i := range b.N {
		r := h.raw(i % len(h.ds.Samples))
		r.Key = []byte("img-" + strconv.Itoa(i))
		recs = append(recs, r)
	}
	for len(recs) > 0 {
		k := min(len(recs), 10000)
		h.produce(b, recs[:k])
		recs = recs[k:]
	}
	b.ResetTimer()
	start := time.Now()
	stop := h.run(b, 2, 64, nil)
	// The group exists only once the monolith joined it; until its first
	// commit the total is 0.
	deadline := start.Add(time.Minute + time.Duration(b.N)*time.Millisecond)
	for {
		total := int64(0)
		for _, at := range h.committed(b) {
			total += at
		}
		if total >= int64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d records committed after %s", total, b.N, time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "samples/s")
}

// committed is the monolith group's committed offset per partition of the
// input topic; empty while the group does not exist yet (the broker answers
// GROUP_ID_NOT_FOUND until a monolith joins it).
func (h *harness) committed(tb testing.TB) map[int32]int64 {
	tb.Helper()
	o, err := kadm.NewClient(h.cl).FetchOffsets(context.Background(), Group(h.p))
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}
	}
	if err != nil {
		tb.Fatal(err)
	}
	out := map[int32]int64{}
	o.Each(func(o kadm.OffsetResponse) {
		if o.Topic == h.input() {
			out[o.Partition] = o.At
		}
	})
	return out
}

// metricValue is the value of the counter name with label=value in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
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
			if hasLabel(m, label, value) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func hasHeader(r *kgo.Record, key, prefix string) bool {
	for _, h := range r.Headers {
		if h.Key == key && strings.HasPrefix(string(h.Value), prefix) {
			return true
		}
	}
	return false
}

func bytesToInts(b []byte) []int {
	out := make([]int, len(b))
	for i, v := range b {
		out[i] = int(v)
	}
	return out
}

// TestMonolithCloudOnly runs the continuum's cloud-only baseline: every
// tier placed on the cloud site, the results staying on the edge. The
// monolith consumes the first tier's topic on the cloud's Kafka and writes
// each result to the cloud's queue of the link to the edge, routed to the
// results as a cloud funnel writes them; no results topic exists on the
// cloud.
func TestMonolithCloudOnly(t *testing.T) {
	p, err := pipeline.Load("../../deploy/examples/continuum.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PlaceAllOn("cloud"); err != nil {
		t.Fatal(err)
	}
	cloud, err := p.Site("cloud")
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", cloud.Kafka.Partitions, p.TopicsOn("cloud"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cloud.Kafka.Brokers = []string{b.Addr()}
	sp := onSite(t, p, "cloud")
	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafka.NewClient(&sp.Kafka, "test", nil, nil, kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	h := &harness{p: p, site: sp, ds: ds, cl: cl}

	// A monolith told another site than its tiers' refuses to start.
	if _, err := New(Config{Pipeline: p, Site: "edge", Workers: 1, Load: func(int) (*inference.Session, error) { return nil, nil }}); err == nil ||
		!strings.Contains(err.Error(), `tier "edge" is not on site "edge"`) {
		t.Errorf("New on the edge with every tier on the cloud: %v", err)
	}

	const n = 100
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, h.raw(i))
	}
	h.produce(t, recs)
	stop := h.run(t, 1, 16, nil)
	uplink := p.UplinkTopic("edge")
	got := map[string]wire.Result{}
	read := h.reader(t, uplink)
	readUntil(t, read, 15*time.Second, func(r *kgo.Record) {
		if !hasHeader(r, wire.HeaderRoute, wire.RouteResults) || len(r.Headers) != 1 {
			t.Errorf("record on %s with headers %+v, want only %s: %s", uplink, r.Headers, wire.HeaderRoute, wire.RouteResults)
		}
		res, err := wire.DecodeResult(r.Value)
		if err != nil {
			t.Fatalf("result %s: %v", r.Value, err)
		}
		got[res.ID] = res
	}, func() bool { return len(got) >= n })
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := reference(t, p, &models.Dataset{DType: ds.DType, Shape: ds.Shape, Samples: ds.Samples[:n], Labels: ds.Labels[:n]})
	for i := range n {
		r, ok := got["img-"+strconv.Itoa(i)]
		if !ok || r.Tier != want[i].tier || r.Class != want[i].class {
			t.Errorf("img-%d: %+v, want exit %s class %d", i, r, want[i].tier, want[i].class)
		}
	}
	ts, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ts.Has(p.ResultsTopic()) {
		t.Errorf("the cloud's Kafka holds %s; the results live on the edge", p.ResultsTopic())
	}
}

// TestClientOptions: the monolith consumes the first tier's topic in its
// own group like a connector and produces like every ddnn producer.
func TestClientOptions(t *testing.T) {
	p, err := pipeline.Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(ClientOptions(onSite(t, p, p.Sites()[0].Name), nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if g := cl.OptValue(kgo.ConsumerGroup); g != Group(p) {
		t.Errorf("group %v, want %s", g, Group(p))
	}
	if _, ok := cl.OptValue(kgo.ConsumeTopics).(map[string]*regexp.Regexp)[p.InputTopic(p.Tiers[0].Name)]; !ok {
		t.Errorf("topics %v, want %s", cl.OptValue(kgo.ConsumeTopics), p.InputTopic(p.Tiers[0].Name))
	}
	if auto := cl.OptValue(kgo.DisableAutoCommit); auto != true {
		t.Errorf("autocommit disabled: %v", auto)
	}
	if max := cl.OptValue(kgo.ProducerBatchMaxBytes); max != int32(p.Kafka.MaxRecordBytes+61) {
		t.Errorf("producer batch max bytes %v, want max_record_bytes plus a batch header", max)
	}
}

// TestCommittedBeforeTheGroupExists: until a monolith joined its group the
// broker answers GROUP_ID_NOT_FOUND, which means nothing committed yet.
func TestCommittedBeforeTheGroupExists(t *testing.T) {
	h := newHarness(t)
	if c := h.committed(t); len(c) != 0 {
		t.Fatalf("committed %v before any monolith ran", c)
	}
}

// TestMonolithDeadLettersWhatAFunctionRejects runs the f32 pipeline whose
// edge exit head is declared probabilities but emits logits: the edge
// function rejects every sample whose scores fall outside [0, 1], so the
// monolith dead-letters those records with the reason, produces no result
// with a "confidence" outside [0, 1], and keeps running.
func TestMonolithDeadLettersWhatAFunctionRejects(t *testing.T) {
	p, err := pipeline.Load("../../models/testdata/f32/wrong-scores.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p.Kafka.Brokers = []string{b.Addr()}
	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafka.NewClient(&p.Kafka, "test", nil, nil, kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	h := &harness{p: p, site: onSite(t, p, p.Sites()[0].Name), ds: ds, cl: cl}
	const n = 20
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, h.raw(i))
	}
	h.produce(t, recs)
	stop := h.run(t, 1, 8, nil)
	results, dead := map[string]wire.Result{}, map[string]string{}
	read := h.reader(t, p.ResultsTopic(), p.DLQTopic(p.Tiers[0].Name))
	readUntil(t, read, 15*time.Second, func(r *kgo.Record) {
		if r.Topic != p.ResultsTopic() {
			for _, hd := range r.Headers {
				if hd.Key == wire.HeaderReason {
					dead[string(r.Key)] = string(hd.Value)
				}
			}
			return
		}
		res, err := wire.DecodeResult(r.Value)
		if err != nil {
			t.Fatalf("result %s: %v", r.Value, err)
		}
		results[res.ID] = res
	}, func() bool { return len(results)+len(dead) >= n })
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(dead) == 0 {
		t.Fatalf("nothing dead-lettered; results %+v", results)
	}
	for id, reason := range dead {
		if !strings.Contains(reason, `rejected by tier "edge": tier "edge": exit output "exit_logits" is declared scores: probabilities, but class `) ||
			!strings.Contains(reason, "set tiers[].exit.scores: logits") {
			t.Errorf("%s: reason %q", id, reason)
		}
	}
	for id, r := range results {
		if r.Confidence < 0 || r.Confidence > 1 {
			t.Errorf("%s: result with confidence %v", id, r.Confidence)
		}
	}
	t.Logf("%d dead-lettered, %d results", len(dead), len(results))
}

// TestClientOptionsReportJoin: the client ClientOptions makes tells when
// its consumer joined the group, as the monolith's readiness needs: not
// before it polls (kgo joins then), and once it did, also with no
// partition assigned.
func TestClientOptionsReportJoin(t *testing.T) {
	h := newHarness(t)
	var joined atomic.Bool
	cl, err := kafka.NewClient(&h.site.Kafka, "monolith", nil, nil, ClientOptions(h.site, joined.Store)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if joined.Load() {
		t.Fatal("joined before any poll")
	}
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
			cl.AllowRebalance() // the monolith blocks rebalances while it polls
		}
	}()
	testsupport.WaitFor(t, 15*time.Second, "the group joined", joined.Load)
	cancel()
	<-polled
}
