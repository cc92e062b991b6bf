package status

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// twoSites is a pipeline of tier edge on site edge and tiers fog and
// cloud on site cloud; the edge's model is a file whose sha256 the test
// knows, the others' are missing. It returns the pipeline, that sha's
// start and the YAML file.
func twoSites(t *testing.T) (p *pipeline.Pipeline, sha, file string) {
	t.Helper()
	dir := t.TempDir()
	model := filepath.Join(dir, "edge.onnx")
	if err := os.WriteFile(model, []byte("not really a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`name: st
input: {dtype: uint8, shape: [4]}
classes: [a, b]
kafka: {partitions: 2}
sites:
  - {name: edge, kafka: {embedded_listen: %s}, funnel: {listen: %s, delivery_listen: %s, coap_listen: "off"}, admin: {listen: %s}}
  - {name: cloud, kafka: {embedded_listen: %s}, funnel: {listen: %s, delivery_listen: %s, coap_listen: "off"}, admin: {listen: %s}}
results: {site: edge}
tiers:
  - {name: edge, site: edge, model: %s, exit: {output: probs, threshold: 0.9}, forward: {output: hidden}, replicas: {min: 1, max: 4}}
  - {name: fog, site: cloud, model: %s, exit: {output: probs, threshold: 0.6}, forward: {output: hidden}}
  - {name: cloud, site: cloud, model: %s, exit: {output: probs}}
`, proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t),
		proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t),
		model, filepath.Join(dir, "fog.onnx"), filepath.Join(dir, "cloud.onnx"))
	file = filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("not really a model"))
	return p, hex.EncodeToString(sum[:])[:12], file
}

// fakeAdmin serves /metrics, whose text metrics makes from the number of
// the read (1, 2, …), and the replica lists in replicas by tier.
func fakeAdmin(t *testing.T, metrics func(n int) string, replicas map[string]string) *httptest.Server {
	var reads atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, metrics(int(reads.Add(1))))
	})
	mux.HandleFunc("GET /v1/tiers/{tier}/replicas", func(w http.ResponseWriter, r *http.Request) {
		list, ok := replicas[r.PathValue("tier")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, list)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func fakeFunnel(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "ready")
	}))
	t.Cleanup(s.Close)
	return s
}

// TestCollect reads two sites from their own brokers and fake admin
// addresses: replicas, lag, rates from the two reads, exit ratio (from
// the admin's metrics, and from the replicas' own where the admin has
// none), service time quantiles, dead letters in all and in the last
// minute, a tier down since when, a link down by its uplink's word and
// one stalled with a backlog, a funnel that does not answer; each tier's
// state and a problem naming each.
func TestCollect(t *testing.T) {
	p, sha, _ := twoSites(t)
	brokers := testsupport.SiteClusters(t, p)
	downSince := time.Now().Add(-42 * time.Second).Truncate(time.Millisecond)
	edgeAdmin := fakeAdmin(t, func(n int) string {
		return fmt.Sprintf(`# TYPE ddnn_connector_fetched_records_total counter
ddnn_connector_fetched_records_total{pipeline="st",process="connector-edge",tier="edge"} %d
ddnn_connector_fetched_records_total{from="edge",to="cloud",process="uplink-cloud"} 10
# TYPE ddnn_connector_decision_records_total counter
ddnn_connector_decision_records_total{kind="results",tier="edge"} 7
# TYPE ddnn_connector_tier_down gauge
ddnn_connector_tier_down{tier="edge"} 0
ddnn_connector_tier_down{from="edge",to="cloud"} 1
# TYPE ddnn_connector_tier_down_since_seconds gauge
ddnn_connector_tier_down_since_seconds{tier="edge"} 0
ddnn_connector_tier_down_since_seconds{from="edge",to="cloud"} %.3f
# TYPE ddnn_connector_invocation_duration_seconds histogram
ddnn_connector_invocation_duration_seconds_bucket{tier="edge",le="0.001"} %d
ddnn_connector_invocation_duration_seconds_bucket{tier="edge",le="0.01"} %d
ddnn_connector_invocation_duration_seconds_bucket{tier="edge",le="+Inf"} %d
ddnn_connector_invocation_duration_seconds_sum{tier="edge"} 1
ddnn_connector_invocation_duration_seconds_count{tier="edge"} %d
# TYPE ddnn_inference_exits_total counter
ddnn_inference_exits_total{process="edge-1",tier="edge"} 40
ddnn_inference_exits_total{process="edge-2",tier="edge"} 20
# TYPE ddnn_inference_forwards_total counter
ddnn_inference_forwards_total{process="edge-1",tier="edge"} 30
ddnn_inference_forwards_total{process="edge-2",tier="edge"} 10
# TYPE ddnn_scaler_replicas gauge
ddnn_scaler_replicas{state="desired",tier="edge"} 3
ddnn_scaler_replicas{state="ready",tier="edge"} 1
`, 100*n, float64(downSince.UnixMilli())/1e3, 50*(n-1), 100*(n-1), 100*(n-1), 100*(n-1))
	}, map[string]string{"edge": `[{"id":"edge-1","url":"http://127.0.0.1:1"},{"id":"edge-2","url":"http://127.0.0.1:2"}]`})
	fogReplica := fakeAdmin(t, func(int) string {
		return "ddnn_inference_exits_total{tier=\"fog\"} 5\nddnn_inference_forwards_total{tier=\"fog\"} 15\n"
	}, nil)
	cloudAdmin := fakeAdmin(t, func(n int) string {
		return fmt.Sprintf(`ddnn_connector_fetched_records_total{tier="fog"} %d
ddnn_connector_decision_records_total{kind="uplink",tier="fog"} %d
ddnn_connector_tier_down{tier="fog"} 0
ddnn_connector_fetched_records_total{tier="cloud"} 9
ddnn_connector_tier_down{tier="cloud"} 1
ddnn_connector_tier_down_since_seconds{tier="cloud"} %.3f
ddnn_connector_fetched_records_total{from="cloud",to="edge"} 4
ddnn_connector_tier_down{from="cloud",to="edge"} 0
ddnn_link_messages_total{from="cloud",to="edge"} 4
`, 10*n, 10*n, float64(downSince.UnixMilli())/1e3)
	}, map[string]string{"fog": `[{"id":"fog-1","url":"` + fogReplica.URL + `"}]`, "cloud": `[]`})
	edgeFunnel := fakeFunnel(t)
	for i := range p.SiteList {
		s := &p.SiteList[i]
		switch s.Name {
		case "edge":
			s.Admin.Listen, s.Funnel.URL = strings.TrimPrefix(edgeAdmin.URL, "http://"), edgeFunnel.URL
		case "cloud":
			s.Admin.Listen = strings.TrimPrefix(cloudAdmin.URL, "http://") // its funnel is not running
		}
	}

	// Kafka: the edge's input holds 150 records, 30 committed; its
	// dead-letter topic 2 from an hour ago; the fog's 3 from now; the
	// cloud's uplink queue 5 never delivered.
	produce := func(site, topic string, n int, ts time.Time) {
		cl := testsupport.KafkaClient(t, kgo.SeedBrokers(brokers[site]))
		for range n {
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte("x"), Timestamp: ts}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce("edge", p.InputTopic("edge"), 150, time.Now())
	produce("edge", p.DLQTopic("edge"), 2, time.Now().Add(-time.Hour))
	produce("cloud", p.DLQTopic("fog"), 3, time.Now())
	produce("cloud", p.UplinkTopic("edge"), 5, time.Now())
	adm := kadm.NewClient(testsupport.KafkaClient(t, kgo.SeedBrokers(brokers["edge"])))
	ends, err := adm.ListEndOffsets(context.Background(), p.InputTopic("edge"))
	if err != nil {
		t.Fatal(err)
	}
	commit := kadm.Offsets{}
	left := int64(30)
	ends.Each(func(o kadm.ListedOffset) {
		at := min(o.Offset, left)
		left -= at
		commit.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: at})
	})
	if _, err := adm.CommitOffsets(context.Background(), p.ConsumerGroup("edge"), commit); err != nil {
		t.Fatal(err)
	}

	window := 300 * time.Millisecond
	snap, err := Collect(context.Background(), p, Options{RateWindow: window, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Pipeline != "st" || len(snap.Sites) != 2 {
		t.Fatalf("snapshot %+v, want pipeline st, 2 sites", snap)
	}
	edge, cloud := snap.Sites[0], snap.Sites[1]
	if !edge.Kafka.Up || !edge.Funnel.Up || !edge.Admin.Up || !cloud.Kafka.Up || cloud.Funnel.Up || !cloud.Admin.Up {
		t.Errorf("endpoints: edge %+v %+v %+v, cloud %+v %+v %+v; want all up but the cloud's funnel",
			edge.Kafka, edge.Funnel, edge.Admin, cloud.Kafka, cloud.Funnel, cloud.Admin)
	}

	et := edge.Tiers[0]
	if et.Model.SHA256 != sha || et.Runtime != pipeline.RuntimeProcess {
		t.Errorf("edge model %+v runtime %q, want sha %s, process", et.Model, et.Runtime, sha)
	}
	if et.ReadyReplicas != 2 || et.DesiredReplicas != 3 || et.MinReplicas != 1 || et.MaxReplicas != 4 {
		t.Errorf("edge replicas ready %d desired %d (%d..%d), want 2 listed, 3 desired, 1..4", et.ReadyReplicas, et.DesiredReplicas, et.MinReplicas, et.MaxReplicas)
	}
	if et.Lag != 120 || et.DeadLetters != 2 || et.DeadLettersLastMinute != 0 {
		t.Errorf("edge lag %d, dead letters %d (%d last minute), want 120, 2 (0)", et.Lag, et.DeadLetters, et.DeadLettersLastMinute)
	}
	// 100 records fetched between two reads at least window apart.
	if et.InRate <= 0 || et.InRate > 100/window.Seconds() || et.OutRate != 0 {
		t.Errorf("edge in %.1f/s out %.1f/s, want in in (0, %.0f], out 0", et.InRate, et.OutRate, 100/window.Seconds())
	}
	if et.ExitRatio == nil || *et.ExitRatio != 0.6 {
		t.Errorf("edge exit ratio %v, want 60 of 100", et.ExitRatio)
	}
	if et.P50Seconds == nil || et.P99Seconds == nil || math.Abs(*et.P50Seconds-0.001) > 1e-9 || math.Abs(*et.P99Seconds-0.00982) > 1e-9 {
		t.Errorf("edge p50 %v p99 %v, want 1 ms and 9.82 ms (50 invocations up to 1 ms, 50 up to 10 ms)", et.P50Seconds, et.P99Seconds)
	}
	if et.State != StateLagging || et.Down {
		t.Errorf("edge state %q, want lagging (120 records behind, none put out)", et.State)
	}

	fog, ct := cloud.Tiers[0], cloud.Tiers[1]
	if fog.DeadLetters != 3 || fog.DeadLettersLastMinute != 3 || fog.State != StateDeadLettering {
		t.Errorf("fog: %d dead letters (%d last minute), state %q; want 3, 3, dead-lettering", fog.DeadLetters, fog.DeadLettersLastMinute, fog.State)
	}
	if fog.ExitRatio == nil || *fog.ExitRatio != 0.25 || fog.ReadyReplicas != 1 || fog.Model.SHA256 != "" {
		t.Errorf("fog exit ratio %v (from its replica's metrics), ready %d, model %+v; want 0.25, 1, no sha of a missing file", fog.ExitRatio, fog.ReadyReplicas, fog.Model)
	}
	if fog.InRate <= 0 || fog.OutRate <= 0 || fog.P50Seconds != nil {
		t.Errorf("fog in %.1f out %.1f p50 %v, want rates, no p50 without invocations", fog.InRate, fog.OutRate, fog.P50Seconds)
	}
	if !ct.Down || ct.DownSince == nil || !ct.DownSince.Equal(downSince) || ct.State != StateDown || ct.ReadyReplicas != 0 {
		t.Errorf("cloud down %v since %v, state %q, ready %d; want down since %s, 0 ready", ct.Down, ct.DownSince, ct.State, ct.ReadyReplicas, downSince)
	}

	if len(edge.Uplinks) != 1 || len(cloud.Uplinks) != 1 {
		t.Fatalf("uplinks: edge %+v, cloud %+v; want edge->cloud and cloud->edge", edge.Uplinks, cloud.Uplinks)
	}
	if u := edge.Uplinks[0]; u.To != "cloud" || u.Up || u.DownSince == nil || !u.DownSince.Equal(downSince) || u.Backlog != 0 {
		t.Errorf("edge->cloud %+v, want down (its uplink says so) since %s", u, downSince)
	}
	if u := cloud.Uplinks[0]; u.To != "edge" || u.Up || u.Backlog != 5 || u.DownSince != nil || !strings.Contains(u.Error, "5 records waiting and none delivered") {
		t.Errorf("cloud->edge %+v, want down: a backlog of 5 and nothing delivered", u)
	}

	want := []string{
		"tier edge: lagging: 120 records behind",
		"site cloud: funnel " + p.SiteList[1].Funnel.URL + " did not answer",
		"tier fog: dead-lettering: 3 dead letters in the last minute (3 in st.fog.dlq)",
		"tier cloud: down since " + downSince.UTC().Format(time.RFC3339),
		"tier cloud: no replica ready of 1 desired",
		"link edge->cloud: down since",
		"link cloud->edge: down: 5 records waiting",
	}
	all := strings.Join(snap.Problems, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("problems lack %q:\n%s", w, all)
		}
	}
	if len(snap.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(snap.Problems), len(want), all)
	}
}

// TestCollectNotRunning: nothing of the pipeline answers; every site's
// Kafka, funnel and admin address is down with why, the tiers unknown,
// and ddnn status fails with one line naming each.
func TestCollectNotRunning(t *testing.T) {
	p, _, _ := twoSites(t)
	for i := range p.SiteList { // nothing listens on the addresses FreeAddr gave
		p.SiteList[i].Funnel.URL = "http://" + p.SiteList[i].Funnel.DeliveryListen
	}
	start := time.Now()
	snap, err := Collect(context.Background(), p, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("collected in %s", time.Since(start).Round(time.Millisecond))
	for _, s := range snap.Sites {
		for what, e := range map[string]Endpoint{"kafka": s.Kafka, "funnel": s.Funnel, "admin": s.Admin} {
			if e.Up || e.Error == "" || e.Address == "" {
				t.Errorf("site %s %s: %+v, want down with an address and why", s.Name, what, e)
			}
		}
		for _, tier := range s.Tiers {
			if tier.State != StateUnknown {
				t.Errorf("tier %s: state %q, want unknown", tier.Name, tier.State)
			}
		}
	}
	err = unanswered(snap)
	if err == nil {
		t.Fatal("no error for a pipeline that is not running")
	}
	lines := strings.Split(err.Error(), "\n")
	if lines[0] != "pipeline st is not running: nothing answered" || len(lines) != 7 {
		t.Fatalf("error:\n%s\nwant a first line and one per site's kafka, funnel and admin", err)
	}
	for i, s := range p.SiteList {
		for j, want := range []string{"site " + s.Name + ": kafka " + s.Kafka.EmbeddedListen, "site " + s.Name + ": funnel http://" + s.Funnel.DeliveryListen, "site " + s.Name + ": admin " + s.Admin.Listen} {
			if got := lines[1+3*i+j]; !strings.HasPrefix(got, "  "+want+": ") || !strings.Contains(got, "refused") {
				t.Errorf("line %q, want %q and why", got, want)
			}
		}
	}
}

// TestCollectUnknownSite: a site the pipeline lacks is an error naming
// the ones it has.
func TestCollectUnknownSite(t *testing.T) {
	p, _, _ := twoSites(t)
	_, err := Collect(context.Background(), p, Options{Site: "moon"})
	if err == nil || !strings.Contains(err.Error(), `no site "moon" (sites: edge, cloud)`) {
		t.Errorf("err = %v, want one naming the sites", err)
	}
}

// TestReaderScrapesOncePerRead: a Reader's first read scrapes each admin
// address twice, RateWindow apart; the next, within MaxGap, once, with
// the rates over the time since the read before.
func TestReaderScrapesOncePerRead(t *testing.T) {
	p, _, _ := twoSites(t)
	testsupport.SiteClusters(t, p)
	var scrapes [2]atomic.Int32
	admin := func(site int) *httptest.Server {
		return fakeAdmin(t, func(n int) string {
			scrapes[site].Store(int32(n))
			return fmt.Sprintf("# TYPE ddnn_connector_fetched_records_total counter\nddnn_connector_fetched_records_total{pipeline=\"st\",tier=%q} %d\n", []string{"edge", "cloud"}[site], 100*n)
		}, map[string]string{})
	}
	for i := range p.SiteList {
		s := &p.SiteList[i]
		s.Admin.Listen = strings.TrimPrefix(admin(i).URL, "http://")
	}
	r := NewReader(p, Options{RateWindow: 200 * time.Millisecond, Timeout: 5 * time.Second})
	for read, want := range []int32{2, 3, 4} {
		snap, err := r.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for site := range scrapes {
			if got := scrapes[site].Load(); got != want {
				t.Errorf("read %d: site %d's admin scraped %d times in all, want %d", read+1, site, got, want)
			}
		}
		if in := snap.Sites[0].Tiers[0].InRate; in <= 0 {
			t.Errorf("read %d: edge in rate %v, want the 100 records between two scrapes over the time between them", read+1, in)
		}
	}
}
