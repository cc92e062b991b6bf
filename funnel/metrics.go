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
	refusals *prometheus.CounterVec
	held     prometheus.Gauge
	closed   *prometheus.CounterVec
	conns    prometheus.Gauge
	waiters  prometheus.Gauge
	waits    *prometheus.CounterVec
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
			Help: "Records produced by topic kind (tier name, results or uplink) and outcome (acked, failed; acked_late, failed_late: after the funnel stopped waiting, at kafka.produce_timeout or when the client went away).",
		}, []string{"topic", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ddnn_pipeline_e2e_latency_seconds",
			Help:    "From a device's send time to its result acknowledged on the results topic, by exit tier.",
			Buckets: prometheus.ExponentialBuckets(500e-6, 2, 18),
		}, []string{"tier"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_funnel_refusals_total",
			Help: "Device requests refused for breaking a bound, by route (ingest, coap, http) and reason (invalid_id, id_conflict, rate_limited, method_not_allowed, transfers_per_peer, reassembly_peer, reassembly_total, transfer_too_large, bad_wait).",
		}, []string{"route", "reason"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_funnel_coap_reassembly_bytes",
			Help: "Bytes CoAP Block1 transfers hold while they are reassembled (at most funnel.coap_reassembly.max_bytes).",
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_funnel_connections_closed_total",
			Help: "Device listener connections the funnel closed for its connection bounds, by reason: max_connections_per_source (a new one over its source's bound), max_connections (a new one while every open one was in a request), evicted (an open one with no request in progress, for a new one).",
		}, []string{"reason"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_funnel_device_connections",
			Help: "Open connections of the device listener (at most funnel.max_connections).",
		}),
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_funnel_waiters",
			Help: "Device requests waiting for their results (?wait=; at most funnel.wait.max_waiters).",
		}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_funnel_waits_total",
			Help: "Device requests that asked to wait for their results, by outcome: answered (with the result), timed_out, gone (the device went away), over_limit (funnel.wait.max_waiters or max_waiters_per_device reached: answered at once), not_ready (the results topic not read yet: answered at once), draining (the funnel stopping), too_large (a result over 4 KiB: answered without it).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.requests, m.records, m.latency, m.refusals, m.held, m.closed, m.conns, m.waiters, m.waits)
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

// record counts a produced record; label is its topicLabel.
func (m *Metrics) record(label string, err error) {
	if m == nil {
		return
	}
	outcome := "acked"
	if err != nil {
		outcome = "failed"
	}
	m.records.WithLabelValues(label, outcome).Inc()
}

// recordLate counts a record whose outcome came after the funnel stopped
// waiting for it (produce timeout, or its client went away).
func (m *Metrics) recordLate(label string, err error) {
	if m == nil {
		return
	}
	outcome := "acked_late"
	if err != nil {
		outcome = "failed_late"
	}
	m.records.WithLabelValues(label, outcome).Inc()
}

func (m *Metrics) refused(route, reason string) {
	if m != nil {
		m.refusals.WithLabelValues(route, reason).Inc()
	}
}

func (m *Metrics) reassemblyBytes(n int64) {
	if m != nil {
		m.held.Set(float64(n))
	}
}

func (m *Metrics) connClosed(reason string) {
	if m != nil {
		m.closed.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) connsOpen(n int) {
	if m != nil {
		m.conns.Set(float64(n))
	}
}

// waitersNow sets the requests waiting for their results.
func (m *Metrics) waitersNow(n int) {
	if m != nil {
		m.waiters.Set(float64(n))
	}
}

// waited counts a request that asked to wait, by how its wait ended.
func (m *Metrics) waited(outcome string) {
	if m != nil {
		m.waits.WithLabelValues(outcome).Inc()
	}
}
