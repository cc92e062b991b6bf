package funnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	coapnet "github.com/plgd-dev/go-coap/v3/net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// running is a funnel in Run on loopback sockets.
type running struct {
	p    *pipeline.Pipeline
	url  string // the device zone
	durl string // the delivery zone
	udp  interface{ Close() error }
	stop context.CancelFunc
	done chan error
}

// startRun runs a funnel of pipeline y over a client of brokers, with a
// CoAP socket.
func startRun(t *testing.T, y, brokers string, reg prometheus.Gatherer) *running {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	p.Kafka.Brokers = []string{brokers}
	cl, ln, dln, udp := funnelSockets(t, &p.Kafka)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, url: "http://" + ln.Addr().String(), durl: "http://" + dln.Addr().String(), udp: udp, stop: cancel, done: make(chan error, 1)}
	f := New(onlySite(t, p), cl, nil, nil)
	go func() {
		r.done <- f.Run(ctx, RunConfig{Device: ln, Delivery: dln, CoAP: udp, Gatherer: reg})
	}()
	t.Cleanup(func() {
		cancel()
		r.wait(t)
	})
	return r
}

// wait returns Run's error once it returned.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// ingest sends one sample with id to the funnel and returns the status.
func (r *running) ingest(id string) (int, error) { return r.ingestWithin(id, 0) }

// ingestWithin is ingest with a client timeout (0: none).
func (r *running) ingestWithin(id string, timeout time.Duration) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, r.url+httpapi.PathIngest, bytes.NewReader(floats(1, 2, 3, 4)))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(HeaderMessageID, id)
	resp, err := (&http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestRunDrainsInFlight stops a funnel while an ingest waits for Kafka's
// acknowledgement: intake stops at once, the ingest still gets its 202
// and its record, and Run returns cleanly.
func TestRunDrainsInFlight(t *testing.T) {
	// Kafka's answer is held back for a while: a long produce timeout.
	y := strings.Replace(testYAML, "produce_timeout: 1s", "produce_timeout: 30s", 1)
	p, _ := pipeline.Parse([]byte(y))
	c := testsupport.KafkaCluster(t, p.Kafka.Partitions, p.Topics()...)
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() {
			close(arrived)
			c.SleepControl(func() { <-release })
		})
		return nil, nil, false
	})
	r := startRun(t, y, c.ListenAddrs()[0], nil)

	type answer struct {
		code int
		err  error
	}
	inflight := make(chan answer, 1)
	go func() {
		code, err := r.ingest("in-flight")
		inflight <- answer{code, err}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the ingest's records never reached the broker")
	}
	r.stop()
	// Intake is off while the ingest still waits for its acknowledgement.
	// A late ingest that got in before the stop waits on the stalled
	// broker as the in-flight one does: past 2 s it is not answered 202
	// either, and waiting longer would run into the stop's shutdown
	// timeout, which ends the in-flight ingest too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, err := r.ingestWithin("late", 2*time.Second)
		if err != nil || code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new ingest still answers %d after stop", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case a := <-inflight:
		t.Fatalf("the in-flight ingest answered before Kafka did: %d %v", a.code, a.err)
	default:
	}
	close(release)
	if a := <-inflight; a.err != nil || a.code != http.StatusAccepted {
		t.Errorf("in-flight ingest: %d %v", a.code, a.err)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	p.Kafka.Brokers = c.ListenAddrs()
	e := &env{p: p, site: onlySite(t, p), cl: testsupport.KafkaClient(t, kgo.SeedBrokers(c.ListenAddrs()[0]))}
	if recs := e.records(t, p.InputTopic("edge")); len(recs) != 1 || decodeRecord(t, recs[0]).ID != "in-flight" {
		t.Errorf("records in %s: %d", p.InputTopic("edge"), len(recs))
	}
}

// broker starts an embedded broker with testYAML's topics.
func broker(t *testing.T) string {
	t.Helper()
	p, _ := pipeline.Parse([]byte(testYAML))
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// TestRunEndsWithCoAP: a CoAP server that stops on its own ends the whole
// funnel, so that its supervisor restarts it rather than leaving HTTP up
// without CoAP.
func TestRunEndsWithCoAP(t *testing.T) {
	r := startRun(t, testYAML, broker(t), nil)
	waitServing(t, r)
	r.udp.Close()
	err := r.wait(t)
	if err == nil || !strings.Contains(err.Error(), "coap funnel") {
		t.Errorf("Run: %v, want the CoAP server's end", err)
	}
	if _, err := r.ingest("after"); err == nil {
		t.Error("HTTP still serves after the CoAP server stopped")
	}
}

// TestRunServesMetrics checks the routes Run adds and a clean stop.
func TestRunServesMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ddnn_test_total", Help: "x"}))
	r := startRun(t, testYAML, broker(t), reg)
	waitServing(t, r)
	resp, err := http.Get(r.durl + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "ddnn_test_total 0") {
		t.Errorf("/metrics:\n%s", body)
	}
	if code, err := r.ingest("m"); err != nil || code != http.StatusAccepted {
		t.Errorf("ingest: %d %v", code, err)
	}
	r.stop()
	if err := r.wait(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// waitServing waits until the funnel answers /readyz.
func waitServing(t *testing.T, r *running) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(r.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("funnel not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// funnelSockets is what a test's funnel runs on: a producer client of k,
// closed when the test ends, and loopback listeners for its device zone,
// its delivery zone and CoAP, which its Run closes (and the test's end,
// for those it does not run on).
func funnelSockets(t *testing.T, k *pipeline.Kafka) (cl *kgo.Client, device, delivery net.Listener, coap *coapnet.UDPConn) {
	t.Helper()
	cl, err := kafka.NewClient(k, "funnel", nil, nil, ProducerOptions(k)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if device, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { device.Close() })
	if delivery, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { delivery.Close() })
	if coap, err = ListenCoAP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coap.Close() })
	return cl, device, delivery, coap
}
