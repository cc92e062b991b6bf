package bench

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wan"
)

// testSite is a site on free loopback addresses with an embedded broker.
func testSite(t *testing.T, name string) pipeline.Site {
	var s pipeline.Site
	s.Name = name
	s.Admin.Listen, s.Funnel.Listen, s.Kafka.EmbeddedListen = proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	return s
}

func TestStartWaitsForEverySiteAndStops(t *testing.T) {
	edge, cloud := testSite(t, "edge"), testSite(t, "cloud")
	dir := t.TempDir()
	up, err := Start(context.Background(), Launch{
		File: "pipeline.yaml", Target: TargetMonolith, Sites: []pipeline.Site{edge, cloud},
		LogDir: dir, Args: []string{"--link-url", "edge->cloud=http://127.0.0.1:1", "ready:" + edge.Admin.Listen + "," + cloud.Admin.Listen}, ReadyTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := up.PID()
	if want := filepath.Join(dir, "monolith.log"); up.LogPath() != want {
		t.Errorf("log at %s, want %s", up.LogPath(), want)
	}
	up.Stop()
	if !proctest.Gone(pid) {
		t.Errorf("ddnn up (pid %d) still exists after Stop", pid)
	}
	b, err := os.ReadFile(filepath.Join(dir, "monolith.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "args: up -f pipeline.yaml --ephemeral --monolith --link-url edge->cloud=http://127.0.0.1:1 ready:"; !strings.Contains(string(b), want) {
		t.Errorf("log lacks %q:\n%s", want, b)
	}
}

func TestStartNotReady(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		sites      int
		want       string // the error's first line, after "bench: "; ADMIN0 and ADMIN1 stand for the sites' admin addresses
		wantTail   bool   // the error shows the log's last 15 lines
	}{
		{"never ready", "silent", 1, "pipeline not ready at http://ADMIN0/readyz within 500ms; its log ends:", true},
		{"exits", "exit", 1, "pipeline exited before it was ready; its log ends:", true},
		{"second site not ready", "ready:ADMIN0", 2, "pipeline not ready at http://ADMIN1/readyz within 500ms; its log ends:", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sites []pipeline.Site
			replacer := []string{}
			for i := range tc.sites {
				s := testSite(t, "site")
				sites = append(sites, s)
				replacer = append(replacer, "ADMIN"+strconv.Itoa(i), s.Admin.Listen)
			}
			r := strings.NewReplacer(replacer...)
			up, err := Start(context.Background(), Launch{File: "p.yaml", Target: TargetPipeline, Sites: sites,
				Args: []string{r.Replace(tc.mode)}, ReadyTimeout: 500 * time.Millisecond})
			if err == nil {
				up.Stop()
				t.Fatal("Start succeeded")
			}
			lines := strings.Split(err.Error(), "\n")
			if want := "bench: " + r.Replace(tc.want); lines[0] != want {
				t.Errorf("error starts %q, want %q", lines[0], want)
			}
			if tc.wantTail { // the log's lines are led by the child's name
				shown := lines[1:]
				ok := len(shown) == 15
				for i := 0; ok && i < 15; i++ {
					ok = strings.HasSuffix(shown[i], " line "+strconv.Itoa(6+i))
				}
				if !ok {
					t.Errorf("error shows the log\n%s\nwant its last 15 lines (line 6 to line 20)", strings.Join(shown, "\n"))
				}
			}
			for _, s := range sites { // stopped: every address free again
				if err := checkFree([]pipeline.Site{s}); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestStartCrashAfterFirstSite: ddnn up exiting while bench waits for a
// later site fails at once, not after that site's timeout.
func TestStartCrashAfterFirstSite(t *testing.T) {
	sites := []pipeline.Site{testSite(t, "edge"), testSite(t, "cloud")}
	start := time.Now()
	up, err := Start(context.Background(), Launch{File: "p.yaml", Target: TargetPipeline, Sites: sites,
		Args: []string{"crash:" + sites[0].Admin.Listen}, ReadyTimeout: time.Minute})
	if err == nil {
		up.Stop()
		t.Fatal("Start succeeded")
	}
	if want := "bench: pipeline exited before it was ready; its log ends:"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "crashed") {
		t.Errorf("error %q, want it to start %q and show the log", err, want)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("failed after %s: it waited for the second site's timeout", d)
	}
}

func TestStartRefusesBusyAddress(t *testing.T) {
	s := testSite(t, "edge")
	ln, err := net.Listen("tcp", s.Funnel.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(context.Background(), Launch{File: "p.yaml", Target: TargetPipeline, Sites: []pipeline.Site{s}, Args: []string{"exit"}})
	want := "bench: " + s.Funnel.Listen + " is in use: is a pipeline already running? stop it, or use --attach to measure it"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

func TestCheckFree(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for _, tc := range []struct {
		name    string
		edit    func(*pipeline.Site)
		wantErr bool
	}{
		{"all free", func(*pipeline.Site) {}, false},
		{"admin in use", func(s *pipeline.Site) { s.Admin.Listen = addr }, true},
		{"funnel in use", func(s *pipeline.Site) { s.Funnel.Listen = addr }, true},
		{"embedded broker in use", func(s *pipeline.Site) { s.Kafka.EmbeddedListen = addr }, true},
		{"external brokers: the embedded address is not used", func(s *pipeline.Site) {
			s.Kafka.EmbeddedListen, s.Kafka.Brokers = addr, []string{"127.0.0.1:9092"}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSite(t, "edge")
			tc.edit(&s)
			err := checkFree([]pipeline.Site{testSite(t, "other"), s})
			switch {
			case tc.wantErr && (err == nil || !strings.Contains(err.Error(), addr+" is in use")):
				t.Errorf("error %v, want one saying %s is in use", err, addr)
			case !tc.wantErr && err != nil:
				t.Error(err)
			}
		})
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		n             int
		want          string
	}{
		{"more lines than asked", "a\nb\nc\nd\n", 2, "c\nd"},
		{"fewer lines than asked", "a\nb\n", 5, "a\nb"},
		{"no final newline", "a\nb\nc", 2, "b\nc"},
		{"empty", "", 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := tail(path, tc.n); got != tc.want {
				t.Errorf("tail %q, want %q", got, tc.want)
			}
		})
	}
	if got := tail(filepath.Join(dir, "missing"), 3); got != "" {
		t.Errorf("tail of a missing file %q, want nothing", got)
	}
}

func TestPlacementAndRunningSites(t *testing.T) {
	p, err := pipeline.Load("../../deploy/examples/continuum.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := func(ss []pipeline.Site) (out []string) {
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	if got := names(RunningSites(p)); !slices.Equal(got, []string{"edge", "fog", "cloud"}) {
		t.Errorf("running sites %v, want edge, fog, cloud", got)
	}
	m := MonolithPlacement(p)
	if m == nil {
		t.Fatal("the continuum cannot be placed on its cloud site")
	}
	for _, tier := range m.Tiers {
		if s := m.SiteOf(tier.Name).Name; s != "cloud" {
			t.Errorf("monolith: tier %s on %s, want cloud", tier.Name, s)
		}
	}
	if s := p.SiteOf(p.Tiers[0].Name).Name; s != "edge" {
		t.Errorf("placing the monolith moved the pipeline's own first tier to %s", s)
	}
	// The results stay on the edge, so it runs too: the fog does not.
	if got := names(RunningSites(m)); !slices.Equal(got, []string{"edge", "cloud"}) {
		t.Errorf("monolith's running sites %v, want edge, cloud", got)
	}
}

func TestCheckNetwork(t *testing.T) {
	p, err := pipeline.Load("../../deploy/examples/continuum.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		links    []wan.Link
		protocol string
		want     []string // the errors' lines
	}{
		{"sites and devices over HTTP", []wan.Link{{From: Devices, To: "edge"}, {From: "edge", To: "fog"}}, ProtocolHTTP, nil},
		{"devices over CoAP", []wan.Link{{From: Devices, To: "edge"}}, ProtocolCoAP, []string{
			"link devices->edge: devices cross an emulated link only over HTTP (CoAP is UDP, and Kafka clients connect to the broker's own address): use --protocol http"}},
		{"between sites over Kafka", []wan.Link{{From: "fog", To: "cloud"}}, ProtocolKafka, nil},
		{"unknown sites, all reported", []wan.Link{{From: "edge", To: "moon"}, {From: "mars", To: "fog"}}, ProtocolHTTP, []string{
			`link edge->moon: "moon" is neither "devices" nor a site of pipeline "fmnist" (edge, fog, cloud)`,
			`link mars->fog: "mars" is neither "devices" nor a site of pipeline "fmnist" (edge, fog, cloud)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckNetwork(p, &wan.Spec{Links: tc.links}, tc.protocol)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestScaleDownWindow(t *testing.T) {
	p, err := pipeline.Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := ScaleDownWindow(p); got != 5*time.Second {
		t.Errorf("no scaled tier: %s, want the 5s margin", got)
	}
	p.Tiers[0].Replicas.Max = p.Tiers[0].Replicas.Min + 2
	p.Tiers[0].Scaling.StabilizationWindow, p.Tiers[0].Scaling.PollInterval = 30*time.Second, time.Second
	p.Tiers[1].Replicas.Max = p.Tiers[1].Replicas.Min + 1
	p.Tiers[1].Scaling.StabilizationWindow, p.Tiers[1].Scaling.PollInterval = 10*time.Second, 2*time.Second
	if got, want := ScaleDownWindow(p), 30*time.Second+5*time.Second+5*time.Second; got != want {
		t.Errorf("window %s, want the longest tier's (30s + 5 polls of 1s) and the 5s margin: %s", got, want)
	}
}

func TestStartNetwork(t *testing.T) {
	p, err := pipeline.Load("../../deploy/examples/continuum.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := &wan.Spec{Links: []wan.Link{{From: Devices, To: "edge"}, {From: "edge", To: "fog"}}}
	for _, tc := range []struct {
		protocol  string
		wantFlows []string
	}{
		{ProtocolHTTP, []string{"devices->edge", "edge->fog", "fog->cloud", "fog->edge", "cloud->edge"}},
		{ProtocolCoAP, []string{"edge->fog", "fog->cloud", "fog->edge", "cloud->edge"}},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			var log testsupport.Buffer
			n, args, err := startNetwork(context.Background(), spec, p, tc.protocol, &log)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Net.Stop(context.Background())
			var flows []string
			for i, f := range n.Flows {
				flows = append(flows, f.Name())
				emulated := f.Name() == "devices->edge" || f.Name() == "edge->fog"
				if emulated != (n.Routes[i] != nil) {
					t.Errorf("flow %s: route %v", f.Name(), n.Routes[i])
				}
			}
			if !slices.Equal(flows, tc.wantFlows) {
				t.Errorf("flows %v, want %v", flows, tc.wantFlows)
			}
			// Only the uplinks are routed by ddnn up; devices post to the proxy themselves.
			if want := []string{"--link-url", "edge->fog=http://" + n.Net.Addr("edge->fog")}; !slices.Equal(args, want) {
				t.Errorf("ddnn up arguments %v, want %v", args, want)
			}
			for _, f := range []string{"fog->cloud", "fog->edge", "cloud->edge"} {
				if want := "bench: no link of the network joins " + f + ": not emulated"; !strings.Contains(log.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, log.String())
				}
			}
		})
	}
}
