package funnel

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a funnel's Prometheus metrics; a nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	records  *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the funnel's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_funnel_requests_total",
			Help: "Funnel requests by route (ingest, tier, results) and outcome.",
		}, []string{"route", "outcome"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_funnel_records_total",
			Help: "Records produced by topic kind (tier name or results) and outcome (acked, failed).",
		}, []string{"topic", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ddnn_pipeline_e2e_latency_seconds",
			Help:    "From a device's send time to its result acknowledged on the results topic, by exit tier.",
			Buckets: prometheus.ExponentialBuckets(500e-6, 2, 18),
		}, []string{"tier"}),
	}
	reg.MustRegister(m.requests, m.records, m.latency)
	return m
}

func (m *Metrics) e2e(tier string, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(tier).Observe(d.Seconds())
	}
}

func (m *Metrics) request(route, outcome string) {
	if m != nil {
		m.requests.WithLabelValues(route, outcome).Inc()
	}
}

func (m *Metrics) record(topic string, err error) {
	if m == nil {
		return
	}
	outcome := "acked"
	if err != nil {
		outcome = "failed"
	}
	m.records.WithLabelValues(topicLabel(topic), outcome).Inc()
}
