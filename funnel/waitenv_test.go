package funnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// waitEnv is a funnel in Run, whose results reader answers waits, and an
// answerer in place of the pipeline's tiers.
type waitEnv struct {
	p      *pipeline.Pipeline
	f      *Funnel
	url    string // the device zone's ingest URL
	client *http.Client
	coap   string // the CoAP address
	ans    *answerer
}

// startWaiting runs a funnel of pipeline y (testYAML's shape) on an
// embedded broker with an answerer that holds back the results of hold,
// and waits until the funnel takes waits.
func startWaiting(t *testing.T, y string, hold ...string) *waitEnv {
	t.Helper()
	return startWaitingOn(t, brokerPipeline(t, y), pipeline.LocalSite, nil, nil, hold...)
}

// brokerPipeline is pipeline y on an embedded broker of its own.
func brokerPipeline(t *testing.T, y string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p.Kafka.Brokers = []string{b.Addr()}
	return p
}

// startWaitingOn runs the funnel of p's site on the Kafka p gives it,
// over HTTPS with serverTLS (and a client with clientTLS) when set, with
// an answerer, and waits until the funnel takes waits.
func startWaitingOn(t *testing.T, p *pipeline.Pipeline, site string, serverTLS, clientTLS *tls.Config, hold ...string) *waitEnv {
	t.Helper()
	sv, err := p.OnSite(site)
	if err != nil {
		t.Fatal(err)
	}
	cl, ln, dln, udp := funnelSockets(t, &sv.Kafka)
	e := &waitEnv{p: p, url: "http://" + ln.Addr().String() + httpapi.PathIngest, client: http.DefaultClient, coap: udp.LocalAddr().String()}
	if serverTLS != nil {
		e.url = "https://" + ln.Addr().String() + httpapi.PathIngest
		tr := &http.Transport{TLSClientConfig: clientTLS}
		t.Cleanup(tr.CloseIdleConnections)
		e.client = &http.Client{Transport: tr}
	}
	e.f = New(sv, cl, NewMetrics(prometheus.NewRegistry()), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.f.Run(ctx, RunConfig{Device: ln, TLS: serverTLS, Delivery: dln, CoAP: udp}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e.ans = startAnswerer(t, p, hold...)
	if e.f.waits != nil {
		testsupport.WaitFor(t, 10*time.Second, "the funnel reading the results topic", e.f.waits.ready.Load)
	}
	return e
}

// answerer stands for the pipeline's tiers: it reads the first tier's
// topic and writes each message's result, as the edge tier's exit, to
// the results topic on the results site's Kafka; the results of held ids
// wait for release.
type answerer struct {
	p       *pipeline.Pipeline
	cl, out *kgo.Client // of the first tier's site, of the results site
	mu      sync.Mutex
	held    map[string]chan struct{}
	wg      sync.WaitGroup
	results sync.Map // id → the record value written (stored as it is produced)
}

func startAnswerer(t *testing.T, p *pipeline.Pipeline, hold ...string) *answerer {
	t.Helper()
	first := p.Tiers[0].Name
	cl, err := kafka.NewClient(&p.SiteOf(first).Kafka, "answerer", nil, nil,
		kgo.ConsumeTopics(p.InputTopic(first)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	out, err := kafka.NewClient(&p.ResultsSite().Kafka, "answerer", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &answerer{p: p, cl: cl, out: out, held: map[string]chan struct{}{}}
	for _, id := range hold {
		a.held[id] = make(chan struct{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.wg.Go(func() {
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(rec *kgo.Record) {
				m, err := records.DecodeMessage(rec, nil)
				if err != nil {
					t.Errorf("answerer: %v", err)
					return
				}
				a.mu.Lock()
				release := a.held[m.ID]
				a.mu.Unlock()
				a.wg.Go(func() {
					if release != nil {
						select {
						case <-release:
						case <-ctx.Done():
							return
						}
					}
					a.answer(ctx, t, &m)
				})
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		a.wg.Wait()
		cl.Close()
		out.Close()
	})
	return a
}

func (a *answerer) answer(ctx context.Context, t *testing.T, m *wire.Message) {
	r := wire.Result{ID: m.ID, Device: m.Device, Tier: "edge", Class: 1, Label: "b", Confidence: 0.9, SentAt: m.SentAt, ExitedAt: time.Now().UTC()}
	rec, err := records.Result(records.Destination{Topic: a.p.ResultsTopic()}, &r)
	if err != nil {
		t.Error(err)
		return
	}
	a.results.Store(m.ID, rec.Value) // before the funnel can read it
	if err := a.out.ProduceSync(ctx, rec).FirstErr(); err != nil && ctx.Err() == nil {
		t.Errorf("answerer: produce: %v", err)
	}
}

// release lets id's result be written.
func (a *answerer) release(id string) { close(a.held[id]) }

// post posts a sample to the ingest URL with query and id and device
// headers.
func (e *waitEnv) post(ctx context.Context, t *testing.T, query, id, device string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+query, bytes.NewReader(floats(1, 2, 3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(HeaderMessageID, id)
	if device != "" {
		req.Header.Set(HeaderDeviceID, device)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String(), nil
}

// rawPost is a confirmable CoAP POST /v1/ingest of testYAML's sample
// (content-format 42) with the queries qs.
func rawPost(msgID uint16, token byte, qs ...string) []byte {
	b := []byte{0x41, 0x02, byte(msgID >> 8), byte(msgID), token} // ver 1, CON, TKL 1, POST
	last := 0
	opt := func(num int, val []byte) {
		b = append(b, byte((num-last)<<4|len(val)))
		b = append(b, val...)
		last = num
	}
	opt(11, []byte("v1"))
	opt(11, []byte("ingest"))
	opt(12, []byte{42})
	for _, q := range qs {
		opt(15, []byte(q))
	}
	return append(append(b, 0xff), floats(1, 2, 3, 4)...)
}
