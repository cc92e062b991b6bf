package inspect

import (
	"bytes"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// twoSitesYAML is an edge tier on site edge, a cloud tier and the results
// on site cloud.
const twoSitesYAML = `
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
sites:
  - {name: edge, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0}, admin: {listen: 127.0.0.1:0}}
  - {name: cloud, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
results: {site: cloud}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}, connector: ` + fast + `}
  - {name: cloud, site: cloud, model: c.onnx, exit: {output: o}, connector: ` + fast + `}
kafka: {partitions: 2}
`

// TestInspectWaitingOnACutLink: on two sites whose link is cut (the
// uplink runs, the remote funnel does not answer), a message forwarded
// to the remote tier and one that exited with its result bound for the
// remote results topic both wait in the uplink queue on the sending
// site: inspect says so, with the partition, the offset and the group's
// position, and the hop that put them there.
func TestInspectWaitingOnACutLink(t *testing.T) {
	p, err := pipeline.Parse([]byte(twoSitesYAML))
	if err != nil {
		t.Fatal(err)
	}
	brokers := testsupport.SiteClusters(t, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cut := ln.Addr().String()
	ln.Close() // nothing answers there: the link is cut
	p.SiteList[1].Funnel.URL = "http://" + cut
	yaml := strings.Replace(twoSitesYAML, `coap_listen: "off"}`, `coap_listen: "off", url: "http://`+cut+`"}`, 1)
	file := writeYAML(t, yaml, brokers)

	startTier(t, p, "edge")
	up, err := connector.New(connector.Config{Pipeline: p, Link: &pipeline.Link{From: "edge", To: "cloud"},
		Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	run(t, up)
	ingest(t, p, map[string]string{"m-fwd": "to-cloud", "m-exit": "to-edge"})
	edge := &p.Sites()[0]
	testsupport.WaitFor(t, 20*time.Second, "2 records in the uplink queue", func() bool {
		return count(t, edge, p.UplinkTopic("cloud")) == 2
	})

	for _, tc := range []struct{ id, route, hops string }{
		{"m-fwd", "tier:cloud", "edge:forward"},
		{"m-exit", "results", "edge:exit"},
	} {
		rep := inspectJSON(t, file, tc.id)
		if tc.id == "m-fwd" {
			var text bytes.Buffer
			if err := Write(&text, &rep); err != nil {
				t.Fatal(err)
			}
			t.Logf("ddnn inspect m-fwd:\n%s", text.String())
		}
		w := rep.Waiting
		if rep.State != StateWaiting || w == nil || w.Site != "edge" || w.Topic != "t.uplink.cloud" || w.Route != tc.route || w.Group != "t.uplink.cloud.connector" {
			t.Fatalf("%s: %+v, want waiting on t.uplink.cloud on site edge, route %s", tc.id, rep, tc.route)
		}
		// Nothing was delivered, so nothing was committed: the group
		// takes the partition from its start, and this record after
		// those before it.
		if w.Committed != -1 || w.Ahead != w.Offset {
			t.Errorf("%s: committed %d, %d ahead at offset %d; want no commit and every record before it ahead", tc.id, w.Committed, w.Ahead, w.Offset)
		}
		if got := hopsOf(rep); got != tc.hops {
			t.Errorf("%s: hops %q, want %q", tc.id, got, tc.hops)
		}
		if in := rep.Ingest; in == nil || in.Site != "edge" || in.WrittenAt == nil || in.Where == nil || in.Where.Topic != "t.edge.in" {
			t.Errorf("%s: ingest %+v, want site edge, its record on t.edge.in", tc.id, rep.Ingest)
		}
		if !rep.Searched.Complete || len(rep.Searched.Topics) != len(p.TopicsOn("edge"))+len(p.TopicsOn("cloud")) {
			t.Errorf("%s: searched %+v, want every topic of both sites", tc.id, rep.Searched.Topics)
		}
	}
}

// acrossSitesYAML is an edge tier on site edge with the results, a cloud
// tier on site cloud.
const acrossSitesYAML = `
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
sites:
  - {name: edge, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0}, admin: {listen: 127.0.0.1:0}}
  - {name: cloud, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}, connector: ` + fast + `}
  - {name: cloud, site: cloud, model: c.onnx, exit: {output: o}, connector: ` + fast + `}
kafka: {partitions: 2}
`

// TestInspectAcrossSites: a message that crossed to the cloud site and
// whose result came back to the edge's results topic, each crossing by a
// real uplink and the other site's real funnel, which write new records:
// its result record carries no hop, so inspect reads the hops from the
// records each tier wrote on its own site (the uplink queues), and only
// the topics that may hold them.
func TestInspectAcrossSites(t *testing.T) {
	p, err := pipeline.Parse([]byte(acrossSitesYAML))
	if err != nil {
		t.Fatal(err)
	}
	brokers := testsupport.SiteClusters(t, p)
	file := writeYAML(t, acrossSitesYAML, brokers)
	for i := range p.SiteList {
		site, err := p.OnSite(p.SiteList[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kafka.NewClient(&site.Kafka, "funnel", nil, nil, funnel.ProducerOptions(&site.Kafka)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		srv := httptest.NewServer(funnel.New(site, cl, nil, nil).DeliveryHandler())
		t.Cleanup(srv.Close)
		p.SiteList[i].Funnel.URL = srv.URL
	}
	startTier(t, p, "edge")
	startTier(t, p, "cloud")
	for _, l := range p.Links() {
		up, err := connector.New(connector.Config{Pipeline: p, Link: &l, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		run(t, up)
	}
	ingest(t, p, map[string]string{"m-cloud": "to-cloud"})
	testsupport.WaitFor(t, 20*time.Second, "the result on the edge", func() bool {
		return count(t, &p.Sites()[0], p.ResultsTopic()) == 1
	})

	rep := inspectJSON(t, file, "m-cloud")
	if rep.State != StateResult || rep.Result.Tier != "cloud" || rep.Result.Where.Site != "edge" {
		t.Fatalf("%+v, want a result at tier cloud on the edge's results topic", rep)
	}
	if got := hopsOf(rep); got != "edge:forward cloud:exit" {
		t.Errorf("hops %q, want the edge's forward and the cloud's exit", got)
	}
	for _, h := range rep.Hops {
		if h.Site != h.Tier || h.Model != modelOf(h.Tier) {
			t.Errorf("hop %+v, want tier %s's site and model", h, h.Tier)
		}
	}
	for _, ts := range rep.Searched.Topics {
		if strings.HasSuffix(ts.Topic, ".dlq") {
			t.Errorf("read %s on %s: a result was found, only the hops were missing", ts.Topic, ts.Site)
		}
	}
}
