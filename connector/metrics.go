package connector

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a connector's Prometheus metrics. Every metric belongs to the
// connector's tier, which the caller adds as a constant label.
type Metrics struct {
	fetchedRecs       prometheus.Counter
	invocations       *prometheus.CounterVec
	retries           prometheus.Counter
	deadLetters       prometheus.Counter
	commits           prometheus.Counter
	batchSize         prometheus.Histogram
	invocationSeconds prometheus.Histogram
	exhausts          prometheus.Counter
	dlqRetries        prometheus.Counter
	commitFails       prometheus.Counter
	down              prometheus.Gauge
	downSince         prometheus.Gauge
	notAccepted       prometheus.Counter
	awaitingAccept    prometheus.Gauge

	// A tier's connector writes its tier's decisions; an uplink's
	// leaves these nil.
	decisionRecords *prometheus.CounterVec
	decisionRetries prometheus.Counter
	e2e             prometheus.Histogram
}

// NewMetrics registers the connector's metrics with reg; window reports
// the records held by the offset tracker. With decisions, the connector
// is a tier's, which writes its tier's decisions, and those are counted
// too.
func NewMetrics(reg prometheus.Registerer, window func() int, decisions bool) *Metrics {
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
		invocationSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
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
		downSince: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_connector_tier_down_since_seconds", Help: "Unix time the tier went down (every replica failing its calls), 0 while it is up.",
		}),
		notAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_not_accepted_calls_total", Help: "Calls a replica answered 421: its model does not accept the forwards' producer (tiers[].accepts, or their shape); they went to another replica.",
		}),
		awaitingAccept: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_connector_calls_awaiting_accepting_replica", Help: "Calls whose forwards no running replica accepts, waiting for one (a rollout under way, or a model that accepts them is missing).",
		}),
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ddnn_connector_pending_records", Help: "Records fetched and not yet committable; fetching pauses at connector.max_pending_records.",
	}, func() float64 { return float64(window()) })
	reg.MustRegister(m.fetchedRecs, m.invocations, m.retries, m.deadLetters, m.commits, m.batchSize, m.invocationSeconds,
		m.exhausts, m.dlqRetries, m.commitFails, m.down, m.downSince, m.notAccepted, m.awaitingAccept, pending)
	if decisions {
		m.decisionRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_connector_decision_records_total", Help: "Records Kafka acknowledged for the tier's decisions, by kind: results (this site's results topic), forwards (the next tier's input topic on this site), uplink (the queue of the link to another site).",
		}, []string{"kind"})
		m.decisionRetries = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_decision_produce_retries_total", Help: "Decision records Kafka did not acknowledge, tried again (their source records stay uncommitted meanwhile).",
		})
		m.e2e = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ddnn_pipeline_e2e_latency_seconds",
			Help:    "From a device's send time to its result acknowledged on the results topic, by exit tier.",
			Buckets: prometheus.ExponentialBuckets(500e-6, 2, 18),
		})
		reg.MustRegister(m.decisionRecords, m.decisionRetries, m.e2e)
	}
	return m
}
