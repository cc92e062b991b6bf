package funnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestMain checks that no test leaves a goroutine behind, except pion's
// DTLS connections' own: a client whose handshake the funnel refused is
// closed by its test, but pion ends that connection's read loop and
// handshake state machine asynchronously, after its retransmission timer.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/pion/dtls/v3.(*handshakeFSM).finish"),
		goleak.IgnoreTopFunction("github.com/pion/transport/v4/netctx.(*packetConn).ReadFromContext.func1"),
		goleak.IgnoreTopFunction("github.com/pion/dtls/v3.(*Conn).Read"),
		goleak.IgnoreAnyFunction("github.com/pion/dtls/v3.(*Conn).readAndBuffer"),
		goleak.IgnoreTopFunction("github.com/plgd-dev/go-coap/v3/net/client.(*ReceivedMessageReader[...]).loop"),
	)
}

const testYAML = `
name: t
input: {dtype: float32, shape: [2, 2]}
classes: [a, b]
tiers:
  - {name: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, model: c.onnx, exit: {output: o}}
funnel: {max_request_bytes: 2048}
kafka: {partitions: 2, produce_timeout: 1s}
`

type env struct {
	p    *pipeline.Pipeline
	site *pipeline.SiteView // of p: the funnel's
	srv  *httptest.Server   // the device zone
	dsrv *httptest.Server   // the delivery zone
	cl   *kgo.Client
	f    *Funnel
}

// serve starts both zones of f.
func serve(t *testing.T, f *Funnel) (device, delivery *httptest.Server) {
	device, delivery = httptest.NewServer(f.DeviceHandler()), httptest.NewServer(f.DeliveryHandler())
	t.Cleanup(device.Close)
	t.Cleanup(delivery.Close)
	return device, delivery
}

// setup runs a funnel against an in-process broker (brokerAddr "" ) or
// against brokerAddr.
func setup(t *testing.T, brokerAddr string) *env { return setupYAML(t, brokerAddr, testYAML) }

func setupYAML(t *testing.T, brokerAddr, y string) *env {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if brokerAddr == "" {
		b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		brokerAddr = b.Addr()
	}
	p.Kafka.Brokers = []string{brokerAddr}
	cl, err := kafka.NewClient(&p.Kafka, "funnel", nil, nil, ProducerOptions(&p.Kafka)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	site := onlySite(t, p)
	f := New(site, cl, nil, nil)
	srv, dsrv := serve(t, f)
	return &env{p: p, site: site, srv: srv, dsrv: dsrv, cl: cl, f: f}
}

func (e *env) post(t *testing.T, path, contentType string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	base := e.dsrv.URL // the pipeline's own routes
	if path == httpapi.PathIngest {
		base = e.srv.URL
	}
	return postURL(t, base+path, contentType, body, hdr)
}

// postURL posts body to url with contentType (none if "") and the headers
// hdr, and returns the response with its body read.
func postURL(t *testing.T, url, contentType string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}

// records reads everything in topic.
func (e *env) records(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(e.cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total == 0 {
		return nil
	}
	// A fetch that finds a partition empty waits at most 100ms for it (not
	// kgo's 5s), so a partition that joins the fetch late is read soon.
	c, err := kgo.NewClient(kgo.SeedBrokers(e.site.Kafka.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records from %s: %v", len(out), total, topic, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func floats(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func TestIngestWritesAfterAck(t *testing.T) {
	e := setup(t, "")
	resp, body := e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), map[string]string{HeaderDeviceID: "dev-1", HeaderMessageID: "m-1"})
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(body, `"id":"m-1"`) {
		t.Fatalf("raw ingest: %d %s", resp.StatusCode, body)
	}
	resp, body = e.post(t, httpapi.PathIngest, "application/json", []byte(`{"device":"dev-2","data":[0.5,1,1.5,2]}`), nil)
	var ir IngestResponse
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal([]byte(body), &ir) != nil || len(ir.ID) != 32 {
		t.Fatalf("json ingest: %d %s", resp.StatusCode, body)
	}
	recs := e.records(t, "t.edge.in")
	if len(recs) != 2 {
		t.Fatalf("%d records in t.edge.in, want 2", len(recs))
	}
	byID := map[string]wire.Message{}
	for _, r := range recs {
		m := decodeRecord(t, r)
		if string(r.Key) != m.Device || m.Route != "edge" || m.SentAt.IsZero() {
			t.Errorf("record key %q, message %+v", r.Key, m)
		}
		byID[m.ID] = m
	}
	if m := byID["m-1"]; m.Device != "dev-1" || !bytes.Equal(m.Tensor.Data, floats(1, 2, 3, 4)) {
		t.Errorf("raw message %+v", m)
	}
	if m := byID[ir.ID]; m.Device != "dev-2" || !bytes.Equal(m.Tensor.Data, floats(0.5, 1, 1.5, 2)) {
		t.Errorf("json message %+v", m)
	}
}

// TestIngestBadInput: each bad request is refused with its own status and
// nothing reaches Kafka.
func TestIngestBadInput(t *testing.T) {
	e := setup(t, "")
	nan := floats(1, float32(math.NaN()), 3, 4)
	for _, tc := range []struct {
		name, path, ct string
		body           []byte
		status         int
		want           string
	}{
		{"malformed json", httpapi.PathIngest, "application/json", []byte(`{"data":[1,2,`), 400, "data"},
		{"json wrong count", httpapi.PathIngest, "application/json", []byte(`{"data":[1,2,3]}`), 400, "want {"},
		{"raw wrong count", httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3), 400, "raw body has 12 bytes, want 16: float32 [2 2]"},
		{"NaN", httpapi.PathIngest, "application/octet-stream", nan, 400, "element 1 is NaN"},
		{"unknown content type", httpapi.PathIngest, "text/plain", []byte("x"), 415, "application/json"},
		{"oversized", httpapi.PathIngest, "application/json", bytes.Repeat([]byte(" "), 4096), 413, "over the limit of 2048"},
		{"unknown route", "/v1/nope", "application/json", []byte("{}"), 404, "no route POST /v1/nope"},
		{"unknown tier", httpapi.PathTiers + "fog", wire.ContentTypeJSON, []byte(`{"messages":[]}`), 404, `no tier \"fog\"`},
		{"bad tier batch", httpapi.PathTiers + "cloud", wire.ContentTypeJSON, []byte(`{"messages":[{"x":1}]}`), 400, "x"},
		{"bad results", httpapi.PathResults, "application/json", []byte(`[{"id":1}]`), 400, "result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(t, tc.path, tc.ct, tc.body, nil)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("%d %s; want %d containing %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	for _, topic := range e.p.Topics() {
		if n := len(e.records(t, topic)); n != 0 {
			t.Errorf("%d records in %s after bad requests", n, topic)
		}
	}
}

func TestInternalRoutes(t *testing.T) {
	e := setup(t, "")
	msgs := []wire.Message{
		{ID: "a", Tensor: wire.Float32Tensor([]int{3}, []float32{1, 2, 3})},
		{ID: "b", Device: "d", Tensor: wire.Float32Tensor([]int{3}, []float32{4, 5, 6})},
	}
	body, _ := wire.AppendMessages(nil, wire.Binary, msgs)
	if resp, b := e.post(t, httpapi.PathTiers+"cloud", wire.ContentTypeBinary, body, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("tier delivery: %d %s", resp.StatusCode, b)
	}
	rs := []wire.Result{{ID: "a", Tier: "cloud", Class: 1, Label: "b", Confidence: 0.9, ExitedAt: time.Now().UTC()}}
	body, _ = wire.AppendResults(nil, rs)
	if resp, b := e.post(t, httpapi.PathResults, "application/json", body, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("results delivery: %d %s", resp.StatusCode, b)
	}
	if n := len(e.records(t, "t.cloud.in")); n != 2 {
		t.Errorf("%d records in t.cloud.in, want 2", n)
	}
	res := e.records(t, "t.results")
	if len(res) != 1 {
		t.Fatalf("%d results", len(res))
	}
	r, err := wire.DecodeResult(res[0].Value)
	if err != nil || r.ID != "a" || r.Label != "b" {
		t.Errorf("result %+v, %v", r, err)
	}
}

// TestKafkaUnreachable: with no broker the funnel answers 503 with
// Retry-After within its produce timeout instead of hanging.
func TestKafkaUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	e := setup(t, addr)
	start := time.Now()
	resp, body := e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), nil)
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("%d %s, Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if took > 5*time.Second {
		t.Errorf("answer took %s with a 1s produce timeout", took)
	}
}

func TestDrain(t *testing.T) {
	e := setup(t, "")
	if resp, _ := e.post(t, httpapi.PathDrain, "", nil, nil); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	resp, body := e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("ingest while draining: %d %s", resp.StatusCode, body)
	}
	body2, _ := wire.AppendMessages(nil, wire.Binary, []wire.Message{{ID: "a", Tensor: wire.Float32Tensor([]int{1}, []float32{1})}})
	if resp, b := e.post(t, httpapi.PathTiers+"cloud", wire.ContentTypeBinary, body2, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("internal delivery while draining: %d %s", resp.StatusCode, b)
	}
}

// decodeRecord reads a record the funnel wrote.
func decodeRecord(t *testing.T, r *kgo.Record) wire.Message {
	t.Helper()
	var hs []wire.Header
	for _, h := range r.Headers {
		hs = append(hs, wire.Header{Key: h.Key, Value: h.Value})
	}
	m, err := wire.DecodeRecord(r.Key, r.Value, hs, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRecordLimits: the default ingest limit follows from the input; a
// device's id cannot make its record large (ids are at most 128 bytes),
// and a delivery whose record would be over kafka.max_record_bytes is
// refused with 413 before it reaches Kafka.
func TestRecordLimits(t *testing.T) {
	y := strings.Replace(testYAML, "funnel: {max_request_bytes: 2048}\n", "", 1)
	e := setupYAML(t, "", strings.Replace(y, "kafka: {", "kafka: {max_record_bytes: 8192, ", 1))
	if got, want := e.site.Funnel.MaxRequestBytes, e.p.Input.IngestBytes(); got != want {
		t.Errorf("default funnel.max_request_bytes %d, want %d", got, want)
	}
	long := strings.Repeat("x", 10000)
	resp, body := e.post(t, httpapi.PathIngest, "application/json", []byte(`{"id":"`+long+`","data":[1,2,3,4]}`), nil)
	if resp.StatusCode != 400 || !strings.Contains(body, `JSON \"id\": 10000 bytes, over the limit of 128`) {
		t.Errorf("%d %s; want 400 naming the id rule", resp.StatusCode, body)
	}
	big, _ := wire.AppendMessages(nil, wire.Binary, []wire.Message{{ID: "big", Tensor: wire.Float32Tensor([]int{2500}, make([]float32, 2500))}})
	resp, body = e.post(t, httpapi.PathTiers+"cloud", wire.ContentTypeBinary, big, nil)
	if resp.StatusCode != 413 || !strings.Contains(body, "over kafka.max_record_bytes 8192") {
		t.Errorf("%d %s; want 413 naming kafka.max_record_bytes", resp.StatusCode, body)
	}
	resp, body = e.post(t, httpapi.PathIngest, "application/json", []byte(`{"id":"short","data":[1,2,3,4]}`), nil)
	if resp.StatusCode != 202 {
		t.Errorf("%d %s after a refused request", resp.StatusCode, body)
	}
	if n := len(e.records(t, e.p.InputTopic("edge"))); n != 1 {
		t.Errorf("%d records, want only the accepted one", n)
	}
	if n := len(e.records(t, e.p.InputTopic("cloud"))); n != 0 {
		t.Errorf("%d records in the cloud tier, want none", n)
	}
}

// onlySite is the view of p's only site.
func onlySite(t *testing.T, p *pipeline.Pipeline) *pipeline.SiteView {
	t.Helper()
	sites := p.Sites()
	if len(sites) != 1 {
		t.Fatalf("pipeline %q has %d sites, want one", p.Name, len(sites))
	}
	v, err := p.OnSite(sites[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
