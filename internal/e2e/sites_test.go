package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// continuum is deploy/examples/continuum.yaml written with free ports.
type continuum struct {
	file, name string
	kafka      map[string]string // by site
	funnel     map[string]string
	delivery   map[string]string
	admin      map[string]string
}

var continuumSites = []string{"edge", "fog", "cloud"}

// writeContinuum writes the shipped three-site pipeline under a new name
// with free ports, absolute model paths and no CoAP.
func writeContinuum(t testing.TB, name string) continuum {
	t.Helper()
	y := testsupport.Shipped(t, "deploy/examples/continuum.yaml")
	y = strings.Replace(y, "name: fmnist", "name: "+name, 1)
	y = strings.ReplaceAll(y, "coap_listen: 127.0.0.1:5683", `coap_listen: "off"`)
	c := continuum{name: name, kafka: map[string]string{}, funnel: map[string]string{}, delivery: map[string]string{}, admin: map[string]string{}}
	for i, site := range continuumSites {
		c.kafka[site], c.funnel[site], c.delivery[site], c.admin[site] = proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
		y = strings.Replace(y, fmt.Sprintf("delivery_listen: 127.0.0.1:8%d81", i), "delivery_listen: "+c.delivery[site], 1)
		y = strings.Replace(y, fmt.Sprintf("embedded_listen: 127.0.0.1:9%d92", i), "embedded_listen: "+c.kafka[site], 1)
		y = strings.Replace(y, fmt.Sprintf(" listen: 127.0.0.1:8%d80", i), " listen: "+c.funnel[site], 1)
		y = strings.Replace(y, fmt.Sprintf("listen: 127.0.0.1:9%d64", 4+i), "listen: "+c.admin[site], 1)
	}
	c.file = filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(c.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// topicRecords lists the pipeline's topics on the broker at addr with the
// records each holds.
func topicRecords(t testing.TB, addr, name string) map[string]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range ts.Names() {
		if strings.HasPrefix(n, name+".") {
			names = append(names, n)
		}
	}
	got := map[string]int64{}
	if len(names) == 0 {
		return got
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		got[n] = 0
	}
	ends.Each(func(o kadm.ListedOffset) { got[o.Topic] += o.Offset })
	return got
}

// TestSitesMatchEval is the multi-site acceptance run: the continuum's
// three sites on this machine, each with its own embedded broker, funnel
// and admin, run by one `ddnn up`; 2,000 labeled images sent to the edge's
// funnel by 4 senders; every id gets exactly one result, accuracy and
// exits per tier equal `ddnn models eval`; the results topic exists only
// on the results site's broker, the uplink queues carried records, `ddnn
// results` reads the results site, and each site reports its stop.
//
// It runs twice: one `ddnn up` for every site (the continuum in
// miniature), and one `ddnn up --site` per site, as on three machines.
func TestSitesMatchEval(t *testing.T) {
	t.Run("one up", func(t *testing.T) {
		c := writeContinuum(t, "sites")
		p := start(t, "up", "-f", c.file)
		waitSites(t, c, p)
		checkSites(t, c)
		p.term(t)
		checkStopReports(t, p.out.String())
	})
	t.Run("up per site", func(t *testing.T) {
		c := writeContinuum(t, "persite")
		var ps []*proc
		for _, site := range continuumSites {
			p := start(t, "up", "-f", c.file, "--site", site)
			ps = append(ps, p)
			waitSites(t, c, p, site)
		}
		checkSites(t, c)
		var out strings.Builder
		for _, p := range ps {
			p.term(t)
			out.WriteString(p.out.String())
		}
		checkStopReports(t, out.String())
	})
}

// waitSites waits until the given sites (default all) answer /readyz.
func waitSites(t *testing.T, c continuum, p *proc, sites ...string) {
	t.Helper()
	if len(sites) == 0 {
		sites = continuumSites
	}
	testsupport.WaitFor(t, 90*time.Second, "sites ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("ddnn up exited: %v\n%s", p.err, tail(p.out.String(), 60))
		default:
		}
		for _, site := range sites {
			if !ready("http://" + c.admin[site] + "/readyz") {
				return false
			}
		}
		return true
	})
}

// checkStopReports checks that each site reported its tier and uplinks at
// its stop.
func checkStopReports(t *testing.T, out string) {
	t.Helper()
	for _, r := range []string{"site=edge tier=edge unprocessed=0", "site=fog tier=fog unprocessed=0", "site=cloud tier=cloud unprocessed=0",
		"site=edge uplink=fog unprocessed=0", "site=fog uplink=cloud unprocessed=0", "site=fog uplink=edge unprocessed=0", "site=cloud uplink=edge unprocessed=0"} {
		if !strings.Contains(out, r) {
			t.Errorf("stop report lacks %q:\n%s", r, tail(out, 40))
		}
	}
}

// checkSites sends the test set to the edge and checks the results, the
// topics on each site and what crossed the links.
func checkSites(t *testing.T, c continuum) {
	t.Helper()
	sendTestSet(t, c.funnel["edge"], c.kafka["edge"], c.name+".results", c.file, " over 3 sites")

	results := c.name + ".results"
	for _, site := range continuumSites {
		topics := topicRecords(t, c.kafka[site], c.name)
		names := make([]string, 0, len(topics))
		for n, recs := range topics {
			names = append(names, fmt.Sprintf("%s=%d", n, recs))
		}
		slices.Sort(names)
		t.Logf("site %s: %s", site, strings.Join(names, " "))
		if _, ok := topics[results]; ok != (site == "edge") {
			t.Errorf("site %s: %s present %v, want only on the edge", site, results, ok)
		}
	}
	for _, q := range []struct{ site, to string }{{"edge", "fog"}, {"fog", "cloud"}, {"fog", "edge"}, {"cloud", "edge"}} {
		topic := c.name + ".uplink." + q.to
		if n := topicRecords(t, c.kafka[q.site], c.name)[topic]; n == 0 {
			t.Errorf("site %s: %s carried no records", q.site, topic)
		}
	}

	// ddnn results finds the results site on its own.
	out, err := exec.Command(ddnn, "results", "-f", c.file, "--count", "1", "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"id":"img-`) {
		t.Errorf("ddnn results: %v\n%s", err, out)
	}
	// Each site's admin serves its uplinks' link counters.
	for _, l := range []struct{ from, to string }{{"edge", "fog"}, {"fog", "cloud"}, {"fog", "edge"}, {"cloud", "edge"}} {
		resp, err := http.Get("http://" + c.admin[l.from] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "ddnn_link_bytes_total{") || !strings.Contains(string(b), `to="`+l.to+`"`) {
			t.Errorf("site %s's metrics lack ddnn_link_bytes_total to %s", l.from, l.to)
		}
	}
}

// TestSitesMonolithBaseline runs the continuum's cloud-only baseline, the
// alternative the paper measures the continuum against: `ddnn up
// --monolith --ephemeral` places every tier on the cloud, where one
// monolith runs them; the fog has nothing to run and is skipped. 2,000
// labeled images sent to the cloud's funnel each get exactly one result on
// the edge's results topic, carried by the cloud's uplink, with the
// accuracy and exits per tier of `ddnn models eval`.
func TestSitesMonolithBaseline(t *testing.T) {
	c := writeContinuum(t, "mono")
	p := start(t, "up", "-f", c.file, "--monolith", "--ephemeral")
	waitSites(t, c, p, "edge", "cloud")
	out := p.out.String()
	for _, want := range []string{
		`pipeline "mono" site "fog" is skipped`,
		`pipeline "mono" site "cloud" is up as the monolith baseline: every tier (edge, fog, cloud) in one monolith process`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("announcement lacks %q:\n%s", want, tail(out, 40))
		}
	}
	if ready("http://" + c.admin["fog"] + "/readyz") {
		t.Error("the fog runs")
	}
	sendTestSet(t, c.funnel["cloud"], c.kafka["edge"], c.name+".results", c.file, " cloud-only (monolith on the cloud)")

	cloud := topicRecords(t, c.kafka["cloud"], c.name)
	if n := cloud[c.name+".uplink.edge"]; n < 2000 {
		t.Errorf("the cloud's uplink queue to the edge carried %d records, want every result", n)
	}
	if _, ok := cloud[c.name+".results"]; ok {
		t.Errorf("the cloud holds %s.results; the results live on the edge", c.name)
	}
	p.term(t)
	out = p.out.String()
	for _, r := range []string{"site=cloud tier=edge unprocessed=0", "site=cloud uplink=edge unprocessed=0"} {
		if !strings.Contains(out, r) {
			t.Errorf("stop report lacks %q:\n%s", r, tail(out, 40))
		}
	}
}
