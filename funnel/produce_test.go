package funnel

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// hungBroker is a kfake cluster that, while hung, holds every request it
// reads without answering, as a stopped broker process would; resume
// answers the held ones and everything after.
type hungBroker struct {
	c       *kfake.Cluster
	hung    atomic.Bool
	release chan struct{}
	once    sync.Once
	held    atomic.Int64 // requests held so far
}

func newHungBroker(t *testing.T, partitions int32, topics ...string) *hungBroker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	h := &hungBroker{c: c, release: make(chan struct{})}
	// Cleanups run last in, first out: the broker closes after whatever
	// the test sets up on it later, and sleeping requests are woken first.
	t.Cleanup(c.Close)
	t.Cleanup(h.resume)
	c.ControlKey(-1, func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if h.hung.Load() {
			h.held.Add(1)
			c.SleepControl(func() { <-h.release })
		}
		return nil, nil, false // then handled as usual
	})
	return h
}

func (h *hungBroker) hang() { h.hung.Store(true) }

func (h *hungBroker) resume() {
	h.once.Do(func() {
		h.hung.Store(false)
		close(h.release)
	})
}

// ingestTimed posts one JSON sample with message id id and returns the
// status, the Retry-After header, the body and how long the answer took;
// the client gives up after 20s (code 0).
func ingestTimed(t *testing.T, url, id string) (code int, retryAfter, body string, took time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+httpapi.PathIngest, strings.NewReader(`{"data":[1,2,3,4]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderMessageID, id)
	cl := &http.Client{Timeout: 20 * time.Second}
	defer cl.CloseIdleConnections()
	start := time.Now()
	resp, err := cl.Do(req)
	took = time.Since(start)
	if err != nil {
		return 0, "", err.Error(), took
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), b.String(), took
}

// TestIngestBrokerHangs: with the broker hung (it reads requests and
// never answers), an ingest is answered 503 with Retry-After within about
// kafka.produce_timeout (1s here), not after the broker comes back, and
// the producer lets go of the record; once the broker is back, ingest
// works again. The message of the 503 was already sent,
// so it may still be stored: docs/streaming.md says so, and a retry with
// its id is taken.
func TestIngestBrokerHangs(t *testing.T) {
	p := parse(t, testYAML, "127.0.0.1:1") // for the topic names
	h := newHungBroker(t, p.Kafka.Partitions, p.Topics()...)
	defer h.resume() // before the cleanups: a server closes once its handlers return
	e := setup(t, h.c.ListenAddrs()[0])

	if code, _, body, took := ingestTimed(t, e.srv.URL, "before"); code != http.StatusAccepted {
		t.Fatalf("ingest before the hang: %d %s", code, body)
	} else {
		t.Logf("ingest before the hang: %d in %v", code, took)
	}

	h.hang()
	code, retryAfter, body, took := ingestTimed(t, e.srv.URL, "during")
	t.Logf("ingest while the broker hangs (produce_timeout %v): %d in %v (Retry-After %q) %s", e.site.Kafka.ProduceTimeout, code, took, retryAfter, strings.TrimSpace(body))
	if h.held.Load() == 0 {
		t.Fatal("the broker held no request: the hang was not exercised")
	}
	if code != http.StatusServiceUnavailable || retryAfter == "" || !strings.Contains(body, "kafka.produce_timeout") {
		t.Errorf("ingest while the broker hangs: %d, Retry-After %q, body %s; want 503 with Retry-After naming kafka.produce_timeout", code, retryAfter, body)
	}
	if took > 5*time.Second {
		t.Errorf("ingest while the broker hangs answered after %v, want about produce_timeout (%v)", took, e.site.Kafka.ProduceTimeout)
	}

	// The producer lets go of what it could not deliver in time, rather
	// than holding it (and what comes after it on the partition) until the
	// broker answers.
	for deadline := time.Now().Add(5 * time.Second); e.cl.BufferedProduceRecords() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the producer still holds %d records 5s after the 503, with the broker hung", e.cl.BufferedProduceRecords())
		}
	}

	h.resume()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, body, took := ingestTimed(t, e.srv.URL, "during") // the retry, with the same id
		if code == http.StatusAccepted {
			t.Logf("ingest after the broker resumed: %d in %v", code, took)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest 30s after the broker resumed: %d %s", code, body)
		}
	}
	ids := map[string]int{}
	for _, r := range e.records(t, p.InputTopic("edge")) {
		ids[decodeRecord(t, r).ID]++
	}
	t.Logf("records by id after the retry: %v", ids)
	if ids["before"] != 1 || ids["during"] < 1 {
		t.Errorf("records by id %v: want before once and during at least once", ids)
	}
}

// TestProduceLateOutcomeCounted: a record Kafka acknowledges after the
// funnel answered 503 is counted as acked_late and logged, never taken
// silently. A producer without the funnel's AllowIdempotentProduceCancellation
// keeps the record sent to the hung broker and has it stored once the
// broker answers.
func TestProduceLateOutcomeCounted(t *testing.T) {
	p := parse(t, testYAML, "127.0.0.1:1")
	h := newHungBroker(t, p.Kafka.Partitions, p.Topics()...)
	defer h.resume() // before the cleanups: a server closes once its handlers return
	p.Kafka.Brokers = []string{h.c.ListenAddrs()[0]}
	cl, err := kafka.NewClient(&p.Kafka, "funnel", nil, nil, kafka.ProducerOptions(&p.Kafka)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	m := NewMetrics(prometheus.NewRegistry())
	var logs testsupport.Buffer
	f := New(onlySite(t, p), cl, m, slog.New(slog.NewTextHandler(&logs, nil)))
	srv, _ := serve(t, f)
	// Connected, with the partitions known: the record is sent at once.
	if code, _, body, _ := ingestTimed(t, srv.URL, "before"); code != http.StatusAccepted {
		t.Fatalf("ingest before the hang: %d %s", code, body)
	}

	h.hang()
	if code, _, body, took := ingestTimed(t, srv.URL, "late"); code != http.StatusServiceUnavailable {
		t.Fatalf("ingest while the broker hangs: %d %s after %v, want 503", code, body, took)
	}
	count := func(outcome string) int { return int(testutil.ToFloat64(m.records.WithLabelValues("edge", outcome))) }
	if n := count("acked_late"); n != 0 {
		t.Fatalf("%d records acked_late while the broker still hangs", n)
	}
	h.resume()
	for deadline := time.Now().Add(30 * time.Second); count("acked_late") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no record counted acked_late 30s after the broker resumed; records: acked %d, failed %d, failed_late %d", count("acked"), count("failed"), count("failed_late"))
		}
	}
	if n := count("acked"); n != 1 {
		t.Errorf("%d records counted acked, want 1 (before the hang)", n)
	}
	if !strings.Contains(logs.String(), "acked=1") || !strings.Contains(logs.String(), "after the funnel stopped waiting") {
		t.Errorf("no log of the late acknowledgement:\n%s", logs.String())
	}
}

// TestEmptyBatchAnsweredAtOnce: a delivery without records has nothing to
// wait for: 204 at once even while the broker hangs, not at the produce
// timeout.
func TestEmptyBatchAnsweredAtOnce(t *testing.T) {
	p := parse(t, testYAML, "127.0.0.1:1")
	h := newHungBroker(t, p.Kafka.Partitions, p.Topics()...)
	defer h.resume()
	e := setup(t, h.c.ListenAddrs()[0])
	h.hang()
	began := time.Now()
	resp, body := e.post(t, httpapi.PathResults, "application/json", []byte("[]"), nil)
	took := time.Since(began)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("empty results batch: %d %s, want 204", resp.StatusCode, body)
	}
	if took >= e.site.Kafka.ProduceTimeout {
		t.Errorf("empty results batch answered after %v: it waited for the produce timeout (%v)", took, e.site.Kafka.ProduceTimeout)
	}
}

// TestCoAPBrokerHangs: over CoAP too, an upload is answered 5.03 naming
// kafka.produce_timeout within about that timeout (1s) while the broker
// hangs, with Max-Age 1 to retry after a second as over HTTP (not CoAP's
// default 60s).
func TestCoAPBrokerHangs(t *testing.T) {
	p := parse(t, coapYAML, "127.0.0.1:1")
	h := newHungBroker(t, p.Kafka.Partitions, p.Topics()...)
	defer h.resume()
	e := setupYAML(t, h.c.ListenAddrs()[0], coapYAML)
	addr := startCoAP(t, e, CoAPLimits{})
	f := filepath.Join(t.TempDir(), "img.f32")
	if err := os.WriteFile(f, float32Image(), 0o600); err != nil {
		t.Fatal(err)
	}
	upload := func(id string) (string, time.Duration) {
		began := time.Now()
		// -B 20: the client gives up after 20s.
		out, _ := exec.Command("coap-client-notls", "-v", "7", "-B", "20", "-m", "post", "-t", "42", "-b", "1024", "-f", f, "coap://"+addr+"/v1/ingest?id="+id).CombinedOutput()
		return string(out), time.Since(began)
	}
	if out, _ := upload("coap-before"); !regexp.MustCompile(`c:2\.01 [^\n]*'coap-before'`).MatchString(out) {
		t.Fatalf("upload before the hang: %s", out)
	}
	h.hang()
	out, took := upload("coap-during")
	t.Logf("upload while the broker hangs (produce_timeout %v): answered after %v", e.site.Kafka.ProduceTimeout, took)
	// libcoap at -v 7 prints each message with its options.
	if !regexp.MustCompile(`c:5\.03 [^\n]*Max-Age:1,[^\n]*'message coap-during: [^\n]*kafka\.produce_timeout`).MatchString(out) {
		t.Errorf("upload while the broker hangs: %s; want 5.03 with Max-Age 1 naming the message id and kafka.produce_timeout", out)
	}
	if took > 5*time.Second {
		t.Errorf("upload while the broker hangs answered after %v, want about produce_timeout (%v)", took, e.site.Kafka.ProduceTimeout)
	}
}

// TestIngestBrokerHungFromStart: a funnel whose broker hangs before it
// ever answered (no metadata, no producer id yet) answers 503 naming
// kafka.produce_timeout within about that timeout too, whichever of the
// producer's timeouts fails the record first.
func TestIngestBrokerHungFromStart(t *testing.T) {
	p := parse(t, testYAML, "127.0.0.1:1")
	h := newHungBroker(t, p.Kafka.Partitions, p.Topics()...)
	defer h.resume()
	h.hang()
	e := setup(t, h.c.ListenAddrs()[0])
	code, retryAfter, body, took := ingestTimed(t, e.srv.URL, "first")
	t.Logf("first ingest, the broker hung from the start: %d in %v %s", code, took, strings.TrimSpace(body))
	if code != http.StatusServiceUnavailable || retryAfter == "" || !strings.Contains(body, "message first: kafka did not acknowledge 1 of 1 records within kafka.produce_timeout") {
		t.Errorf("first ingest: %d, Retry-After %q, body %s; want 503 with Retry-After naming the message and kafka.produce_timeout", code, retryAfter, body)
	}
	if took > 5*time.Second {
		t.Errorf("first ingest answered after %v, want about produce_timeout (%v)", took, e.site.Kafka.ProduceTimeout)
	}
}
