package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// sitesYAML puts the edge tier on site edge, the cloud tier and the
// results on site cloud; the arguments are the cloud funnel's URL and each
// site's kafka section.
const sitesYAML = `
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
sites:
  - {name: edge, kafka: %[2]s, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
  - {name: cloud, kafka: %[3]s, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off", url: "%[1]s"}, admin: {listen: 127.0.0.1:0}}
results: {site: cloud}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, site: cloud, model: c.onnx, exit: {output: o}}
kafka: {partitions: 2}
`

// TestUplinkBetweenSites runs each site's funnel, the edge -> cloud uplink
// and the cloud tier's connector as ddnn roles on two brokers: forwards
// and results the edge funnel takes end up on the cloud's Kafka exactly
// once, the cloud connector reads its site's Kafka, device data is refused
// on the cloud, and a pipeline on several sites needs --site.
func TestUplinkBetweenSites(t *testing.T) {
	dir := t.TempDir()
	const embedded = "{embedded_listen: 127.0.0.1:0}"
	var brokers map[string]string
	write := func(name, url string) string {
		k := func(site string) string {
			if b := brokers[site]; b != "" {
				return "{brokers: [" + b + "]}"
			}
			return embedded
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, fmt.Appendf(nil, sitesYAML, url, k("edge"), k("cloud")), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	p, err := pipeline.Load(write("embedded.yaml", "http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	brokers = testsupport.SiteClusters(t, p)
	file := write("p.yaml", "http://127.0.0.1:1")

	if code, _, stderr := run(t, "funnel", "-f", file); code != 2 || !strings.Contains(stderr, `--site is required: pipeline "t" has 2 sites (edge, cloud)`) {
		t.Errorf("funnel without --site: exit %d, %s", code, stderr)
	}
	addrRE := regexp.MustCompile(`POST (http://[^/]+)/v1/ingest .*delivery zone (http://[^ ]+) `)
	funnelURL := func(out *testsupport.Buffer) string { return addrRE.FindStringSubmatch(out.String())[1] }
	deliveryURL := func(out *testsupport.Buffer) string { return addrRE.FindStringSubmatch(out.String())[2] }
	edgeOut, _ := startRole(t, []string{"funnel", "-f", file, "--site", "edge", "--brokers", brokers["edge"]}, "funnel: POST http://")
	cloudOut, _ := startRole(t, []string{"funnel", "-f", file, "--site", "cloud"}, "funnel: POST http://")
	edge, cloud := deliveryURL(edgeOut), funnelURL(cloudOut)
	startRole(t, []string{"uplink", "-f", file, "--from", "edge", "--to", "cloud", "--to-url", deliveryURL(cloudOut) + "/"}, "uplink edge -> cloud: admin on")
	// The cloud tier's connector, on the cloud's Kafka from the YAML.
	var mu sync.Mutex
	invoked := map[string]int{}
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		msgs, err := wire.DecodeMessages(wire.Binary, b)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		for _, m := range msgs {
			invoked[m.ID]++
		}
		mu.Unlock()
	}))
	defer replica.Close()
	startRole(t, []string{"connector", "-f", file, "--tier", "cloud", "--replicas", replica.URL}, "connector cloud: admin on")

	post := func(url, ct string, body []byte) (int, string) {
		t.Helper()
		resp, err := http.Post(url, ct, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const n = 50
	var msgs []wire.Message
	var rs []wire.Result
	for i := range n {
		msgs = append(msgs, wire.Message{ID: fmt.Sprintf("m%d", i), SentAt: time.Now().UTC(), Tensor: wire.Float32Tensor([]int{2}, []float32{1, 2})})
		rs = append(rs, wire.Result{ID: fmt.Sprintf("r%d", i), Tier: "edge", Label: "a", Confidence: 0.9, ExitedAt: time.Now().UTC()})
	}
	for i := 0; i < n; i += 10 {
		body, _ := wire.AppendMessages(nil, wire.Binary, msgs[i:i+10])
		if code, b := post(edge+"/v1/tiers/cloud", wire.ContentTypeBinary, body); code != http.StatusNoContent {
			t.Fatalf("forward to the edge funnel: %d %s", code, b)
		}
		body, _ = wire.AppendResults(nil, rs[i:i+10])
		if code, b := post(edge+"/v1/results", "application/json", body); code != http.StatusNoContent {
			t.Fatalf("results to the edge funnel: %d %s", code, b)
		}
	}
	if code, b := post(cloud+"/v1/ingest", "application/octet-stream", []byte{1, 2, 3, 4}); code != http.StatusNotFound || !strings.Contains(b, `send it to the funnel of site \"edge\"`) {
		t.Errorf("ingest on the cloud funnel: %d %s", code, b)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers["cloud"]), kgo.ConsumeTopics("t.cloud.in", "t.results"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := map[string]int{}
	for len(seen) < 2*n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d records reached the cloud's Kafka", len(seen), 2*n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case "t.results":
				res, err := wire.DecodeResult(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				seen[res.ID]++
			default:
				m, err := wire.DecodeRecord(r.Key, r.Value, nil, nil, "")
				if err != nil || m.Route != "cloud" {
					t.Fatalf("record in %s: %+v, %v", r.Topic, m, err)
				}
				seen[m.ID]++
			}
		})
	}
	// A short wait for duplicates, which nothing failing should make.
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if extra := cl.PollFetches(sctx).NumRecords(); extra > 0 {
		t.Errorf("%d records more than delivered reached the cloud", extra)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s reached the cloud %d times", id, c)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := len(invoked)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cloud connector invoked its replica with %d of %d forwards", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
