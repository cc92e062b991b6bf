package scaler

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the scaler's Prometheus metrics; a nil *Metrics records
// nothing.
type Metrics struct {
	replicas  *prometheus.GaugeVec
	maximum   *prometheus.GaugeVec
	lag       *prometheus.GaugeVec
	arrival   *prometheus.GaugeVec
	service   *prometheus.GaugeVec
	capacity  *prometheus.GaugeVec
	decisions *prometheus.CounterVec
	lagErrors *prometheus.CounterVec
}

// NewMetrics registers the scaler's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_scaler_replicas", Help: "Replicas per tier: desired (asked for) and ready.",
		}, []string{"tier", "state"}),
		maximum: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_scaler_max_replicas", Help: "The most replicas the scaler may give the tier (replicas.max).",
		}, []string{"tier"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_scaler_lag_records", Help: "Consumer-group lag of the tier's input topic.",
		}, []string{"tier"}),
		arrival: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_scaler_arrival_rate", Help: "Records per second arriving on the tier's input topic (λ).",
		}, []string{"tier"}),
		service: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_scaler_service_rate", Help: "Records per second the tier commits (μ).",
		}, []string{"tier"}),
		capacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ddnn_scaler_replica_capacity", Help: "Measured records per second one replica serves (0 until measured).",
		}, []string{"tier"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_scaler_decisions_total", Help: "Scaling decisions by reason.",
		}, []string{"tier", "reason"}),
		lagErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_scaler_lag_read_errors_total", Help: "Failed lag reads (the scaler holds the count).",
		}, []string{"tier"}),
	}
	reg.MustRegister(m.replicas, m.maximum, m.lag, m.arrival, m.service, m.capacity, m.decisions, m.lagErrors)
	return m
}

func (m *Metrics) observe(tier string, in Inputs, d Decision) {
	if m == nil {
		return
	}
	m.replicas.WithLabelValues(tier, "desired").Set(float64(d.Replicas))
	m.replicas.WithLabelValues(tier, "ready").Set(float64(in.Ready))
	m.maximum.WithLabelValues(tier).Set(float64(in.Max))
	if in.LagOK {
		m.lag.WithLabelValues(tier).Set(float64(in.Lag))
		m.arrival.WithLabelValues(tier).Set(in.Arrival)
		m.service.WithLabelValues(tier).Set(in.Service)
	}
	m.capacity.WithLabelValues(tier).Set(in.Capacity)
	m.decisions.WithLabelValues(tier, d.Reason).Inc()
}

func (m *Metrics) lagError(tier string) {
	if m != nil {
		m.lagErrors.WithLabelValues(tier).Inc()
	}
}
