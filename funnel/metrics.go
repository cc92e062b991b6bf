package funnel

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a funnel's Prometheus metrics; a nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	records  *prometheus.CounterVec
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
	}
	reg.MustRegister(m.requests, m.records)
	return m
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
