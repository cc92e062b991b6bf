package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wan"
)

// A link's summary holds the bytes its proxy counted both ways and the
// messages of every flow routed over it: the devices' from the bench, the
// uplinks' from the sites' /metrics, a chained flow on each of its links.
func TestLinkSummaries(t *testing.T) {
	spec, err := wan.Parse([]byte(`
links:
  - {from: devices, to: edge}
  - {from: edge, to: fog}
  - {from: cloud, to: fog}
  - {from: fog, to: edge}
`))
	if err != nil {
		t.Fatal(err)
	}
	funnel := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer funnel.Close()
	addr := strings.TrimPrefix(funnel.URL, "http://")
	metrics := []string{
		"# TYPE ddnn_link_messages_total counter\nddnn_link_messages_total{from=\"edge\",process=\"uplink-fog\",to=\"fog\"} 7\n",
		"# TYPE ddnn_link_messages_total counter\nddnn_link_messages_total{from=\"cloud\",process=\"uplink-edge\",to=\"edge\"} 3\n",
	}
	var urls []string
	for _, m := range metrics {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, m) }))
		defer s.Close()
		urls = append(urls, s.URL+"/metrics")
	}
	flows := []wan.Flow{
		{From: "devices", To: "edge", Addr: addr},
		{From: "edge", To: "fog", Addr: addr},
		{From: "cloud", To: "edge", Addr: addr},
	}
	targets, routes, err := spec.Plan(flows)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, err := wan.Start(ctx, spec, targets)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(ctx)
	body := strings.Repeat("x", 1000)
	for _, link := range []string{"devices->edge", "cloud->fog"} {
		resp, err := http.Post("http://"+n.Addr(link)+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	net := &Network{Net: n, Spec: spec, Flows: flows, Routes: routes, Metrics: urls}
	var got []LinkSummary
	// The proxy counts bytes as they leave it: wait for the answers' too.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = net.linkSummaries(5, 10*time.Millisecond)
		if got[0].BytesDown > 0 && got[3].BytesDown > 0 {
			break
		}
	}
	want := []struct {
		name     string
		messages int64
		carries  string
		wan      bool
		bytes    bool
	}{
		{"devices->edge", 5, "devices->edge", false, true},
		{"edge->fog", 7, "edge->fog", true, false},
		{"cloud->fog", 3, "cloud->edge", true, true},
		{"fog->edge", 3, "cloud->edge", true, true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d links, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.From+"->"+g.To != w.name || g.Messages != w.messages || strings.Join(g.Carries, ",") != w.carries || g.WAN != w.wan {
			t.Errorf("link %d = %+v, want %+v", i, g, w)
		}
		if g.Bytes != g.BytesUp+g.BytesDown || (g.BytesUp > int64(len(body)) && g.BytesDown > 0) != w.bytes {
			t.Errorf("link %s: bytes %d (up %d, down %d), want traffic %v", w.name, g.Bytes, g.BytesUp, g.BytesDown, w.bytes)
		}
	}
	if WANBytes(got) != got[1].Bytes+got[2].Bytes+got[3].Bytes {
		t.Errorf("WANBytes = %d, want the three site links' %d", WANBytes(got), got[1].Bytes+got[2].Bytes+got[3].Bytes)
	}
}

// A cut's summary splits results by when their message was sent; links
// cut over the same window are one outage.
func TestCutSummaries(t *testing.T) {
	spec, err := wan.Parse([]byte(`
links: [{from: edge, to: fog}, {from: fog, to: edge}]
cuts:
  - {link: edge->fog, at: 10s, for: 5s}
  - {link: fog->edge, at: 10s, for: 5s}
`))
	if err != nil {
		t.Fatal(err)
	}
	rows := []Row{
		{Sent: 1 * time.Second, Results: 1, Tier: "edge", Latency: 10 * time.Millisecond},
		{Sent: 2 * time.Second, Results: 1, Tier: "fog", Latency: 40 * time.Millisecond},
		{Sent: 11 * time.Second, Results: 1, Tier: "edge", Latency: 12 * time.Millisecond},
		{Sent: 12 * time.Second, Results: 1, Tier: "fog", Latency: 4 * time.Second},
		{Sent: 13 * time.Second, Results: 0}, // lost: in no percentile
		{Sent: 16 * time.Second, Results: 1, Tier: "edge", Latency: 99 * time.Millisecond},
	}
	got := (&Network{Spec: spec}).cutSummaries(rows, []string{"edge", "fog"})
	if len(got) != 1 {
		t.Fatalf("got %d cuts, want 1: %+v", len(got), got)
	}
	c := got[0]
	if strings.Join(c.Links, ",") != "edge->fog,fog->edge" || c.AtS != 10 || c.ForS != 5 {
		t.Errorf("cut = %+v", c)
	}
	if c.Before["edge"].Count != 1 || c.Before["edge"].P99 != 10 || c.During["edge"].Count != 1 || c.During["edge"].P99 != 12 {
		t.Errorf("edge before %+v, during %+v", c.Before["edge"], c.During["edge"])
	}
	if c.Before["fog"].P99 != 40 || c.During["fog"].P99 != 4000 {
		t.Errorf("fog before %+v, during %+v", c.Before["fog"], c.During["fog"])
	}
}
