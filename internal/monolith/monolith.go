// Package monolith owns `ddnn monolith`, the baseline the pipeline is
// measured against, built like Kafka-ML's inference service: one process
// consumes the first tier's topic in its own group, runs every tier's model
// in turn with a fixed number of workers (each with one session per tier),
// and produces results to the results topic in the pipeline's result format
// (on a pipeline of several sites, every tier placed on the monolith's site:
// results for a results site elsewhere go to the queue of the link there).
// Exits use the pipeline's own per-sample policies (inference.Function), so
// both give the same classes; a sample that forwards at a tier goes on to
// the next tier in the same process. Records are decoded as the connector
// decodes them, and undecodable ones go to the first tier's DLQ.
//
// Delivery is at least once, like the pipeline's: a poll's records are
// committed only after their results (and dead letters) were acknowledged.
//
// It must not use funnels, connectors or HTTP between tiers, and it does not
// scale: the point of the baseline is a fixed-size, single-process service.
package monolith

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Group is the consumer group of a pipeline's monolith.
func Group(p *pipeline.Pipeline) string { return p.MonolithGroup() }

// ClientOptions are the options a monolith's client on site needs on top
// of the site's Kafka options: a member of Group consuming the first
// tier's topic and committing what it finished, like a connector
// (kafka.GroupConsumerOptions), and a producer of results and dead letters
// (kafka.ProducerOptions). joined, when not nil, is called at every join
// of the group (kgo calls OnPartitionsAssigned after each, also with
// nothing assigned), and left with false when the membership is lost.
func ClientOptions(site *pipeline.SiteView, joined func(bool)) []kgo.Opt {
	p := site.Pipeline
	opts := append(kafka.GroupConsumerOptions(Group(p), p.InputTopic(p.Tiers[0].Name)),
		kafka.ProducerOptions(&site.Kafka)...)
	if joined != nil {
		opts = append(opts,
			kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { joined(true) }),
			kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) { joined(false) }))
	}
	return opts
}

// Config is what a Monolith needs.
type Config struct {
	// Pipeline is the whole pipeline; the monolith writes with the
	// settings of Site's Kafka.
	Pipeline *pipeline.Pipeline
	// Client consumes the first tier's topic in Group (ClientOptions)
	// and produces results and dead letters.
	Client *kgo.Client
	// Workers run batches at once, each with its own session per tier.
	Workers int
	// MaxBatch bounds a worker's batch (default: the first tier's
	// connector.max_batch).
	MaxBatch int
	// Load opens tier i's session; it is called Workers times per tier.
	Load func(tier int) (*inference.Session, error)
	// Registerer gets the monolith's and the tiers' metrics; nil none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Claims, when set, checks the device claims of the input records
	// (records.CheckClaim): one without a valid signature is
	// dead-lettered. Set it when devices are authenticated.
	Claims *auth.Claims
	// Site is the site the monolith runs on, whose Kafka Client uses:
	// every tier must be placed there (default: the first tier's site).
	// Results for a results site elsewhere go to the queue of the link
	// there, as a connector of Site writes them (records.DestinationOf).
	Site string
}

// Monolith runs every tier of a pipeline in one process.
type Monolith struct {
	p      *pipeline.Pipeline
	kafka  pipeline.Kafka // Site's
	cl     *kgo.Client
	log    *slog.Logger
	raw    *wire.RawInput
	claims *auth.Claims
	batch  int
	// results is where results go from the site.
	results records.Destination
	funcs   []*inference.Function // per tier
	workers [][]*inference.Session
	m       metrics
}

type metrics struct {
	records *prometheus.CounterVec
	commits prometheus.Counter
	batch   prometheus.Histogram
}

// New loads Workers sessions per tier.
func New(cfg Config) (*Monolith, error) {
	p := cfg.Pipeline
	var errs []error
	if p == nil {
		errs = append(errs, errors.New("no pipeline"))
	}
	if cfg.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers must be at least 1, not %d", cfg.Workers))
	}
	if cfg.Load == nil {
		errs = append(errs, errors.New("no Load function for the sessions"))
	}
	if p != nil {
		if cfg.Site == "" && len(p.Tiers) > 0 {
			cfg.Site = p.SiteOf(p.Tiers[0].Name).Name
		}
		for _, t := range p.Tiers {
			if s := p.SiteOf(t.Name); s == nil || s.Name != cfg.Site {
				errs = append(errs, fmt.Errorf("tier %q is not on site %q: the monolith runs every tier on its own site", t.Name, cfg.Site))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("monolith: %w", err)
	}
	site, err := p.OnSite(cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("monolith: %w", err)
	}
	if cfg.MaxBatch < 1 {
		cfg.MaxBatch = p.Tiers[0].Connector.MaxBatch
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Monolith{
		p: p, kafka: site.Kafka, cl: cfg.Client, log: cfg.Logger, batch: cfg.MaxBatch,
		raw: &wire.RawInput{DType: p.Input.DType, Shape: p.Input.Shape}, claims: cfg.Claims,
		m: metrics{
			records: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "ddnn_monolith_records_total", Help: "Input records by outcome: result or dead_lettered.",
			}, []string{"outcome"}),
			commits: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "ddnn_monolith_commits_total", Help: "Offset commits after acknowledged results.",
			}),
			batch: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "ddnn_monolith_batch_duration_seconds",
				Help:    "Time of one worker's batch through every tier it reached.",
				Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
			}),
		},
	}
	m.results = records.DestinationOf(p, cfg.Site, "")
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	reg.MustRegister(m.m.records, m.m.commits, m.m.batch)
	im := inference.NewMetrics(reg)
	for _, t := range p.Tiers {
		f, err := inference.New(inference.Config{Pipeline: p, Tier: t.Name, Metrics: im, Logger: m.log.With("tier", t.Name)})
		if err != nil {
			return nil, err
		}
		m.funcs = append(m.funcs, f)
	}
	for w := 0; w < cfg.Workers; w++ {
		var chain []*inference.Session
		for i := range p.Tiers {
			s, err := cfg.Load(i)
			if err == nil {
				chain = append(chain, s)
				err = m.funcs[i].SetSession(s) // checks the chain fits
			}
			if err != nil {
				m.workers = append(m.workers, chain)
				m.Close()
				return nil, fmt.Errorf("monolith: worker %d: %w", w, err)
			}
		}
		m.workers = append(m.workers, chain)
	}
	return m, nil
}

// Close frees the sessions.
func (m *Monolith) Close() {
	for _, chain := range m.workers {
		for _, s := range chain {
			s.Close()
		}
	}
}

// Run consumes until ctx ends: poll, infer on every worker, produce results
// and dead letters, wait for their acknowledgement, commit. A poll whose
// results could not be produced is not committed and is redelivered.
func (m *Monolith) Run(ctx context.Context) error {
	// With kgo.BlockRebalanceOnPoll, a rebalance waits until a poll's
	// records are committed.
	defer m.cl.AllowRebalance()
	for {
		m.cl.AllowRebalance()
		fetches := m.cl.PollRecords(ctx, m.batch*len(m.workers))
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			m.log.Warn("fetch", "topic", topic, "partition", p, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		out, err := m.process(recs)
		if err != nil {
			return err
		}
		// Polled records are finished even when ctx ends meanwhile: a
		// graceful stop leaves nothing produced but uncommitted.
		if err := m.finish(out, recs); err != nil {
			return err
		}
		m.m.commits.Inc()
	}
}

// finish produces out and then commits recs, within a bound of its own.
func (m *Monolith) finish(out, recs []*kgo.Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*m.kafka.ProduceTimeout)
	defer cancel()
	if err := m.cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
		// Not committed: the group redelivers these records.
		return fmt.Errorf("monolith: producing results: %w", err)
	}
	if err := m.cl.CommitRecords(ctx, recs...); err != nil {
		return fmt.Errorf("monolith: commit: %w", err)
	}
	return nil
}

// process decodes recs and runs them through every tier, batches spread
// over the workers; it returns the records to produce.
func (m *Monolith) process(recs []*kgo.Record) ([]*kgo.Record, error) {
	var out []*kgo.Record
	msgs := make([]wire.Message, 0, len(recs))
	from := make([]*kgo.Record, 0, len(recs)) // the record of each message
	for _, r := range recs {
		msg, err := records.DecodeMessage(r, m.raw)
		if err == nil {
			err = records.CheckClaim(m.claims, r, msg.Device)
		}
		if err != nil {
			out = append(out, m.deadLetter(r, records.DecodeFailure(err)))
			continue
		}
		msgs, from = append(msgs, msg), append(from, r)
	}
	// What the first tier's function would answer 400 for.
	if rej := m.funcs[0].Check(msgs); len(rej) > 0 {
		bad := map[int]string{}
		for _, x := range rej {
			bad[x.Index] = x.Reason
		}
		kept := msgs[:0]
		for i, msg := range msgs {
			if reason, ok := bad[i]; ok {
				out = append(out, m.deadLetter(from[i], fmt.Sprintf("rejected by tier %q: %s", m.p.Tiers[0].Name, reason)))
				continue
			}
			kept = append(kept, msg)
		}
		msgs = kept
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		results  []wire.Result
		dead     []*kgo.Record
		firstErr error
	)
	type chunk struct {
		msgs []wire.Message
		from []*kgo.Record
	}
	chunks := make(chan chunk)
	for _, chain := range m.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				start := time.Now()
				rs, dl, err := m.chain(chain, c.msgs, c.from)
				m.m.batch.Observe(time.Since(start).Seconds())
				mu.Lock()
				results = append(results, rs...)
				dead = append(dead, dl...)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for len(msgs) > 0 {
		n := min(m.batch, len(msgs))
		chunks <- chunk{msgs[:n], from[:n]}
		msgs, from = msgs[n:], from[n:]
	}
	close(chunks)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	out = append(out, dead...)
	for i := range results {
		rec, err := records.Result(m.results, &results[i])
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	m.m.records.WithLabelValues("result").Add(float64(len(results)))
	return out, nil
}

// chain runs a batch (msgs, each read from the record of from at the same
// index) tier by tier on one worker's sessions: exits become results,
// forwards go on to the next tier in the same process, and a sample a
// tier's function rejects (a model output it cannot report) becomes a
// dead letter of its record.
func (m *Monolith) chain(sessions []*inference.Session, msgs []wire.Message, from []*kgo.Record) ([]wire.Result, []*kgo.Record, error) {
	var results []wire.Result
	var dead []*kgo.Record
	for i, s := range sessions {
		if len(msgs) == 0 {
			break
		}
		at := time.Now().UTC()
		for j := range msgs {
			msgs[j].Hops = append(msgs[j].Hops, wire.Hop{Tier: m.p.Tiers[i].Name, At: at})
		}
		if d := m.p.Tiers[i].Inference.Emulate.ServiceTimePerSample; d > 0 {
			time.Sleep(time.Duration(len(msgs)) * d) // the same benchmark knob as the functions
		}
		ds, rej, err := m.funcs[i].Infer(s, msgs)
		if err != nil {
			return results, dead, fmt.Errorf("tier %q: %w", m.p.Tiers[i].Name, err)
		}
		bad := make(map[int]bool, len(rej))
		for _, x := range rej {
			bad[x.Index] = true
			dead = append(dead, m.deadLetter(from[x.Index], fmt.Sprintf("rejected by tier %q: %s", m.p.Tiers[i].Name, x.Reason)))
		}
		exitedAt := time.Now().UTC()
		var next []wire.Message
		var nextFrom []*kgo.Record
		for j, d := range ds {
			if bad[j] {
				continue
			}
			msg := msgs[j]
			if d.Exit {
				results = append(results, wire.NewResult(&msg, &d, s.Model, exitedAt))
				continue
			}
			msg.Tensor = *d.Forward
			next, nextFrom = append(next, msg), append(nextFrom, from[j])
		}
		msgs, from = next, nextFrom
	}
	if len(msgs) > 0 {
		return results, dead, fmt.Errorf("%d messages did not exit on the last tier", len(msgs))
	}
	return results, dead, nil
}

// deadLetter parks r on the first tier's DLQ, as the connector does.
func (m *Monolith) deadLetter(r *kgo.Record, reason string) *kgo.Record {
	m.m.records.WithLabelValues("dead_lettered").Inc()
	m.log.Warn("record dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	return records.DeadLetter(m.p.DLQTopic(m.p.Tiers[0].Name), r, reason, m.kafka.MaxRecordBytes)
}
