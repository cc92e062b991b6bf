package connector

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a connector's Prometheus metrics. Every metric belongs to the
// connector's tier, which the caller adds as a constant label.
type Metrics struct {
	fetchedRecs  prometheus.Counter
	invocations  *prometheus.CounterVec
	retries      prometheus.Counter
	deadLetters  prometheus.Counter
	commits      prometheus.Counter
	batchSize    prometheus.Histogram
	invokeTimeHi prometheus.Histogram
	exhausts     prometheus.Counter
	dlqRetries   prometheus.Counter
	commitFails  prometheus.Counter
	down         prometheus.Gauge
}

// NewMetrics registers the connector's metrics with reg; window reports
// the records held by the offset tracker.
func NewMetrics(reg prometheus.Registerer, window func() int) *Metrics {
	m := &Metrics{
		fetchedRecs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_fetched_records_total", Help: "Records fetched from the tier's input topic.",
		}),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_connector_invocations_total", Help: "Invocations of inference replicas by outcome (ok, rejected, retry).",
		}, []string{"outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_retries_total", Help: "Invocations retried after a 5xx, timeout or connection error.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_dead_lettered_records_total", Help: "Records parked on the tier's dead-letter topic.",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_committed_partitions_total", Help: "Partition offsets committed (one per partition per commit).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ddnn_connector_batch_size", Help: "Records per invocation.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		invokeTimeHi: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ddnn_connector_invocation_duration_seconds", Help: "Time of one invocation of a replica.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2.5, 14),
		}),
		exhausts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_attempts_exhausted_total", Help: "Records dead-lettered after connector.max_attempts failures while other records succeeded.",
		}),
		dlqRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_dead_letter_retries_total", Help: "Dead-letter produces that failed and were tried again.",
		}),
		commitFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_commit_failures_total", Help: "Offset commits Kafka did not confirm (tried again).",
		}),
		down: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_connector_tier_down", Help: "1 while every replica of the tier fails its calls (records wait and are retried), else 0.",
		}),
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ddnn_connector_pending_records", Help: "Records fetched and not yet committable; fetching pauses at connector.max_pending_records.",
	}, func() float64 { return float64(window()) })
	reg.MustRegister(m.fetchedRecs, m.invocations, m.retries, m.deadLetters, m.commits, m.batchSize, m.invokeTimeHi,
		m.exhausts, m.dlqRetries, m.commitFails, m.down, pending)
	return m
}
