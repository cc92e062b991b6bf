package funnel

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// sitesYAML runs the edge tier and the results on site edge, the cloud
// tier on site cloud.
const sitesYAML = `
name: t
input: {dtype: float32, shape: [2, 2]}
classes: [a, b]
sites:
  - {name: edge, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0}, admin: {listen: 127.0.0.1:0}}
  - {name: cloud, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, site: cloud, model: c.onnx, exit: {output: o}}
kafka: {partitions: 2, produce_timeout: 1s}
`

// setupSites starts one Kafka per site of y and returns each site's
// funnel, by site name.
func setupSites(t *testing.T, y string) map[string]*env {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	testsupport.SiteClusters(t, p)
	envs := map[string]*env{}
	for _, s := range p.Sites() {
		sp, err := p.OnSite(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kafka.NewClient(&sp.Kafka, "funnel", nil, nil, ProducerOptions(&sp.Kafka)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		f := New(sp, cl, nil, nil)
		srv, dsrv := serve(t, f)
		envs[s.Name] = &env{p: p, site: sp, srv: srv, dsrv: dsrv, cl: cl, f: f}
	}
	return envs
}

// TestSiteRouting: each route on each site writes to the site's own topic
// when the destination is there, else to the link's uplink queue with the
// route header; device data goes only to the first tier's site.
func TestSiteRouting(t *testing.T) {
	envs := setupSites(t, sitesYAML)
	msgs := func(id string) []byte {
		b, _ := wire.AppendMessages(nil, wire.Binary, []wire.Message{{ID: id, Device: "d", Tensor: wire.Float32Tensor([]int{2}, []float32{1, 2})}})
		return b
	}
	result := func(id string) []byte {
		b, _ := wire.AppendResults(nil, []wire.Result{{ID: id, Tier: "edge", Class: 1, Label: "b", Confidence: 0.9, ExitedAt: time.Now().UTC()}})
		return b
	}
	for _, tc := range []struct {
		site, path, ct string
		body           []byte
		topic, route   string // route "": no header
		id             string
	}{
		{"edge", httpapi.PathTiers + "edge", wire.ContentTypeBinary, msgs("e-edge"), "t.edge.in", "", "e-edge"},
		{"edge", httpapi.PathTiers + "cloud", wire.ContentTypeBinary, msgs("e-cloud"), "t.uplink.cloud", "tier:cloud", "e-cloud"},
		{"edge", httpapi.PathResults, "application/json", result("e-res"), "t.results", "", "e-res"},
		{"cloud", httpapi.PathTiers + "cloud", wire.ContentTypeBinary, msgs("c-cloud"), "t.cloud.in", "", "c-cloud"},
		{"cloud", httpapi.PathTiers + "edge", wire.ContentTypeBinary, msgs("c-edge"), "t.uplink.edge", "tier:edge", "c-edge"},
		{"cloud", httpapi.PathResults, "application/json", result("c-res"), "t.uplink.edge", "results", "c-res"},
	} {
		e := envs[tc.site]
		if resp, b := e.post(t, tc.path, tc.ct, tc.body, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s %s: %d %s", tc.site, tc.path, resp.StatusCode, b)
		}
		var found bool
		for _, r := range e.records(t, tc.topic) {
			var route string
			for _, h := range r.Headers {
				if h.Key == wire.HeaderRoute {
					route = string(h.Value)
				}
			}
			var id string
			if route == wire.RouteResults || tc.topic == "t.results" {
				res, err := wire.DecodeResult(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				id = res.ID
			} else {
				id = decodeRecord(t, r).ID
			}
			if id != tc.id {
				continue
			}
			found = true
			if route != tc.route {
				t.Errorf("%s %s: record in %s has route %q, want %q", tc.site, tc.path, tc.topic, route, tc.route)
			}
		}
		if !found {
			t.Errorf("%s %s: %s not in %s", tc.site, tc.path, tc.id, tc.topic)
		}
	}
	if n := len(envs["edge"].records(t, "t.uplink.cloud")); n != 1 {
		t.Errorf("%d records in edge's t.uplink.cloud, want 1", n)
	}
	if n := len(envs["cloud"].records(t, "t.uplink.edge")); n != 2 {
		t.Errorf("%d records in cloud's t.uplink.edge, want 2", n)
	}

	resp, body := envs["cloud"].post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), nil)
	if want := `site \"cloud\" takes no device data: send it to the funnel of site \"edge\"`; resp.StatusCode != http.StatusNotFound || !strings.Contains(body, want) {
		t.Errorf("ingest on cloud: %d %s; want 404 with %s", resp.StatusCode, body, want)
	}
	if resp, body := envs["edge"].post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("ingest on edge: %d %s", resp.StatusCode, body)
	}
}
