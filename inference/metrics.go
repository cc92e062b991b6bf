package inference

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are an inference function's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	requests  *prometheus.CounterVec
	samples   *prometheus.CounterVec
	batchSize *prometheus.HistogramVec
	duration  *prometheus.HistogramVec
	exits     *prometheus.CounterVec
	forwards  *prometheus.CounterVec
	model     *prometheus.GaugeVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_inference_requests_total",
			Help: "Inference requests by outcome (ok, bad_request, not_accepted, too_large, unsupported_media_type, unavailable, error, method_not_allowed).",
		}, []string{"tier", "outcome"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_inference_samples_total",
			Help: "Samples run through the tier's model.",
		}, []string{"tier"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ddnn_inference_batch_size",
			Help:    "Samples per model run.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}, []string{"tier"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ddnn_inference_duration_seconds",
			Help:    "Time of one model run over a batch.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 12),
		}, []string{"tier"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_inference_exits_total",
			Help: "Samples that took the tier's exit.",
		}, []string{"tier"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_inference_forwards_total",
			Help: "Samples forwarded to the next tier.",
		}, []string{"tier"}),
		model: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_inference_model_info",
			Help: "1 for the model the replica serves: its sha256 prefix and version label (sha or sha@version), once loaded.",
		}, []string{"tier", "model"}),
	}
	reg.MustRegister(m.requests, m.samples, m.batchSize, m.duration, m.exits, m.forwards, m.model)
	return m
}

// start makes tier's series exist at 0 before its first request: a
// counter that appears with a value has no increase for rate() to see,
// so a dashboard would miss the first burst of a new replica.
func (m *Metrics) start(tier string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(tier, "ok")
	m.samples.WithLabelValues(tier)
	m.batchSize.WithLabelValues(tier)
	m.duration.WithLabelValues(tier)
	m.exits.WithLabelValues(tier)
	m.forwards.WithLabelValues(tier)
}

// serving records the model the replica serves (one per replica: the
// label is bounded).
func (m *Metrics) serving(tier, model string) {
	if m == nil {
		return
	}
	m.model.WithLabelValues(tier, model).Set(1)
}

func (m *Metrics) request(tier, outcome string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(tier, outcome).Inc()
}

func (m *Metrics) batch(tier string, n int, d time.Duration) {
	if m == nil {
		return
	}
	m.samples.WithLabelValues(tier).Add(float64(n))
	m.batchSize.WithLabelValues(tier).Observe(float64(n))
	m.duration.WithLabelValues(tier).Observe(d.Seconds())
}

func (m *Metrics) decisions(tier string, exits, forwards int) {
	if m == nil {
		return
	}
	m.exits.WithLabelValues(tier).Add(float64(exits))
	m.forwards.WithLabelValues(tier).Add(float64(forwards))
}
