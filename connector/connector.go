// Package connector owns the connector of one tier: it consumes the tier's
// input topic in a consumer group, micro-batches records into invocations
// of the tier's inference replicas (least outstanding requests, several in
// flight per replica), retries failures on another replica with
// exponential backoff and jitter, parks records the function rejects as
// bad input, or that keep failing while others succeed, on the tier's
// dead-letter topic with the reason, writes what the function decided
// (exits as results, forwards as the next tier's messages, or either on the
// uplink queue of another site: records.DestinationOf) with its own
// producer, and commits an offset only when every record at or below it is
// done (Offsets: its decision acknowledged by Kafka, or its dead letter),
// with that record's leader epoch, and only once Kafka confirmed the
// commit.
//
// Memory is bounded by connector.max_pending_records: the records fetched
// and not yet behind their partition's commit point (the offset window)
// never exceed it in total. Each assigned partition holds at most its
// share of it, ⌈max_pending_records / assigned partitions⌉ (more only
// after a rebalance added partitions, until it drains below the new
// share): a poll takes no more than the fullest partition still fetched
// has room for, and a partition at its share is paused (kgo's
// PauseFetchPartitions) until its oldest records finish. A stuck record
// stops its own partition only; the others are fetched on.
//
// When no replica answers, or Kafka does not acknowledge the decisions,
// the connector waits and retries without limit: the records stay
// uncommitted, the lag grows, every partition pauses at its share, and
// fetching resumes as soon as they answer again.
//
// The same machinery, pointed at another site's funnel instead of a
// tier's replicas, is the uplink of a cross-site link (Config.Link): it
// consumes the link's queue on the sending site, posts each record, batched
// by route, to the remote funnel, and parks what that funnel refuses (4xx)
// on the link's dead-letter topic. A remote funnel that fails or does not
// answer is the link down: its records are never charged, only waited for.
//
// It never decodes tensors beyond what internal/wire does, never runs
// models, and never drops a record: a record is done only once Kafka
// acknowledged what it became (its decision, or its dead letter), or, for
// an uplink, once the remote funnel did.
package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Config is what a connector needs.
type Config struct {
	// Pipeline is the whole pipeline. A tier's connector consumes the
	// Kafka of the tier's site, an uplink that of the link's sending site
	// (pipeline.SiteView).
	Pipeline *pipeline.Pipeline
	// Tier is the tier whose input the connector delivers to its replicas.
	Tier string
	// Link, instead of Tier, makes the connector the uplink of that link:
	// it ships pipeline.UplinkTopic(Link.To) on Link.From's Kafka to
	// Link.To's funnel (sites[].funnel.url).
	Link *pipeline.Link
	// Replicas are the base URLs (http://host:port) of the tier's
	// inference replicas, when the set is fixed.
	Replicas []string
	// ReplicasURL, when set, is polled for the live replica set: a
	// replica list (httpapi.ReplicasPath, what `ddnn up` serves).
	// Replicas that leave the set get no new calls and finish their
	// in-flight ones.
	ReplicasURL string
	// DrainTimeout bounds the graceful stop (default 8s).
	DrainTimeout time.Duration
	// InstanceID, when set, makes the connector a static member of its
	// group: restarted with the same id it takes its partitions back at
	// once, without a rebalance, where a new member waits for the dead
	// one's session to time out. Each connector of a tier needs its own.
	InstanceID string
	// Service, when set, is presented on every call: replicas and the
	// funnels' delivery zones want it.
	Service *auth.Tokens
	// Claims, when set, checks the device claims of the first tier's
	// records: a claim without a valid signature is dead-lettered
	// (auth.Claims). Set it when devices are authenticated.
	Claims *auth.Claims
	// Registerer receives the connector's and the Kafka client's metrics;
	// nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Tracing traces each message's call and the records it becomes;
	// nil: off.
	Tracing *telemetry.Tracing
}

// Connector runs one tier's connector, or one link's uplink.
type Connector struct {
	site *pipeline.SiteView // the consuming site
	t    target
	// conn are the settings the connector started with; live holds those
	// of them a reload changes in place (see Reload), read per use.
	conn pipeline.Connector
	live atomic.Pointer[pipeline.Connector]
	// reloadMu serialises reloads.
	reloadMu sync.Mutex
	// name says whose connector this is in errors: tier "fog", uplink
	// "edge" -> "fog".
	name string
	// topic is consumed in group; what the target refuses goes to dlq.
	topic, group, dlq, clientID string
	cfg                         Config
	offsets                     *Offsets
	pool                        *pool
	m                           *Metrics
	lag                         *lagMetrics
	log                         *slog.Logger
	http                        *http.Client
	cl                          *kgo.Client
	// canary, set for a tier's connector that follows a replica list,
	// routes the share of its canary (canary.go).
	canary *canary
	// tr traces (nil: off); a call's span per message is named
	// spanName and carries spanAttrs.
	tr        *telemetry.Tracing
	spanName  string
	spanAttrs []attribute.KeyValue

	// inflight counts invocations, and decision and dead-letter produces,
	// under way.
	inflight sync.WaitGroup
	// work is canceled only when the drain deadline passes.
	work context.Context
	// room is signaled when records leave the offset window or the
	// assignment changes, for a poll waiting for room (waitRoom).
	room chan struct{}
	// paused are the partitions poll paused at their share of the
	// window; only poll uses it.
	paused map[TopicPartition]bool

	assignedMu sync.Mutex
	assigned   map[TopicPartition]bool // the group gave us

	downMu    sync.Mutex
	downSince time.Time // when the tier went down; zero while up

	// unaccepted holds the producers whose forwards waited for a replica
	// that accepts them, each logged once (see awaitAccepting).
	unaccepted sync.Map

	// joined is set while the consumer is a member of its group (an
	// assignment came, empty or not); replicasKnown once the replica set
	// is known (given, or read from ReplicasURL). Ready reads them.
	joined, replicasKnown atomic.Bool
}

// Ready reports whether the connector can deliver: its consumer joined
// the group and it knows its replica set (which may be empty, for a tier
// scaled to zero).
func (c *Connector) Ready() bool { return c.joined.Load() && c.replicasKnown.Load() }

// New checks cfg and builds a connector; Run starts it.
func New(cfg Config) (*Connector, error) {
	if cfg.Link != nil {
		return newUplink(cfg)
	}
	t, i, err := cfg.Pipeline.Tier(cfg.Tier)
	if err != nil {
		return nil, err
	}
	if len(cfg.Replicas) == 0 && cfg.ReplicasURL == "" {
		return nil, fmt.Errorf("tier %q: connector needs replica URLs or a URL to read them from", t.Name)
	}
	p := cfg.Pipeline
	site, err := p.OnTierSite(t.Name)
	if err != nil {
		return nil, err
	}
	tt := &tierTarget{enc: p.Encoding(), decisions: newDecisionWriter(site, t.Name, i)}
	if i == 0 {
		// Devices may produce raw samples straight to the first tier,
		// and claim to be any device.
		tt.raw = &wire.RawInput{DType: p.Input.DType, Shape: p.Input.Shape}
		tt.claims = cfg.Claims
	}
	if cfg.Tracing.Enabled() {
		d := tt.decisions
		d.maxBytes -= records.TraceHeaderBytes
		d.limitNote = fmt.Sprintf(" (less %d bytes for the traceparent header)", records.TraceHeaderBytes)
	}
	c := newConnector(cfg, &Connector{
		site:      site,
		t:         tt,
		conn:      t.Connector,
		name:      fmt.Sprintf("tier %q", t.Name),
		topic:     p.InputTopic(t.Name),
		group:     p.ConsumerGroup(t.Name),
		dlq:       p.DLQTopic(t.Name),
		clientID:  "connector-" + t.Name,
		spanName:  "invoke " + t.Name,
		spanAttrs: []attribute.KeyValue{telemetry.AttrTier.String(t.Name)},
	}, prometheus.Labels{"tier": t.Name})
	if cfg.ReplicasURL != "" {
		c.canary = newCanary(t, cfg.ReplicasURL, c.conn.InFlightPerReplica, c.tierRegisterer(t.Name))
	}
	return c, nil
}

// newConnector completes c, whose target, settings and topics are set,
// for cfg; its metrics carry labels.
func newConnector(cfg Config, c *Connector, labels prometheus.Labels) *Connector {
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.cfg = cfg
	c.tr = cfg.Tracing
	live := c.conn
	c.live.Store(&live)
	c.offsets = NewOffsets()
	c.pool = newPool(cfg.Replicas, c.conn.InFlightPerReplica)
	c.replicasKnown.Store(cfg.ReplicasURL == "")
	c.http = &http.Client{Transport: cfg.Service.Transport(&http.Transport{
		MaxIdleConnsPerHost: c.conn.InFlightPerReplica * 2,
		IdleConnTimeout:     90 * time.Second,
	})}
	c.room = make(chan struct{}, 1)
	c.paused = map[TopicPartition]bool{}
	c.assigned = map[TopicPartition]bool{}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exported
	}
	_, decisions := c.t.(*tierTarget)
	c.m = NewMetrics(prometheus.WrapRegistererWith(labels, reg), c.offsets.Window, decisions)
	c.lag = newLagMetrics(prometheus.WrapRegistererWith(labels, reg), c.pool.size)
	return c
}

// item is one decoded record on its way to a replica or a remote funnel.
type item struct {
	rec *kgo.Record
	// route groups items that may share a call (see target).
	route string
	// producer is the model that wrote a forward (the last hop's, in
	// compact form), which the replica must accept; "" for the first
	// tier's records, an uplink's, and forwards written before models
	// were named.
	producer string
	msg      wire.Message
	result   *wire.Result // an uplink's result record
	// attempts counts the failures charged to the record (see invoke).
	attempts int
	// fetched is when the poll that fetched rec returned.
	fetched time.Time
	// variant is the model that serves the record while its tier runs a
	// canary (variantOf): current or canary; "" without one.
	variant string
}

// Run consumes until ctx ends, then stops gracefully, in order: stop
// fetching, finish what was handed out (bounded by the drain timeout),
// commit what is done, leave the group.
func (c *Connector) Run(ctx context.Context) error {
	conn := c.conn
	opts, err := kafka.ClientOptions(&c.site.Kafka, c.clientID, c.cfg.Registerer, c.log)
	if err != nil {
		return fmt.Errorf("%s: kafka client: %w", c.name, err)
	}
	opts = append(opts, kafka.GroupConsumerOptions(c.group, c.topic)...)
	opts = append(opts, kafka.ProducerOptions(&c.site.Kafka)...)
	opts = append(opts, c.tr.KafkaOpts(c.clientID, c.group)...)
	opts = append(opts,
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
	)
	if c.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("%s: kafka client: %w", c.name, err)
	}
	c.cl = cl
	defer cl.Close() // leaves the group, unless a static member
	defer c.http.CloseIdleConnections()

	// Once ctx ends, the stop has DrainTimeout to finish what was handed
	// out; then work ends and whatever is left stays uncommitted.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	c.work = work
	cancelDrainDeadline := context.AfterFunc(ctx, func() {
		t := time.NewTimer(c.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	})
	defer cancelDrainDeadline()

	// Background loops run until the final commit.
	loops, stopLoops := context.WithCancel(context.Background())
	var bg errgroup.Group
	if c.cfg.ReplicasURL != "" {
		follow := func() {
			if err := c.followReplicas(loops); err != nil {
				c.log.Warn("replica list", "err", err)
			}
			c.followCanary(loops)
		}
		follow()
		bg.Go(func() error { every(loops, followEvery, follow); return nil })
	}
	bg.Go(func() error { every(loops, 200*time.Millisecond, func() { c.commit(loops) }); return nil })
	bg.Go(func() error { every(loops, lagEvery, func() { c.readLag(loops) }); return nil })

	items := make(chan item, conn.MaxBatch*max(1, len(c.cfg.Replicas))*conn.InFlightPerReplica)
	var batcher errgroup.Group
	batcher.Go(func() error { c.batch(items); return nil })

	c.log.Info("connector started", "topic", c.topic, "group", c.group, "replicas", c.pool.size())
	pollErr := c.poll(ctx, items)

	close(items)
	batcher.Wait()
	c.inflight.Wait()
	if work.Err() != nil {
		c.log.Warn("drain timeout: in-flight records left uncommitted",
			"timeout", c.cfg.DrainTimeout, "pending", c.offsets.Pending())
	}
	stopLoops()
	bg.Wait()
	cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	c.commitAll(cctx)
	cancel()
	cl.AllowRebalance()
	c.log.Info("connector stopped", "pending", c.offsets.Pending())
	return pollErr
}

// followEvery is how often the connector reads the live replica set
// (Config.ReplicasURL).
const followEvery = 500 * time.Millisecond

// batch groups items of one route into invocations of at most MaxBatch.
// With MaxWait 0 (the default) partial batches go as soon as no more
// records are queued: batches grow only while records arrive faster than
// they are dispatched (dispatch blocks while every replica slot is busy),
// so an idle pipeline adds no batching delay. With MaxWait > 0 partial
// batches wait up to that long to fill.
func (c *Connector) batch(items <-chan item) {
	var (
		cur   = map[string][]item{} // by route and variant (batchKey)
		n     int                   // items in cur
		timer = time.NewTimer(time.Hour)
		armed bool // timer runs for the oldest item in cur
	)
	timer.Stop()
	flush := func(route string) {
		batch := cur[route]
		if len(batch) == 0 {
			return
		}
		delete(cur, route)
		if n -= len(batch); n == 0 {
			timer.Stop()
			armed = false
		}
		c.dispatch(batch)
	}
	flushAll := func() {
		for route := range cur { // deleting while ranging is safe
			flush(route)
		}
	}
	for {
		select {
		case it, ok := <-items:
			if !ok {
				flushAll()
				return
			}
			key := it.batchKey()
			cur[key] = append(cur[key], it)
			n++
			conn := c.live.Load()
			if len(cur[key]) >= conn.MaxBatch {
				flush(key)
			}
			switch {
			case conn.MaxWait == 0:
				// Other routes' partial batches go too.
				if len(items) == 0 {
					flushAll()
				}
			case n > 0 && !armed:
				timer.Reset(conn.MaxWait)
				armed = true
			}
		case <-timer.C:
			armed = false
			flushAll()
		}
	}
}

// dispatch waits for a replica slot (backpressure on the batcher) and
// invokes it in the background.
func (c *Connector) dispatch(batch []item) {
	r, err := c.poolFor(batch[0].variant).acquire(c.work, nil, batch[0].producer)
	if errors.Is(err, errNoneAccepts) {
		r, err = nil, nil // invoke waits for one, or falls back, not the batcher
	}
	if err != nil {
		return // drain deadline passed: records stay uncommitted
	}
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		c.invoke(r, batch)
	}()
}

// followReplicas reads the live replica set once and updates the pool.
func (c *Connector) followReplicas(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	reps, err := httpapi.ReadReplicas(ctx, c.http, c.cfg.ReplicasURL)
	if err != nil {
		return err
	}
	urls := make([]string, 0, len(reps))
	for _, r := range reps {
		urls = append(urls, r.URL)
	}
	if added, removed := c.pool.update(urls); added+removed > 0 {
		c.log.Info("replica set changed", "replicas", c.pool.size(), "added", added, "removed", removed)
	}
	c.replicasKnown.Store(true)
	return nil
}
