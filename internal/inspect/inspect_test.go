package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const fast = `{max_batch: 8, max_wait: 2ms, backoff: 5ms, max_backoff: 50ms, request_timeout: 2s}`

// oneSiteYAML is three tiers on one site.
const oneSiteYAML = `
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
tiers:
  - {name: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}, connector: ` + fast + `}
  - {name: fog, model: f.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}, connector: ` + fast + `}
  - {name: cloud, model: c.onnx, exit: {output: o}, connector: ` + fast + `}
kafka: {partitions: 2}
`

// modelOf is the model digest tier's replica names (httpapi.HeaderModel).
func modelOf(tier string) string { return fmt.Sprintf("%012x", len(tier)*0x1111) }

// versionOf is the version label tier's replica names with its model:
// edge and fog have one, cloud none.
func versionOf(tier string) string {
	return map[string]string{"edge": "e1", "fog": "2026-12.retrain_3"}[tier]
}

// replica answers like tier's inference function: a message whose device
// is "to-<tier>" exits, one whose device is "poison-<tier>" is rejected,
// the others are forwarded.
func replica(t *testing.T, tier string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		msgs, err := wire.DecodeMessages(wire.Binary, b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var rej []wire.Rejection
		ds := make([]wire.Decision, len(msgs))
		for i, m := range msgs {
			ds[i] = wire.Decision{ID: m.ID, Tier: tier, Confidence: 0.25}
			switch m.Device {
			case "to-" + tier:
				ds[i].Exit, ds[i].Class, ds[i].Label, ds[i].Confidence = true, 1, "b", 0.75
			case "poison-" + tier:
				rej = append(rej, wire.Rejection{Index: i, ID: m.ID, Reason: "poisoned at " + tier})
			default:
				fw := wire.Float32Tensor([]int{2}, []float32{1, 2})
				ds[i].Forward = &fw
			}
		}
		if len(rej) > 0 {
			httpapi.WriteError(w, http.StatusBadRequest, &wire.ErrorBody{Error: "rejected", Rejected: rej})
			return
		}
		out, err := wire.AppendDecisions(nil, wire.Binary, ds)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", wire.ContentTypeBinary)
		w.Header().Set(httpapi.HeaderModel, wire.ModelVersion{SHA: modelOf(tier), Version: versionOf(tier)}.String())
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// run runs c until the test ends.
func run(t *testing.T, c *connector.Connector) {
	t.Helper()
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
		case <-time.After(15 * time.Second):
			t.Error("connector did not stop")
		}
	})
}

// startTier runs tier's connector with its replica.
func startTier(t *testing.T, p *pipeline.Pipeline, tier string) {
	t.Helper()
	c, err := connector.New(connector.Config{Pipeline: p, Tier: tier, Replicas: []string{replica(t, tier)},
		Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
}

// ingest writes messages for the first tier as its site's funnel does,
// each with the device that says where it ends.
func ingest(t *testing.T, p *pipeline.Pipeline, byID map[string]string) {
	t.Helper()
	site, err := p.OnTierSite(p.Tiers[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(site.Kafka.Brokers...))
	var recs []*kgo.Record
	for id, device := range byID {
		m := wire.Message{ID: id, Device: device, SentAt: time.Now().UTC(), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, 4}}}
		rec, err := records.Message(records.DestinationOf(p, site.Name, p.Tiers[0].Name), wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// count is the records topic holds on site.
func count(t *testing.T, site *pipeline.Site, topic string) int {
	t.Helper()
	n := 0
	if err := kafka.Scan(context.Background(), &site.Kafka, topic, func(*kgo.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// inspectJSON runs ddnn inspect --json on id and reads its report.
func inspectJSON(t *testing.T, file, id string, extra ...string) Report {
	t.Helper()
	var out, errs bytes.Buffer
	if err := Main(context.Background(), append([]string{"-f", file, id, "--json"}, extra...), &out, &errs); err != nil {
		t.Fatalf("inspect %s: %v (%s)", id, err, errs.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("inspect %s --json: %v: %s", id, err, out.String())
	}
	return rep
}

// writeYAML writes p's YAML with the test brokers in place (the YAML
// inspect reads, as an operator's names their sites' Kafka).
func writeYAML(t *testing.T, yaml string, brokers map[string]string) string {
	t.Helper()
	for site, addr := range brokers {
		if site == pipeline.LocalSite {
			yaml = strings.Replace(yaml, "kafka: {partitions: 2}", "kafka: {partitions: 2, brokers: ["+addr+"]}", 1)
			continue
		}
		yaml = strings.Replace(yaml, "{name: "+site+", kafka: {embedded_listen: 127.0.0.1:0}", "{name: "+site+", kafka: {brokers: ["+addr+"]}", 1)
	}
	file := t.TempDir() + "/pipeline.yaml"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// hopsOf are the tiers and decisions of rep's hops, "edge:forward fog:exit".
func hopsOf(rep Report) string {
	var s []string
	for _, h := range rep.Hops {
		s = append(s, h.Tier+":"+h.Decision)
	}
	return strings.Join(s, " ")
}

// TestInspectOnOneSite: on a pipeline of three tiers on one site, run by
// real connectors, inspect tells of a message that exited at each tier
// its result and every hop (replica, model, confidence, decision,
// times), of a poisoned one its dead letter, and of an id never sent that
// it is unknown and what it searched.
func TestInspectOnOneSite(t *testing.T) {
	p, err := pipeline.Parse([]byte(oneSiteYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := testsupport.KafkaCluster(t, 2, p.Topics()...)
	p.Kafka.Brokers = c.ListenAddrs()
	file := writeYAML(t, oneSiteYAML, map[string]string{pipeline.LocalSite: c.ListenAddrs()[0]})
	for _, tier := range []string{"edge", "fog", "cloud"} {
		startTier(t, p, tier)
	}
	before := time.Now().Truncate(time.Millisecond)
	ingest(t, p, map[string]string{"m-edge": "to-edge", "m-fog": "to-fog", "m-cloud": "to-cloud", "m-poison": "poison-fog"})
	site := &p.Sites()[0]
	testsupport.WaitFor(t, 20*time.Second, "3 results and a dead letter", func() bool {
		return count(t, site, p.ResultsTopic()) == 3 && count(t, site, p.DLQTopic("fog")) == 1
	})

	for _, tc := range []struct{ id, tier, hops string }{
		{"m-edge", "edge", "edge:exit"},
		{"m-fog", "fog", "edge:forward fog:exit"},
		{"m-cloud", "cloud", "edge:forward fog:forward cloud:exit"},
	} {
		rep := inspectJSON(t, file, tc.id)
		if rep.State != StateResult || rep.Result == nil || rep.Result.Tier != tc.tier || rep.Result.Where.Topic != "t.results" {
			t.Fatalf("%s: %+v, want a result at tier %s on t.results", tc.id, rep, tc.tier)
		}
		if got := hopsOf(rep); got != tc.hops {
			t.Errorf("%s: hops %q, want %q", tc.id, got, tc.hops)
		}
		if want := (wire.ModelVersion{SHA: modelOf(tc.tier), Version: versionOf(tc.tier)}); rep.Result.Model != want {
			t.Errorf("%s: result names model %+v, want its exit tier's %+v", tc.id, rep.Result.Model, want)
		}
		for _, h := range rep.Hops {
			if h.Model != modelOf(h.Tier) || h.Version != versionOf(h.Tier) || h.Site != pipeline.LocalSite || !strings.HasPrefix(h.Replica, "127.0.0.1:") ||
				h.FetchedAt.Before(before) || h.KafkaWaitSeconds < 0 || h.ServiceSeconds <= 0 {
				t.Errorf("%s: hop %+v: want tier %s's replica and model, fetched after the write, a service time", tc.id, h, h.Tier)
			}
			if want := float32(0.25); h.Decision == "exit" && h.Confidence != 0.75 || h.Decision == "forward" && h.Confidence != want {
				t.Errorf("%s: hop %+v: confidence not the replica's", tc.id, h)
			}
		}
		// The result tells the device and its send time.
		if in := rep.Ingest; in == nil || in.Site != pipeline.LocalSite || in.Device != "to-"+tc.tier || in.SentAt == nil || in.SentAt.Before(before) {
			t.Errorf("%s: ingest %+v", tc.id, rep.Ingest)
		}
		// Found on the results topic with every hop: nothing else read.
		if len(rep.Searched.Topics) != 1 || !rep.Searched.Complete {
			t.Errorf("%s: searched %+v, want the results topic alone", tc.id, rep.Searched)
		}
	}

	var text, errs bytes.Buffer
	if err := Main(context.Background(), []string{"-f", file, "m-cloud"}, &text, &errs); err != nil {
		t.Fatal(err)
	}
	t.Logf("ddnn inspect m-cloud:\n%s", text.String())
	for _, want := range []string{"version", " " + modelOf("fog") + "  2026-12.retrain_3 ", " " + modelOf("cloud") + "  -  ", "model " + modelOf("cloud") + ","} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("ddnn inspect m-cloud lacks %q:\n%s", want, text.String())
		}
	}

	rep := inspectJSON(t, file, "m-poison")
	if rep.State != StateDeadLettered || rep.DeadLetter == nil || rep.DeadLetter.Topic != "t.fog.dlq" ||
		!strings.Contains(rep.DeadLetter.Reason, "poisoned at fog") || rep.DeadLetter.Source.Topic != "t.fog.in" {
		t.Fatalf("m-poison: %+v, want dead-lettered on t.fog.dlq, poisoned at fog, read from t.fog.in", rep)
	}
	if got := hopsOf(rep); got != "edge:forward" {
		t.Errorf("m-poison: hops %q, want edge's forward", got)
	}

	rep = inspectJSON(t, file, "never-sent")
	if rep.State != StateUnknown || rep.Result != nil || len(rep.Hops) != 0 || !rep.Searched.Complete {
		t.Fatalf("never-sent: %+v, want unknown after a complete search", rep)
	}
	if len(rep.Searched.Topics) != len(p.Topics()) {
		t.Errorf("never-sent: searched %d topics, want every one of %v", len(rep.Searched.Topics), p.Topics())
	}
	// 4 ingested, 3 forwards from edge, 1 from fog, 3 results, 1 dead letter.
	if rep.Searched.Records != 12 {
		t.Errorf("never-sent: %d records read, want the 12 the topics hold", rep.Searched.Records)
	}
	text.Reset()
	if err := Main(context.Background(), []string{"-f", file, "never-sent"}, &text, &errs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"message never-sent: unknown", "no record of this id was found", "searched", "12 records", "t.fog.dlq on local"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	rep = inspectJSON(t, file, "never-sent", "--max-records", "5")
	if rep.State != StateUnknown || rep.Searched.Complete || rep.Searched.Records != 5 || !strings.Contains(rep.Note, "--max-records 5") {
		t.Errorf("never-sent within 5 records: %+v, want an incomplete search that says so", rep)
	}
}

// TestInspectResultWithoutHops: a result whose hops no record tells (as
// ddnn monolith writes it) is still the message's result, and the report
// names the tiers whose hops are missing, after reading every input topic.
func TestInspectResultWithoutHops(t *testing.T) {
	p, err := pipeline.Parse([]byte(oneSiteYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := testsupport.KafkaCluster(t, 2, p.Topics()...)
	file := writeYAML(t, oneSiteYAML, map[string]string{pipeline.LocalSite: c.ListenAddrs()[0]})
	now := time.Now().UTC()
	res := wire.Result{ID: "m-mono", Device: "cam", Tier: "fog", Label: "a", Confidence: 0.9, SentAt: now, ExitedAt: now,
		Hops: []wire.Hop{{Tier: "edge", At: now}, {Tier: "fog", At: now}}}
	rec, err := records.Result(records.Destination{Topic: p.ResultsTopic()}, &res)
	if err != nil {
		t.Fatal(err)
	}
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(c.ListenAddrs()...))
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep := inspectJSON(t, file, "m-mono")
	if rep.State != StateResult || rep.Result.Tier != "fog" || len(rep.Hops) != 0 || !strings.Contains(rep.Note, "hop of tier edge, fog") {
		t.Fatalf("%+v, want the result, no hops and a note naming edge and fog", rep)
	}
	inputs := 0
	for _, ts := range rep.Searched.Topics {
		if strings.HasSuffix(ts.Topic, ".in") {
			inputs++
		}
	}
	if inputs != len(p.Tiers) {
		t.Errorf("searched %+v, want every input topic read for the hops", rep.Searched.Topics)
	}
}

// TestInspectPlacesByTheGroupsPosition: a record its tier's group has not
// consumed waits, behind the records between the group's commit and it; a
// record the group consumed, of which nothing later was found, is unknown,
// and the report says why.
func TestInspectPlacesByTheGroupsPosition(t *testing.T) {
	p, err := pipeline.Parse([]byte(oneSiteYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := testsupport.KafkaCluster(t, 2, p.Topics()...)
	file := writeYAML(t, oneSiteYAML, map[string]string{pipeline.LocalSite: c.ListenAddrs()[0]})
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := context.Background()
	for i := range 3 {
		m := wire.Message{ID: fmt.Sprintf("c%d", i), Device: "cam", Tensor: wire.Float32Tensor([]int{2}, []float32{1, 2})}
		rec, err := records.Message(records.Destination{Topic: p.InputTopic("cloud")}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		rec.Partition = 1
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	group := p.ConsumerGroup("cloud")
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: p.InputTopic("cloud"), Partition: 1, At: 1, LeaderEpoch: -1})
	if _, err := kadm.NewClient(cl).CommitOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}

	rep := inspectJSON(t, file, "c2")
	w := rep.Waiting
	if rep.State != StateWaiting || w == nil || w.Topic != "t.cloud.in" || w.Partition != 1 || w.Offset != 2 || w.Group != group || w.Committed != 1 || w.Ahead != 1 {
		t.Fatalf("c2: %+v (waiting %+v), want waiting on t.cloud.in[1]@2, group %s committed 1, 1 ahead", rep, w, group)
	}
	rep = inspectJSON(t, file, "c0")
	if rep.State != StateUnknown || !strings.Contains(rep.Note, "t.cloud.in[1]@0") || !strings.Contains(rep.Note, "consumed (committed 1)") {
		t.Fatalf("c0: %+v, want unknown: consumed, nothing later found", rep)
	}
}
