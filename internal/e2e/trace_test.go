package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/jaegertest"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wan"
)

// TestTraceAcrossSites is the traces acceptance run: the shipped
// three-site continuum, its uplinks across the shipped WAN (wan.yaml,
// proxies started here), every role exporting to a real Jaeger at
// sample_ratio 1, and the edge and fog made to forward everything. Each
// device sends its own W3C traceparent. A message that crossed the three
// sites gets ONE trace, found by service, whose spans form one parent
// chain from the device's ingest to the publish of its result, in the
// order it travelled, each span continuing the one before, with the
// tier names and the models' sha256 prefixes as attributes, and its
// uplink calls through the WAN links' proxies.
func TestTraceAcrossSites(t *testing.T) {
	j := jaegertest.New(t, root(t))
	c := writeContinuum(t, "traced")
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	// Edge and fog exit only on a one-hot answer: messages go to the cloud.
	for _, th := range []string{"policy: max_prob\n      threshold: 0.9", "policy: max_prob\n      threshold: 0.6"} {
		if !strings.Contains(y, th) {
			t.Fatalf("continuum.yaml has no %q", th)
		}
		y = strings.Replace(y, th, "policy: margin\n      threshold: 1", 1)
	}
	y += fmt.Sprintf("telemetry:\n  otlp_endpoint: %s\n  sample_ratio: 1\n", j.OTLP)
	if err := os.WriteFile(c.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(c.file)
	if err != nil {
		t.Fatal(err)
	}
	links, linkArgs := startWAN(t, p)

	up := start(t, append([]string{"up", "-f", c.file}, linkArgs...)...)
	waitSites(t, c, up)

	// Five images, each with the device's own trace.
	const n = 5
	ds := testSet(t)
	traces := map[string]string{} // message id → trace id
	devSpans := map[string]string{}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		id := "traced-" + strconv.Itoa(i)
		tid, sid := randHex(16), randHex(8)
		traces[id], devSpans[id] = tid, sid
		req, _ := http.NewRequest("POST", "http://"+c.funnel["edge"]+"/v1/ingest", bytes.NewReader(ds.Samples[i]))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Message-Id", id)
		req.Header.Set("traceparent", "00-"+tid+"-"+sid+"-01")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("ingest %s: status %d", id, resp.StatusCode)
		}
	}
	results := collectResults(t, c.kafka["edge"], c.name+".results", "traced-", n, 60*time.Second)
	var cloud []string
	for id, rs := range results {
		if rs[0].Tier == "cloud" {
			cloud = append(cloud, id)
		}
	}
	if len(cloud) == 0 {
		t.Fatalf("no message reached the cloud: %v", results)
	}
	slices.Sort(cloud)
	id := cloud[0]
	tid := traces[id]

	// The trace is found by service, then read whole once its result's
	// publish arrived (every role exports in batches).
	resultOp := c.name + ".results publish"
	var tr jaegertest.Trace
	ctx := context.Background()
	testsupport.WaitFor(t, 30*time.Second, "the trace of "+id+" in jaeger with its result", func() bool {
		ts, err := j.Traces(ctx, "ddnn-funnel", 100)
		if err != nil || !slices.ContainsFunc(ts, func(x jaegertest.Trace) bool { return x.TraceID == tid }) {
			return false
		}
		tr, err = j.Trace(ctx, tid)
		return err == nil && slices.ContainsFunc(tr.Spans, func(s jaegertest.Span) bool { return s.OperationName == resultOp })
	})
	// Every role flushes its spans when it stops: after the stop, the
	// trace holds everything that will ever be in it.
	up.term(t)
	if tr, err = j.Trace(ctx, tid); err != nil {
		t.Fatal(err)
	}
	chain := checkChain(t, tr, devSpans[id])

	name := c.name
	want := []string{"POST /v1/ingest"}
	hop := func(site, tier, next, nextSite string) {
		want = append(want, name+"."+tier+".in publish", name+"."+tier+".in receive", "invoke "+tier, "infer "+tier)
		if nextSite == "" {
			return
		}
		queue := name + ".uplink." + nextSite
		want = append(want, queue+" publish", queue+" receive", "uplink "+site+"->"+nextSite)
		if next == "" {
			want = append(want, "deliver results")
		} else {
			want = append(want, "deliver "+next)
		}
	}
	hop("edge", "edge", "fog", "fog")
	hop("fog", "fog", "cloud", "cloud")
	hop("cloud", "cloud", "", "edge")
	want = append(want, resultOp)
	var got []string
	for _, s := range chain {
		got = append(got, s.OperationName)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("message %s: chain\n  %s\nwant\n  %s", id, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	sites := map[string]bool{}
	for _, s := range chain {
		site := processTag(tr, s, "ddnn.site")
		sites[site] = true
		switch op := s.OperationName; {
		case strings.HasPrefix(op, "infer "):
			tier := strings.TrimPrefix(op, "infer ")
			if v, _ := s.Tag("ddnn.tier"); v != tier {
				t.Errorf("%s: ddnn.tier %q", op, v)
			}
			if v, _ := s.Tag("ddnn.model_sha"); v != modelSHA(t, tier) {
				t.Errorf("%s: ddnn.model_sha %q, want %q", op, v, modelSHA(t, tier))
			}
			if v, _ := s.Tag("ddnn.exit"); v != strconv.FormatBool(tier == "cloud") {
				t.Errorf("%s: ddnn.exit %s", op, v)
			}
			if site != tier {
				t.Errorf("%s ran on site %q", op, site)
			}
		case strings.HasPrefix(op, "invoke "):
			if v, _ := s.Tag("ddnn.tier"); v != strings.TrimPrefix(op, "invoke ") {
				t.Errorf("%s: ddnn.tier %q", op, v)
			}
		case strings.HasPrefix(op, "uplink "):
			link := strings.TrimPrefix(op, "uplink ")
			peer, _ := s.Tag("ddnn.peer")
			if v, _ := s.Tag("ddnn.link"); v != link || peer != links[link] {
				t.Errorf("%s: ddnn.link %q, ddnn.peer %q, want the link's proxy %s", op, v, peer, links[link])
			}
		}
		if v, _ := s.Tag("ddnn.message_id"); strings.HasPrefix(s.OperationName, "invoke ") && v != id {
			t.Errorf("%s: ddnn.message_id %q", s.OperationName, v)
		}
	}
	for _, site := range continuumSites {
		if !sites[site] {
			t.Errorf("no span of the chain ran on site %s (sites %v)", site, sites)
		}
	}
	t.Logf("message %s: one trace %s of %d spans over sites %v", id, tid, len(chain), sites)
}

// TestTraceOff: a pipeline without telemetry sends no span, even with the
// OpenTelemetry SDK's environment variables pointing at a receiver, and
// its records carry no trace context.
func TestTraceOff(t *testing.T) {
	j := jaegertest.New(t, root(t))
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", j.OTLP)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	tp := writePipeline(t, "untraced", 1, "")
	p := up(t, tp)
	ds := testSet(t)
	sendHTTP(t, tp.funnel, ds.Samples[:20], "untraced-", 2)
	collectResults(t, tp.broker, tp.name+".results", "untraced-", 20, 60*time.Second)
	cl := readFromStart(t, tp.broker, tp.name+".results")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < 20; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 20 results", n)
		}
		for _, rec := range fs.Records() {
			n++
			for _, h := range rec.Headers {
				if h.Key == "traceparent" || h.Key == "tracestate" {
					t.Errorf("result record carries %s %q", h.Key, h.Value)
				}
			}
		}
	}
	// Every role has stopped (and would have flushed its spans).
	p.term(t)
	svcs, err := j.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 0 {
		t.Errorf("jaeger got spans of %v from a pipeline without telemetry", svcs)
	}
}

// checkChain checks that the spans of tr form one parent chain: one root,
// whose parent is the device's span devSpan (not exported: it is the
// device's), every other span the child of the one before it, no span
// with two children. It returns the chain from the root.
func checkChain(t *testing.T, tr jaegertest.Trace, devSpan string) []jaegertest.Span {
	t.Helper()
	byID := map[string]jaegertest.Span{}
	children := map[string][]string{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		children[s.Parent()] = append(children[s.Parent()], s.OperationName)
	}
	var roots []jaegertest.Span
	for _, s := range tr.Spans {
		if _, ok := byID[s.Parent()]; !ok {
			roots = append(roots, s)
		}
		if len(children[s.SpanID]) > 1 {
			t.Errorf("span %q has %d children: %v", s.OperationName, len(children[s.SpanID]), children[s.SpanID])
		}
	}
	if len(roots) != 1 {
		var names []string
		for _, r := range roots {
			names = append(names, r.OperationName)
		}
		t.Fatalf("trace %s has %d roots, want 1: %v", tr.TraceID, len(roots), names)
	}
	if roots[0].Parent() != devSpan {
		t.Errorf("root %q continues span %q, want the device's %s", roots[0].OperationName, roots[0].Parent(), devSpan)
	}
	chain := []jaegertest.Span{roots[0]}
	for {
		last := chain[len(chain)-1].SpanID
		var next []jaegertest.Span
		for _, s := range tr.Spans {
			if s.Parent() == last {
				next = append(next, s)
			}
		}
		if len(next) != 1 {
			break
		}
		chain = append(chain, next[0])
	}
	if len(chain) != len(tr.Spans) {
		t.Errorf("the chain from the root holds %d of the trace's %d spans", len(chain), len(tr.Spans))
	}
	return chain
}

// processTag is the tag key of the process that sent s.
func processTag(tr jaegertest.Trace, s jaegertest.Span, key string) string {
	for _, tag := range tr.Processes[s.ProcessID].Tags {
		if tag.Key == key {
			return fmt.Sprint(tag.Value)
		}
	}
	return ""
}

// startWAN puts the shipped wan.yaml's proxies on the links of p's
// uplinks, as ddnn bench --network does, and returns each link's proxy
// URL and the --link-url arguments that route the uplinks through them.
func startWAN(t *testing.T, p *pipeline.Pipeline) (map[string]string, []string) {
	t.Helper()
	spec, err := wan.Load(filepath.Join(root(t), "deploy/examples/wan.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var flows []wan.Flow
	for _, l := range p.Links() {
		to, err := p.Site(l.To)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(to.Funnel.URL)
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, wan.Flow{From: l.From, To: l.To, Addr: u.Host})
	}
	targets, routes, err := spec.Plan(flows)
	if err != nil {
		t.Fatal(err)
	}
	n, err := wan.Start(context.Background(), spec, targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	urls := map[string]string{}
	var args []string
	for i, f := range flows {
		if routes[i] == nil {
			t.Fatalf("wan.yaml has no link for %s", f.Name())
		}
		urls[f.Name()] = "http://" + n.Addr(routes[i][0])
		args = append(args, "--link-url", f.Name()+"="+urls[f.Name()])
	}
	return urls, args
}

// modelSHA is the first 12 hex digits of the sha256 of tier's sample model.
func modelSHA(t *testing.T, tier string) string {
	b, err := os.ReadFile(filepath.Join(root(t), "models", tier+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])[:12]
}

// randHex is n random bytes in hex.
func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
