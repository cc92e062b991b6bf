package funnel

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// BenchmarkIngest measures the device ingest route, from the request to
// Kafka's acknowledgement of its record on an in-process broker, one
// request at a time; allocs/op is the funnel's own work per message (with
// tracing off, what telemetry must not add to).
func BenchmarkIngest(b *testing.B) {
	p, err := pipeline.Parse([]byte(testYAML))
	if err != nil {
		b.Fatal(err)
	}
	br, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	p.Kafka.Brokers = []string{br.Addr()}
	cl, err := kafka.NewClient(&p.Kafka, "funnel", nil, nil, ProducerOptions(&p.Kafka)...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	site, err := p.OnSite(p.Sites()[0].Name)
	if err != nil {
		b.Fatal(err)
	}
	h := New(site, cl, nil, nil).DeviceHandler()
	body := make([]byte, 4*4) // float32 [2, 2]
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, httpapi.PathIngest, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
