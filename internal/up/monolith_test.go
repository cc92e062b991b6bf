package up_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/up"
)

// fakeRun runs cfg with children that record their flags (fakeChild)
// until every admin in admins is ready, stops it and returns the
// children's argument lines, the log and the announcement.
func fakeRun(t *testing.T, cfg up.Config, admins ...string) (args []string, log, announce string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(fakeChildrenEnv, dir)
	var logBuf, annBuf testsupport.Buffer
	cfg.Out, cfg.Announce, cfg.Logger = &logBuf, &annBuf, slog.New(slog.NewTextHandler(&logBuf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- up.Run(ctx, cfg) }()
	returned := false
	t.Cleanup(func() {
		cancel()
		if !returned {
			<-errc
		}
	})
	for _, a := range admins {
		waitReady(t, "http://"+a+"/readyz", errc, &logBuf)
	}
	for _, a := range admins {
		if m := get(t, "http://"+a+"/metrics"); cfg.Monolith && strings.Contains(m, "ddnn_scaler_") {
			t.Errorf("%s runs a scaler; the monolith takes the tiers' place", a)
		}
	}
	cancel()
	select {
	case err := <-errc:
		returned = true
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, logBuf.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("Run did not return within 15s of the stop:\n%s", logBuf.String())
	}
	return recordedArgs(t, dir), logBuf.String(), annBuf.String()
}

// checkChildren checks that the children ran exactly want (matchArgs).
func checkChildren(t *testing.T, got, want []string) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return matchArgs(g, w) }) {
			t.Errorf("no child ran %q; children:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d children, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}

// TestRunMonolith runs the continuum's cloud-only baseline with children
// that record their flags: every tier on the cloud, which runs its funnel,
// one monolith and the uplink of its results to the edge (through the
// --link-url given for it); the edge runs its funnel for the results; the
// fog has nothing to run and is skipped. Every child is told the
// placement, and the stop reports the monolith's input topic.
func TestRunMonolith(t *testing.T) {
	file, p, sites := writeContinuum(t)
	const wan = "http://127.0.0.1:1/wan/edge"
	edge, cloud := sites["edge"], sites["cloud"]
	args, log, ann := fakeRun(t, up.Config{Pipeline: p, File: file, Monolith: true,
		LinkURLs: map[pipeline.Link]string{{From: "cloud", To: "edge"}: wan}}, edge.admin, cloud.admin)
	checkChildren(t, args, []string{
		childLine("funnel", command.Args(funnel.Command{Role: childRole(file, edge.kafka, "cloud", "info"),
			Site: "edge", Listen: edge.funnel, DeliveryListen: edge.delivery})),
		childLine("funnel", command.Args(funnel.Command{Role: childRole(file, cloud.kafka, "cloud", "info"),
			Site: "cloud", Listen: cloud.funnel, DeliveryListen: cloud.delivery})),
		childLine("monolith", command.Args(monolith.Command{Role: childRole(file, cloud.kafka, "cloud", "info"), Site: "cloud", Admin: "*"})),
		childLine("uplink", command.Args(connector.UplinkCommand{Role: childRole(file, cloud.kafka, "cloud", "info"),
			From: "cloud", To: "edge", ToURL: wan, Serving: connector.Serving{Admin: "*", InstanceID: "up-uplink-edge"}})),
	})
	if c, err := net.Dial("tcp", sites["fog"].kafka); err == nil {
		c.Close()
		t.Error("the fog's broker runs")
	}
	// The caller's pipeline keeps its placement.
	if s := p.SiteOf("edge"); s.Name != "edge" || len(p.Links()) != 4 {
		t.Errorf("Run moved the caller's tiers: edge on %s, links %v", s.Name, p.Links())
	}
	for _, want := range []string{
		`pipeline "fmnist" site "fog" is skipped: nothing runs there in the monolith baseline, every tier on site "cloud" and the results on "edge"`,
		`pipeline "fmnist" site "cloud" is up as the monolith baseline: every tier (edge, fog, cloud) in one monolith process, 3 processes`,
		`pipeline "fmnist" site "edge" is up as the monolith baseline: no tier (every tier on site "cloud"), 1 process`,
		"  send:     POST http://" + cloud.funnel + "/v1/ingest",
		`  uplink:   topic fmnist.uplink.edge to site "edge" (` + wan + `, from --link-url)`,
	} {
		if !strings.Contains(ann, want) {
			t.Errorf("announcement lacks %q:\n%s", want, ann)
		}
	}
	for _, want := range []string{"site=cloud tier=edge unprocessed=0", "site=cloud uplink=edge unprocessed=0"} {
		if !strings.Contains(log, want) {
			t.Errorf("stop report lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "site=fog") {
		t.Errorf("the skipped fog logged:\n%s", log)
	}

	// A lone site with nothing to run says so and returns.
	var announce testsupport.Buffer
	err := up.Run(context.Background(), up.Config{Pipeline: p, File: file, Monolith: true, Site: "fog", Announce: &announce})
	if err != nil || !strings.Contains(announce.String(), `site "fog" is skipped`) {
		t.Errorf("--site fog --monolith: %v, announced %q", err, announce.String())
	}
}

// TestRunMonolithOneSite runs the cloud-only baseline of a pipeline on one
// site: its funnel and one monolith, no replica, connector or scaler.
func TestRunMonolithOneSite(t *testing.T) {
	tp := writePipeline(t)
	// ddnn up's --log-level reaches every child.
	args, log, ann := fakeRun(t, up.Config{Pipeline: tp.p, File: tp.file, Monolith: true, LogLevel: "debug"}, tp.admin)
	checkChildren(t, args, []string{
		childLine("funnel", command.Args(funnel.Command{Role: childRole(tp.file, "*", "local", "debug"),
			Listen: tp.funnel, DeliveryListen: tp.delivery})),
		childLine("monolith", command.Args(monolith.Command{Role: childRole(tp.file, "*", "local", "debug"), Site: "local", Admin: "*"})),
	})
	if want := `pipeline "fmnist" is up as the monolith baseline: 3 tiers in one monolith process, 2 processes`; !strings.Contains(ann, want) {
		t.Errorf("announcement lacks %q:\n%s", want, ann)
	}
	if !strings.Contains(log, "tier=edge unprocessed=0") {
		t.Errorf("no stop report for the monolith's input:\n%s", log)
	}
}

// TestRunLinkURL sends the edge's uplink to the fog through the URL given
// for the link, and refuses a link the pipeline does not have, naming its
// links (after the monolith's placement with Monolith).
func TestRunLinkURL(t *testing.T) {
	file, p, sites := writeContinuum(t)
	const wan = "https://wan.example:8443/fog"
	edge := sites["edge"]
	args, _, ann := fakeRun(t, up.Config{Pipeline: p, File: file, Site: "edge",
		LinkURLs: map[pipeline.Link]string{{From: "edge", To: "fog"}: wan}}, edge.admin)
	want := childLine("uplink", command.Args(connector.UplinkCommand{Role: childRole(file, edge.kafka, "", "info"),
		From: "edge", To: "fog", ToURL: wan, Serving: connector.Serving{Admin: "*", InstanceID: "up-uplink-fog"}}))
	if !slices.ContainsFunc(args, func(g string) bool { return matchArgs(g, want) }) {
		t.Errorf("no child ran %q; children:\n%s", want, strings.Join(args, "\n"))
	}
	if !strings.Contains(ann, `to site "fog" (`+wan+`, from --link-url)`) {
		t.Errorf("announcement does not show the link's URL:\n%s", ann)
	}

	for _, tc := range []struct {
		monolith bool
		link     pipeline.Link
		want     string
	}{
		{false, pipeline.Link{From: "edge", To: "moon"}, `pipeline "fmnist" has no link edge->moon (links: edge->fog, fog->cloud, fog->edge, cloud->edge)`},
		{true, pipeline.Link{From: "edge", To: "fog"}, `pipeline "fmnist" has no link edge->fog (links with every tier on site "cloud": cloud->edge)`},
	} {
		err := up.Run(context.Background(), up.Config{Pipeline: p, File: file, Monolith: tc.monolith,
			LinkURLs: map[pipeline.Link]string{tc.link: "http://127.0.0.1:1"}})
		var le *up.LinkError
		if !errors.As(err, &le) || err.Error() != tc.want {
			t.Errorf("link %s (monolith %v): %v, want %s", tc.link, tc.monolith, err, tc.want)
		}
	}
}

// TestConnectorDrainFollowsStopGrace: ddnn up gives each connector a
// third of its stop grace to drain, in the options the connector parses,
// rather than a number of its own that drifts from the stop's budget.
func TestConnectorDrainFollowsStopGrace(t *testing.T) {
	tp := writePipeline(t)
	args, _, _ := fakeRun(t, up.Config{Pipeline: tp.p, File: tp.file, StopGrace: 30 * time.Second}, tp.admin)
	n := 0
	for _, a := range args {
		if strings.HasPrefix(a, "connector ") {
			n++
			if !strings.Contains(a, " --drain-timeout=10s ") {
				t.Errorf("connector %q: want --drain-timeout=10s, a third of the 30s stop grace", a)
			}
		}
	}
	if n != len(tp.p.Tiers) {
		t.Errorf("%d connectors, want one per tier:\n%s", n, strings.Join(args, "\n"))
	}
}
