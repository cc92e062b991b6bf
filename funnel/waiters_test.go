package funnel

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestWaitAnswersHTTP: a device that waits gets its result, as the
// results topic holds it, with 200; one that does not gets 202 as ever.
func TestWaitAnswersHTTP(t *testing.T) {
	e := startWaiting(t, testYAML)
	code, body, err := e.post(t.Context(), t, "?wait=5s", "w-1", "dev")
	if err != nil || code != http.StatusOK {
		t.Fatalf("wait: %d %q %v, want 200 with the result", code, body, err)
	}
	var r wire.Result
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("answer %q is not a result: %v", body, err)
	}
	if r.ID != "w-1" || r.Device != "dev" || r.Tier != "edge" || r.Label != "b" {
		t.Errorf("answer %+v, want w-1's result from the edge", r)
	}
	written, _ := e.ans.results.Load("w-1")
	if strings.TrimSpace(body) != string(written.([]byte)) {
		t.Errorf("answer %q, want the result record %q", body, written)
	}
	code, body, _ = e.post(t.Context(), t, "", "a-1", "dev")
	if code != http.StatusAccepted || !strings.Contains(body, `"id":"a-1"`) {
		t.Errorf("without a wait: %d %q, want 202 with the id", code, body)
	}
	if got := testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitAnswered)); got != 1 {
		t.Errorf("answered waits %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.f.m.waiters); got != 0 {
		t.Errorf("waiters %v after the answer, want 0", got)
	}
}

// TestWaitAnswersHTTPS: over HTTPS as over HTTP.
func TestWaitAnswersHTTPS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	e := startWaitingOn(t, brokerPipeline(t, testYAML), pipeline.LocalSite, serverTLS, clientTLS)
	code, body, err := e.post(t.Context(), t, "?wait=5s", "tls-1", "dev")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"id":"tls-1"`) {
		t.Errorf("%d %q %v, want 200 with the result", code, body, err)
	}
}

// TestWaitTimesOut: a result that comes after the wait gets the request
// 202 with its id at the wait's end; the result still reaches the
// results topic: nothing is lost.
func TestWaitTimesOut(t *testing.T) {
	e := startWaiting(t, testYAML, "slow")
	start := time.Now()
	code, body, err := e.post(t.Context(), t, "?wait=300ms", "slow", "dev")
	if err != nil || code != http.StatusAccepted || !strings.Contains(body, `"id":"slow"`) {
		t.Fatalf("wait past the result: %d %q %v, want 202 with the id", code, body, err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("answered after %s, before the wait of 300ms ended", waited)
	}
	if got := testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitTimedOut)); got != 1 {
		t.Errorf("timed out waits %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.f.m.waiters); got != 0 {
		t.Errorf("waiters %v after the timeout, want 0", got)
	}
	e.ans.release("slow")
	var found bool
	testsupport.WaitFor(t, 10*time.Second, "slow's result on the results topic", func() bool {
		found = false
		kafka.Scan(t.Context(), &e.p.Kafka, e.p.ResultsTopic(), func(rec *kgo.Record) bool {
			r, err := records.DecodeResult(rec)
			found = found || (err == nil && r.ID == "slow")
			return !found
		})
		return found
	})
}

// TestWaitGone: a device that goes away while it waits frees its waiter.
func TestWaitGone(t *testing.T) {
	e := startWaiting(t, testYAML, "gone")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := e.post(ctx, t, "?wait=9s", "gone", "dev")
		done <- err
	}()
	testsupport.WaitFor(t, 5*time.Second, "the request waiting", func() bool { return testutil.ToFloat64(e.f.m.waiters) == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Error("the cancelled request got an answer")
	}
	testsupport.WaitFor(t, 5*time.Second, "the waiter freed", func() bool {
		return testutil.ToFloat64(e.f.m.waiters) == 0 && testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitGone)) == 1
	})
}

// errorOf is the error an answer's JSON body gives.
func errorOf(body string) string {
	var e wire.ErrorBody
	json.Unmarshal([]byte(body), &e)
	return e.Error
}

// TestWaitBad: a wait that cannot be taken is a 400 naming why and the
// bound, and nothing is written.
func TestWaitBad(t *testing.T) {
	off := strings.Replace(testYAML, "funnel: {", "funnel: {wait: {max: 0s}, ", 1)
	for _, tc := range []struct {
		name, yaml, query, want string
	}{
		{"not a duration", testYAML, "?wait=soon", `wait "soon": not a duration like 2s or 500ms (at most funnel.wait.max 10s)`},
		{"no unit", testYAML, "?wait=2", `wait "2": not a duration`},
		{"zero", testYAML, "?wait=0s", `wait "0s": must be more than 0 (at most funnel.wait.max 10s)`},
		{"negative", testYAML, "?wait=-1s", `wait "-1s": must be more than 0`},
		{"over the max", testYAML, "?wait=11s", `wait "11s": over funnel.wait.max 10s`},
		{"twice", testYAML, "?wait=1s&wait=2s", `wait "2s": give wait once`},
		{"waits off", off, "?wait=1s", `wait "1s": this funnel answers no waits (funnel.wait.max is 0)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startWaiting(t, tc.yaml)
			code, body, err := e.post(t.Context(), t, tc.query, "bad", "dev")
			if err != nil || code != http.StatusBadRequest || !strings.Contains(errorOf(body), tc.want) {
				t.Errorf("%d %q %v, want 400 with %q", code, body, err, tc.want)
			}
			if n := len(envRecords(t, e.p, e.p.InputTopic("edge"))); n != 0 {
				t.Errorf("%d records written", n)
			}
		})
	}
}

// envRecords are topic's records on p's Kafka.
func envRecords(t *testing.T, p *pipeline.Pipeline, topic string) []*kgo.Record {
	t.Helper()
	var recs []*kgo.Record
	if err := kafka.Scan(t.Context(), &p.Kafka, topic, func(r *kgo.Record) bool { recs = append(recs, r); return true }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestWaitLimits: past max_waiters_per_device, or max_waiters, a request
// that asks to wait is answered 202 at once, and its message is written
// (and answered by the pipeline) like any other.
func TestWaitLimits(t *testing.T) {
	y := strings.Replace(testYAML, "funnel: {", "funnel: {wait: {max: 5s, max_waiters: 2, max_waiters_per_device: 1}, ", 1)
	e := startWaiting(t, y, "held-a", "held-b")
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, dev := range []string{"a", "b"} {
		wg.Go(func() {
			code, _, err := e.post(t.Context(), t, "?wait=5s", "held-"+dev, dev)
			if err != nil || code != http.StatusOK {
				t.Errorf("held-%s: %d %v, want 200 once released", dev, code, err)
			}
		})
	}
	testsupport.WaitFor(t, 5*time.Second, "two requests waiting", func() bool { return testutil.ToFloat64(e.f.m.waiters) == 2 })
	for _, tc := range []struct{ id, device, bound string }{
		{"second-of-a", "a", "max_waiters_per_device"},
		{"third", "c", "max_waiters"},
	} {
		start := time.Now()
		code, body, err := e.post(t.Context(), t, "?wait=5s", tc.id, tc.device)
		if err != nil || code != http.StatusAccepted || !strings.Contains(body, tc.id) {
			t.Errorf("%s over %s: %d %q %v, want 202 with the id", tc.id, tc.bound, code, body, err)
		}
		if waited := time.Since(start); waited > 4*time.Second {
			t.Errorf("%s over %s: answered after %s, not at once", tc.id, tc.bound, waited)
		}
		testsupport.WaitFor(t, 5*time.Second, tc.id+"'s result", func() bool { _, ok := e.ans.results.Load(tc.id); return ok })
	}
	if got := testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitOverLimit)); got != 2 {
		t.Errorf("over_limit %v, want 2", got)
	}
	e.ans.release("held-a")
	e.ans.release("held-b")
}

// TestWaitersKeyByDevice: a result answers only the waiters of its own
// device and id, once, and a result over maxAnswerBytes is not kept.
func TestWaitersKeyByDevice(t *testing.T) {
	ws := newWaiters(pipeline.Wait{Max: time.Second, MaxWaiters: 4, MaxWaitersPerDevice: 2}, nil)
	if _, err := ws.add("a", "x", "a"); err != errNotReady {
		t.Fatalf("add before the reader is ready: %v, want errNotReady", err)
	}
	ws.ready.Store(true)
	a, _ := ws.add("a", "x", "a")
	b, _ := ws.add("b", "x", "b")
	big, _ := ws.add("b", "y", "b")
	if _, err := ws.add("b", "z", "b"); err != errOverLimit {
		t.Errorf("third waiter of b: %v, want errOverLimit", err)
	}
	ws.deliver("a", "x", []byte(`{"id":"x"}`))
	ws.deliver("a", "x", []byte(`{"id":"x","second":true}`))
	ws.deliver("b", "y", make([]byte, maxAnswerBytes+1))
	if got, why := ws.await(a, time.Second, nil); string(got) != `{"id":"x"}` || why != waitAnswered {
		t.Errorf("a's waiter: %q %s, want its first result", got, why)
	}
	if got, why := ws.await(b, time.Millisecond, nil); got != nil || why != waitTimedOut {
		t.Errorf("b's waiter got %q (%s): a's result", got, why)
	}
	if got, why := ws.await(big, time.Second, nil); got != nil || why != waitTooLarge {
		t.Errorf("a result over the cap: %q %s, want none, too_large", got, why)
	}
	if ws.waiting() || len(ws.perDevice) != 0 {
		t.Errorf("waiters left: %d, per device %v", ws.n, ws.perDevice)
	}
}

// TestWaitAnswersCoAP: libcoap's client that asks to wait gets 2.05 with
// the result; a wait over the bound gets 4.00 naming it.
func TestWaitAnswersCoAP(t *testing.T) {
	e := startWaiting(t, testYAML, "c-slow")
	f := filepath.Join(t.TempDir(), "sample")
	os.WriteFile(f, floats(1, 2, 3, 4), 0o644)
	out := coapClient(t, "-m", "post", "-t", "42", "-f", f, "coap://"+e.coap+"/v1/ingest?device=dev&id=c-1&wait=5s")
	var r wire.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil || r.ID != "c-1" || r.Device != "dev" || r.Tier != "edge" {
		t.Errorf("client printed %q (%v), want c-1's result", out, err)
	}
	bad, _ := exec.Command("coap-client-notls", "-v", "3", "-m", "post", "-t", "42", "-f", f, "coap://"+e.coap+"/v1/ingest?id=c-2&wait=1m").CombinedOutput()
	if !strings.Contains(string(bad), "4.00") || !strings.Contains(string(bad), `wait "1m": over funnel.wait.max 10s`) {
		t.Errorf("wait over the bound: client printed %q, want 4.00 naming funnel.wait.max", bad)
	}
	// No result within the wait: 2.01 with the id, as without one.
	if out := coapClient(t, "-m", "post", "-t", "42", "-f", f, "coap://"+e.coap+"/v1/ingest?device=dev&id=c-slow&wait=300ms"); strings.TrimSpace(out) != "c-slow" {
		t.Errorf("wait past the result: client printed %q, want the id", out)
	}
	if got := testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitAnswered)); got != 1 {
		t.Errorf("answered waits %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitTimedOut)); got != 1 {
		t.Errorf("timed out waits %v, want 1", got)
	}
}

// TestWaitOutlastsReadTimeout: a wait longer than funnel.read_timeout
// still gets its result: the server does not end the request at the
// read deadline as if the device had gone.
func TestWaitOutlastsReadTimeout(t *testing.T) {
	y := strings.Replace(testYAML, "funnel: {", "funnel: {read_header_timeout: 200ms, read_timeout: 500ms, ", 1)
	e := startWaiting(t, y, "late")
	time.AfterFunc(1500*time.Millisecond, func() { e.ans.release("late") }) // the result comes after read_timeout
	code, body, err := e.post(t.Context(), t, "?wait=5s", "late", "dev")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"id":"late"`) {
		t.Errorf("%d %q %v, want 200 with the result", code, body, err)
	}
}

// TestWaitResultsOnAnotherSite: the first tier's site's funnel answers a
// wait with a result written on the results site's Kafka, which it reads
// across sites with that site's brokers from the YAML.
func TestWaitResultsOnAnotherSite(t *testing.T) {
	y := strings.Replace(sitesYAML, "kafka: {partitions: 2", "results: {site: cloud}\nkafka: {partitions: 2", 1)
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	addrs := testsupport.SiteClusters(t, p)
	if addrs["edge"] == addrs["cloud"] {
		t.Fatal("one cluster for both sites")
	}
	e := startWaitingOn(t, p, "edge", nil, nil)
	code, body, err := e.post(t.Context(), t, "?wait=5s", "far", "dev")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"id":"far"`) {
		t.Errorf("%d %q %v, want 200 with the result from the cloud's Kafka", code, body, err)
	}
}

// TestWaitCoAPPeerNotHeldUp: while a peer's request waits for its
// result, the same peer's next request is answered: a wait does not
// hold up the requests behind it.
func TestWaitCoAPPeerNotHeldUp(t *testing.T) {
	e := startWaiting(t, testYAML, "held")
	conn, err := net.Dial("udp", e.coap)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() (code, token byte) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil || n < 5 {
			t.Fatalf("no answer: %v", err)
		}
		return buf[1], buf[4]
	}
	conn.Write(rawPost(1, 1, "id=held", "device=d", "wait=5s"))
	testsupport.WaitFor(t, 5*time.Second, "the request waiting", func() bool { return testutil.ToFloat64(e.f.m.waiters) == 1 })
	conn.Write(rawPost(2, 2, "id=next", "device=d"))
	if code, token := read(); token != 2 || code != byte(codes.Created) {
		t.Fatalf("first answer: code %d.%02d token %d, want 2.01 for the request behind the waiting one", code>>5, code&31, token)
	}
	e.ans.release("held")
	if code, token := read(); token != 1 || code != byte(codes.Content) {
		t.Errorf("second answer: code %d.%02d token %d, want 2.05 with the held result", code>>5, code&31, token)
	}
}

// TestWaitDrain: a funnel that begins to stop answers its waiting
// requests at once, 202 with the id, and their messages stay written.
func TestWaitDrain(t *testing.T) {
	e := startWaiting(t, testYAML, "draining")
	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		code, body, _ := e.post(t.Context(), t, "?wait=9s", "draining", "dev")
		got <- answer{code, body}
	}()
	testsupport.WaitFor(t, 5*time.Second, "the request waiting", func() bool { return testutil.ToFloat64(e.f.m.waiters) == 1 })
	e.f.Drain()
	select {
	case a := <-got:
		if a.code != http.StatusAccepted || !strings.Contains(a.body, `"id":"draining"`) {
			t.Errorf("%d %q, want 202 with the id", a.code, a.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting request was not answered within 5s of the drain")
	}
	if got := testutil.ToFloat64(e.f.m.waits.WithLabelValues(waitDraining)); got != 1 {
		t.Errorf("draining waits %v, want 1", got)
	}
	e.ans.release("draining")
}
