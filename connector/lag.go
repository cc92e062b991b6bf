package connector

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
)

// lagEvery is how often the connector reads its group's lag for
// ddnn_connector_lag_records: one offsets round trip to its site's Kafka.
const lagEvery = 5 * time.Second

// lagMetrics are the gauges of what waits for the connector: its group's
// lag on its input topic (a tier's, or a link's queue), and the replicas
// it calls.
type lagMetrics struct {
	lag      prometheus.Gauge
	lagError prometheus.Counter
	replicas prometheus.GaugeFunc
}

func newLagMetrics(reg prometheus.Registerer, replicas func() int) *lagMetrics {
	m := &lagMetrics{
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_connector_lag_records",
			Help: "Records on the connector's input topic (a tier's input, or a link's uplink queue) its group has not committed, read every 5 s.",
		}),
		lagError: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_lag_read_errors_total",
			Help: "Lag reads that failed (the gauge keeps its last value).",
		}),
	}
	m.replicas = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ddnn_connector_replicas",
		Help: "Replicas in the set the connector calls (an uplink's is its remote funnel).",
	}, func() float64 { return float64(replicas()) })
	reg.MustRegister(m.lag, m.lagError, m.replicas)
	return m
}

// readLag sets the lag gauge from the group's committed offsets and the
// topic's end offsets (kafka.Lag: a partition never committed counts from
// its log start); a failed read is counted and logged at debug level.
func (c *Connector) readLag(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	lag, err := kafka.Lag(ctx, kadm.NewClient(c.cl), c.group, c.topic)
	if err != nil {
		c.lag.lagError.Inc()
		c.log.Debug("lag unreadable", "err", err)
		return
	}
	c.lag.lag.Set(float64(lag.Lag))
}
