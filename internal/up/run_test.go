package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/cli"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/statuspage"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/up"
	"github.com/ddnn-continuum/ddnn/models"
)

// TestMain checks that no test leaves a goroutine behind. `ddnn up` starts
// its children from its own executable: under test that is this binary,
// which then plays the role its arguments name.
func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeChildrenEnv); dir != "" && len(os.Args) > 1 {
		fakeChild(dir, os.Args[1:])
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "funnel", "connector", "inference":
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		}
	}
	goleak.VerifyTestMain(m)
}

type testPipeline struct {
	file, funnel, delivery, admin string
	p                             *pipeline.Pipeline
}

// writePipeline writes the shipped pipeline with free ports, a scaled edge
// tier and the broker's data in the test's directory.
// running is a ddnn up a test runs in the background (runUp).
type running struct {
	log     *testsupport.Buffer
	cancel  context.CancelFunc
	errc    chan error
	stopped bool
}

// runUp runs up.Run on tp until its admin address is ready; stop ends it,
// or the test's end does.
func runUp(t *testing.T, tp testPipeline) *running {
	t.Helper()
	u := &running{log: &testsupport.Buffer{}, errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go func() {
		u.errc <- up.Run(ctx, up.Config{
			Pipeline: tp.p, File: tp.file, ORTLib: ortLib(t), Out: u.log, Announce: io.Discard,
			Logger: slog.New(slog.NewTextHandler(u.log, nil)),
		})
	}()
	t.Cleanup(func() {
		if !u.stopped {
			cancel()
			<-u.errc
		}
	})
	waitReady(t, "http://"+tp.admin+"/readyz", u.errc, u.log)
	return u
}

// stop ends the run and waits for it: Run must return nil within 15 s.
func (u *running) stop(t *testing.T) {
	t.Helper()
	u.cancel()
	select {
	case err := <-u.errc:
		u.stopped = true
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, u.log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("Run did not return within 15s of the stop:\n%s", u.log.String())
	}
}

func writePipeline(t *testing.T) testPipeline {
	y := testsupport.Shipped(t, "deploy/pipeline.yaml")
	y = strings.Replace(y, "    inference:\n      intra_op_threads: 1\n", "    inference:\n      intra_op_threads: 1\n    replicas: {min: 1, max: 2}\n", 1)
	tp := testPipeline{funnel: proctest.FreeAddr(t), delivery: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
	y += fmt.Sprintf("kafka:\n  embedded_listen: %s\n  embedded_data_dir: kafka\nfunnel:\n  listen: %s\n  delivery_listen: %s\n  coap_listen: off\nadmin:\n  listen: %s\n",
		proctest.FreeAddr(t), tp.funnel, tp.delivery, tp.admin)
	tp.file = filepath.Join(t.TempDir(), "up.yaml")
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if tp.p, err = pipeline.Load(tp.file); err != nil {
		t.Fatal(err)
	}
	return tp
}

func ortLib(t *testing.T) string {
	if lib := os.Getenv("ONNXRUNTIME_LIB"); lib != "" {
		return lib
	}
	lib, _ := filepath.Abs("../../.deps/onnxruntime/libonnxruntime.so.1")
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("ONNX Runtime library not found (set ONNXRUNTIME_LIB or run make deps): %v", err)
	}
	return lib
}

func waitReady(t *testing.T, url string, errc <-chan error, log *testsupport.Buffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-errc:
			t.Fatalf("Run returned before ready: %v\n%s", err, log)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 60s:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunStopsInOrderAndReports runs a pipeline (scaled edge tier), sends
// images, stops it, and checks the stop: Run returns nil, the stop is
// reported per tier, the broker's data directory is released and holds
// the topics for the next start, and (TestMain) no goroutine is left,
// the status page's sampler included. The admin address serves the
// site's status, the status page and its history.
func TestRunStopsInOrderAndReports(t *testing.T) {
	tp := writePipeline(t)
	u := runUp(t, tp)

	ds, err := models.LoadDataset(tp.p.Path(tp.p.Eval.Images), tp.p.Path(tp.p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		req, _ := http.NewRequest("POST", "http://"+tp.funnel+"/v1/ingest", bytes.NewReader(ds.Samples[i]))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Message-Id", "run-"+strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("image %d: status %d", i, resp.StatusCode)
		}
	}
	// The admin /metrics serves the funnel's metrics and the end-to-end
	// latency, which the funnel keeps behind the service token; the token
	// file works as it is for a Prometheus bearer_token_file.
	admin := "http://" + tp.admin + "/metrics"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		m := get(t, admin)
		if strings.Contains(m, "ddnn_funnel_requests_total{") && strings.Contains(m, "ddnn_pipeline_e2e_latency_seconds_count{") &&
			strings.Contains(m, `ddnn_broker_storage_failing{pipeline="fmnist"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks the funnel's, the end-to-end or the broker's metrics:\n%s", admin, m)
		}
	}
	if page := get(t, "http://"+tp.admin+"/"); !strings.Contains(page, `<script src="/static/page.js"`) {
		t.Errorf("the admin address does not serve the status page at /:\n%.300s", page)
	}
	testsupport.WaitFor(t, 20*time.Second, "the status page's history to hold every tier", func() bool {
		var h statuspage.History
		if err := json.Unmarshal([]byte(get(t, "http://"+tp.admin+httpapi.PathStatusHistory)), &h); err != nil {
			t.Fatal(err)
		}
		return len(h.Tiers) == len(tp.p.Tiers) && len(h.Tiers[0].Points) > 0
	})
	// The admin address serves the site's status as ddnn status --json.
	var snap status.Snapshot
	if err := json.Unmarshal([]byte(get(t, "http://"+tp.admin+"/v1/status")), &snap); err != nil {
		t.Fatalf("/v1/status: %v", err)
	}
	if len(snap.Sites) != 1 || len(snap.Sites[0].Tiers) != 3 || !snap.Sites[0].Kafka.Up || !snap.Sites[0].Funnel.Up || !snap.Sites[0].Admin.Up {
		t.Fatalf("/v1/status: %+v, want one site with 3 tiers, its kafka, funnel and admin answering", snap)
	}
	// The edge scales between 1 and 2 replicas: the scaler may have
	// added one while the images went through.
	if edge := snap.Sites[0].Tiers[0]; edge.Name != "edge" || edge.ReadyReplicas < 1 || edge.ReadyReplicas > 2 || edge.ExitRatio == nil || edge.State != status.StateOK {
		t.Errorf("/v1/status: tier edge %+v, want 1 or 2 replicas ready, an exit ratio, state ok", edge)
	}
	token, err := os.ReadFile(filepath.Join(".run", tp.p.Name, "service.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+tp.delivery+"/metrics", nil)
	// As Prometheus and $(cat FILE) read it: the whole file, trimmed.
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the delivery zone's /metrics with the token file's content: %s", resp.Status)
	}
	http.DefaultClient.CloseIdleConnections()

	stopped := time.Now()
	u.stop(t)
	t.Logf("stopped in %s", time.Since(stopped).Round(time.Millisecond))
	out := u.log.String()
	for _, tier := range []string{"edge", "fog", "cloud"} {
		if !strings.Contains(out, "tier="+tier+" unprocessed=") {
			t.Errorf("no stop report for tier %s:\n%s", tier, out)
		}
	}
	if strings.Contains(out, "are lost") {
		t.Errorf("a durable broker's stop says messages are lost:\n%s", out)
	}
	// Released and reloadable: the topics are there without being seeded.
	dir, _ := tp.p.BrokerDataDir()
	b, err := kafka.StartBroker("127.0.0.1:0", 1, nil, nil, kafka.DataDir(dir))
	if err != nil {
		t.Fatalf("data dir after the stop: %v", err)
	}
	b.Close()
}

// TestRunStartFailureStopsWhatStarted: an admin or funnel address in use
// fails the start after the broker started; Run names the setting and
// releases the broker.
func TestRunStartFailureStopsWhatStarted(t *testing.T) {
	for _, key := range []string{"admin", "funnel.listen", "funnel.delivery_listen"} {
		t.Run(key, func(t *testing.T) {
			tp := writePipeline(t)
			addr := map[string]string{"admin": tp.admin, "funnel.listen": tp.funnel, "funnel.delivery_listen": tp.delivery}[key]
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			err = up.Run(context.Background(), up.Config{Pipeline: tp.p, File: tp.file, ORTLib: ortLib(t), Out: io.Discard, Announce: io.Discard})
			if err == nil || !strings.Contains(err.Error(), key+": listen tcp "+addr) {
				t.Fatalf("Run with %s in use: %v", key, err)
			}
			dir, _ := tp.p.BrokerDataDir()
			b, err := kafka.StartBroker("127.0.0.1:0", 1, nil, nil, kafka.DataDir(dir))
			if err != nil {
				t.Fatalf("data dir after the failed start: %v", err)
			}
			b.Close()
		})
	}
}

// TestExposedFunnelNotBound: a funnel listener reachable from outside
// without authentication is refused by up itself, before it binds the
// socket it would pass down.
func TestExposedFunnelNotBound(t *testing.T) {
	tp := writePipeline(t)
	_, port, _ := net.SplitHostPort(tp.funnel)
	tp.p.Funnel.Listen = "0.0.0.0:" + port
	err := up.Run(context.Background(), up.Config{Pipeline: tp.p, File: tp.file, ORTLib: ortLib(t), Out: io.Discard, Announce: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "reachable from outside this machine") {
		t.Fatalf("Run with funnel.listen %s: %v", tp.p.Funnel.Listen, err)
	}
}

// TestExposedEmbeddedBrokerRefused: an embedded broker reachable from
// outside without TLS and SASL is refused, even with devices and the
// service authenticated: the broker does not check their credentials.
func TestExposedEmbeddedBrokerRefused(t *testing.T) {
	tp := writePipeline(t)
	tp.p.Kafka.EmbeddedListen = "0.0.0.0:0"
	tp.p.Auth.Devices, tp.p.Auth.Service = pipeline.AuthNone, pipeline.AuthNone
	// Without the check the pipeline would start and run until this ends.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := up.Run(ctx, up.Config{Pipeline: tp.p, File: tp.file, ORTLib: ortLib(t), Out: io.Discard, Announce: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "kafka.embedded_listen 0.0.0.0:0 is reachable from outside this machine") ||
		!strings.Contains(err.Error(), "kafka.embedded_allow_insecure") {
		t.Fatalf("Run with kafka.embedded_listen 0.0.0.0:0: %v", err)
	}
}

// TestUnknownSiteRefused checks that ddnn up refuses a site the pipeline
// does not declare before starting anything.
func TestUnknownSiteRefused(t *testing.T) {
	continuum, err := pipeline.Load("../../deploy/examples/continuum.yaml")
	if err != nil {
		t.Fatal(err)
	}
	single, err := pipeline.Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, site, want string
		p                *pipeline.Pipeline
	}{
		{"unknown", "moon", `site "moon" unknown (sites: edge, fog, cloud)`, continuum},
		{"no sites", "edge", `site "edge": pipeline "fmnist" declares no sites: (run it without a site)`, single},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var announce testsupport.Buffer
			err := up.Run(context.Background(), up.Config{Pipeline: tc.p, Site: tc.site, Announce: &announce, Out: io.Discard})
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
			if announce.String() != "" {
				t.Errorf("announced %q", announce.String())
			}
		})
	}
}
