// Package connector owns the kafka-to-http connector of one tier: it
// consumes the tier's input topic in a consumer group, micro-batches records
// into invocations of the tier's inference replicas (least outstanding
// requests, several in flight per replica), retries failures on another
// replica with exponential backoff and jitter, parks records the function
// rejects as bad input on the tier's dead-letter topic with the reason, and
// commits an offset only when every record at or below it is done (Offsets).
//
// It never decodes tensors beyond what internal/wire does, never runs
// models, and never drops a record: a record is either acknowledged by a
// replica or acknowledged by Kafka on the dead-letter topic.
package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Headers a dead-lettered record carries besides wire.HeaderReason.
const (
	HeaderSourceTopic     = "ddnn-source-topic"
	HeaderSourcePartition = "ddnn-source-partition"
	HeaderSourceOffset    = "ddnn-source-offset"
)

// Config is what a connector needs.
type Config struct {
	Pipeline *pipeline.Pipeline
	Tier     string
	// Replicas are the base URLs (http://host:port) of the tier's
	// inference replicas, when the set is fixed.
	Replicas []string
	// ReplicasURL, when set, is polled for the live replica set: a JSON
	// array of {"url":…} (what `ddnn up` serves). Replicas that leave the
	// set get no new calls and finish their in-flight ones.
	ReplicasURL string
	// DrainTimeout bounds the graceful stop (default 8s).
	DrainTimeout time.Duration
	// Registerer receives the connector's and the Kafka client's metrics;
	// nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Connector runs one tier's connector.
type Connector struct {
	p       *pipeline.Pipeline
	tier    *pipeline.Tier
	cfg     Config
	raw     *wire.RawInput
	offsets *Offsets
	pool    *pool
	m       *Metrics
	log     *slog.Logger
	http    *http.Client
	cl      *kgo.Client

	inflight sync.WaitGroup
	// work is canceled only when the drain deadline passes.
	work context.Context
}

// New checks cfg and builds a connector; Run starts it.
func New(cfg Config) (*Connector, error) {
	t, i, err := cfg.Pipeline.Tier(cfg.Tier)
	if err != nil {
		return nil, err
	}
	if len(cfg.Replicas) == 0 && cfg.ReplicasURL == "" {
		return nil, fmt.Errorf("tier %q: connector needs replica URLs or a URL to read them from", t.Name)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 8 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Connector{
		p:       cfg.Pipeline,
		tier:    t,
		cfg:     cfg,
		offsets: NewOffsets(),
		pool:    newPool(cfg.Replicas, t.Connector.InFlightPerReplica),
		log:     log,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: t.Connector.InFlightPerReplica * 2,
			IdleConnTimeout:     90 * time.Second,
		}},
	}
	if cfg.Registerer != nil {
		c.m = NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"tier": t.Name}, cfg.Registerer))
	}
	if i == 0 {
		// Devices may produce raw samples straight to the first tier.
		c.raw = &wire.RawInput{DType: cfg.Pipeline.Input.DType, Shape: cfg.Pipeline.Input.Shape}
	}
	return c, nil
}

// item is one decoded record on its way to a replica.
type item struct {
	rec *kgo.Record
	msg wire.Message
}

// Run consumes until ctx ends, then stops gracefully: stop fetching, finish
// in-flight invocations (bounded by the drain timeout), commit, leave the
// group.
func (c *Connector) Run(ctx context.Context) error {
	conn := c.tier.Connector
	opts := append(kafka.ClientOptions(&c.p.Kafka, "connector-"+c.tier.Name, c.cfg.Registerer),
		kgo.ConsumerGroup(c.p.ConsumerGroup(c.tier.Name)),
		kgo.ConsumeTopics(c.p.InputTopic(c.tier.Name)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onRevoked),
		kgo.FetchMaxWait(250*time.Millisecond),
		// A crashed connector's partitions move to a live one after this
		// long; kgo's 45s default would stall a tier for that long.
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(c.p.Kafka.ProduceTimeout),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("tier %q: kafka client: %w", c.tier.Name, err)
	}
	c.cl = cl
	work, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	c.work = work

	items := make(chan item, conn.MaxBatch*max(1, len(c.cfg.Replicas))*conn.InFlightPerReplica)
	if c.cfg.ReplicasURL != "" {
		follow := func() {
			if err := c.followReplicas(ctx); err != nil {
				c.log.Warn("replica list", "err", err)
			}
		}
		follow()
		go every(ctx, 500*time.Millisecond, follow)
	}
	batcherDone := make(chan struct{})
	go func() {
		defer close(batcherDone)
		c.batch(items)
	}()
	commitDone := make(chan struct{})
	commitCtx, stopCommits := context.WithCancel(context.Background())
	go func() {
		defer close(commitDone)
		c.commitLoop(commitCtx)
	}()

	c.log.Info("connector started", "topic", c.p.InputTopic(c.tier.Name), "group", c.p.ConsumerGroup(c.tier.Name), "replicas", len(c.cfg.Replicas))
	pollErr := c.poll(ctx, items)

	// Graceful stop: no more fetching; finish what was handed out.
	close(items)
	<-batcherDone
	drained := make(chan struct{})
	go func() {
		c.inflight.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(c.cfg.DrainTimeout):
		c.log.Warn("drain timeout: abandoning in-flight invocations; their records will be redelivered", "pending", c.offsets.Pending())
		cancelWork()
		<-drained
	}
	stopCommits()
	<-commitDone
	cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	c.commit(cctx)
	cancel()
	cl.AllowRebalance()
	cl.Close() // leaves the group
	c.log.Info("connector stopped", "pending", c.offsets.Pending())
	return pollErr
}

// poll fetches records, tracks them, and hands decoded ones to the batcher.
func (c *Connector) poll(ctx context.Context, items chan<- item) error {
	maxPoll := cap(items)
	for {
		fetches := c.cl.PollRecords(ctx, maxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			// Records fetched with this poll are not handed out; they
			// were not added to the tracker, so nothing commits past them.
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			c.log.Warn("fetch", "topic", topic, "partition", p, "err", err)
		})
		recs := fetches.Records()
		for _, r := range recs {
			if err := c.offsets.Add(TopicPartition{r.Topic, r.Partition}, r.Offset); err != nil {
				c.log.Error("offset tracking", "err", err)
			}
		}
		c.cl.AllowRebalance()
		c.m.fetched(len(recs))
		for _, r := range recs {
			m, err := wire.DecodeRecord(r.Key, r.Value, RecordHeaders(r), c.raw, fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset))
			if err != nil {
				c.inflight.Add(1)
				go func() {
					defer c.inflight.Done()
					c.deadLetter(r, "undecodable record: "+err.Error())
				}()
				continue
			}
			if m.SentAt.IsZero() {
				// Produced straight to Kafka without a send time: the
				// record's own timestamp is the best we have.
				m.SentAt = r.Timestamp.UTC()
			}
			items <- item{rec: r, msg: m}
		}
	}
}

// DeadLetter is rec parked on topic: its key, value and headers, plus the
// reason and where it came from.
func DeadLetter(topic string, rec *kgo.Record, reason string) *kgo.Record {
	return &kgo.Record{
		Topic: topic,
		Key:   rec.Key,
		Value: rec.Value,
		Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...),
			kgo.RecordHeader{Key: wire.HeaderReason, Value: []byte(reason)},
			kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(rec.Topic)},
			kgo.RecordHeader{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
			kgo.RecordHeader{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		),
	}
}

// RecordHeaders converts a record's headers for wire.DecodeRecord.
func RecordHeaders(r *kgo.Record) []wire.Header {
	hs := make([]wire.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = wire.Header{Key: h.Key, Value: h.Value}
	}
	return hs
}

// batch groups items into invocations of at most MaxBatch. With MaxWait 0
// (the default) a partial batch goes as soon as no more records are queued:
// batches grow only while records arrive faster than they are dispatched
// (dispatch blocks while every replica slot is busy), so an idle pipeline
// adds no batching delay. With MaxWait > 0 a partial batch waits up to that
// long to fill.
func (c *Connector) batch(items <-chan item) {
	conn := c.tier.Connector
	var (
		cur   []item
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	flush := func() {
		if len(cur) == 0 {
			return
		}
		batch := cur
		cur = nil
		timer.Stop()
		c.dispatch(batch)
	}
	for {
		select {
		case it, ok := <-items:
			if !ok {
				flush()
				return
			}
			cur = append(cur, it)
			switch {
			case len(cur) >= conn.MaxBatch:
				flush()
			case conn.MaxWait == 0:
				if len(items) == 0 {
					flush()
				}
			case len(cur) == 1:
				timer.Reset(conn.MaxWait)
			}
		case <-timer.C:
			flush()
		}
	}
}

// dispatch waits for a replica slot (backpressure on the batcher) and
// invokes it in the background.
func (c *Connector) dispatch(batch []item) {
	r, err := c.pool.acquire(c.work, nil)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.ReplicasURL, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", c.cfg.ReplicasURL, resp.Status)
	}
	var reps []struct {
		URL string `json:"url"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&reps); err != nil {
		return fmt.Errorf("%s: %w", c.cfg.ReplicasURL, err)
	}
	urls := make([]string, 0, len(reps))
	for _, r := range reps {
		urls = append(urls, r.URL)
	}
	if added, removed := c.pool.update(urls); added+removed > 0 {
		c.log.Info("replica set changed", "replicas", c.pool.size(), "added", added, "removed", removed)
	}
	return nil
}

// invocation outcomes.
const (
	outcomeOK       = "ok"
	outcomeRejected = "rejected"
	outcomeRetry    = "retry"
)

// invoke sends batch to r (already acquired) and keeps at it until every
// record is acknowledged or dead-lettered.
func (c *Connector) invoke(r *replica, batch []item) {
	conn := c.tier.Connector
	attempt := 0
	for len(batch) > 0 {
		if r == nil {
			var err error
			if r, err = c.pool.acquire(c.work, nil); err != nil {
				return
			}
		}
		start := time.Now()
		status, body, err := c.call(r, batch)
		c.m.invocation(time.Since(start), len(batch))
		healthy := err == nil && status < 500
		c.pool.release(r, healthy, backoff(conn.Backoff, conn.MaxBackoff, 1))
		last := r
		r = nil
		switch {
		case err == nil && status == http.StatusOK:
			c.m.invoked(outcomeOK)
			for _, it := range batch {
				c.done(it.rec)
			}
			return
		case err == nil && status == http.StatusRequestEntityTooLarge && len(batch) > 1:
			// Too big for the replica: split and send the halves.
			half := len(batch) / 2
			c.inflight.Add(1)
			go func(rest []item) {
				defer c.inflight.Done()
				c.invoke(nil, rest)
			}(batch[half:])
			batch = batch[:half]
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout:
			c.m.invoked(outcomeRejected)
			batch = c.rejected(batch, status, body)
		default:
			c.m.invoked(outcomeRetry)
			attempt++
			reason := fmt.Sprintf("status %d: %s", status, snippet(body))
			if err != nil {
				reason = err.Error()
			}
			level := slog.LevelWarn
			if attempt > conn.Retries {
				level = slog.LevelError // keeps retrying: never drops a record
			}
			c.log.Log(c.work, level, "invocation failed", "replica", last.url, "attempt", attempt, "records", len(batch), "err", reason)
			c.m.retried()
			select {
			case <-time.After(backoff(conn.Backoff, conn.MaxBackoff, attempt)):
			case <-c.work.Done():
				return
			}
			// Prefer another replica for the retry.
			var err error
			if r, err = c.pool.acquire(c.work, last); err != nil {
				return
			}
		}
	}
}

// rejected handles a 4xx: records the function named as bad go to the
// dead-letter topic; the rest are returned to be sent again. Without a
// list, the whole batch is bad.
func (c *Connector) rejected(batch []item, status int, body []byte) []item {
	var eb struct {
		Error    string `json:"error"`
		Rejected []struct {
			Index  int    `json:"index"`
			Reason string `json:"reason"`
		} `json:"rejected"`
	}
	reason := fmt.Sprintf("function answered %d: %s", status, snippet(body))
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		reason = fmt.Sprintf("function answered %d: %s", status, eb.Error)
	}
	if status != http.StatusBadRequest || len(eb.Rejected) == 0 {
		for _, it := range batch {
			c.deadLetter(it.rec, reason)
		}
		return nil
	}
	bad := make(map[int]string, len(eb.Rejected))
	for _, r := range eb.Rejected {
		bad[r.Index] = r.Reason
	}
	var rest []item
	for i, it := range batch {
		if why, ok := bad[i]; ok {
			c.deadLetter(it.rec, "function rejected the record: "+why)
		} else {
			rest = append(rest, it)
		}
	}
	return rest
}

// call posts batch to r as one binary request.
func (c *Connector) call(r *replica, batch []item) (int, []byte, error) {
	msgs := make([]wire.Message, len(batch))
	for i := range batch {
		msgs[i] = batch[i].msg
	}
	enc := c.p.Encoding()
	body, err := wire.AppendMessages(nil, enc, msgs)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(c.work, c.tier.Connector.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/v1/infer", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", enc.ContentType())
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, err
}

// deadLetter parks rec on the tier's DLQ with the reason, retrying the
// produce until Kafka acknowledges it (or the drain deadline passes), then
// marks it done.
func (c *Connector) deadLetter(rec *kgo.Record, reason string) {
	conn := c.tier.Connector
	dlq := DeadLetter(c.p.DLQTopic(c.tier.Name), rec, reason)
	for attempt := 1; ; attempt++ {
		err := c.cl.ProduceSync(c.work, dlq).FirstErr()
		if err == nil {
			c.m.deadLettered()
			c.log.Warn("record dead-lettered", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "reason", reason)
			c.done(rec)
			return
		}
		if c.work.Err() != nil {
			return
		}
		c.log.Error("dead-letter produce failed, retrying", "err", err, "attempt", attempt)
		dlq.Partition, dlq.Offset = 0, 0
		time.Sleep(backoff(conn.Backoff, conn.MaxBackoff, attempt))
	}
}

func (c *Connector) done(rec *kgo.Record) {
	err := c.offsets.Done(TopicPartition{rec.Topic, rec.Partition}, rec.Offset)
	if err != nil && !errors.Is(err, ErrRevoked) {
		c.log.Error("offset tracking", "err", err)
	}
}

// commitLoop commits what is committable five times a second: the less
// done-but-uncommitted work a crash leaves, the fewer duplicates.
func (c *Connector) commitLoop(ctx context.Context) {
	every(ctx, 200*time.Millisecond, func() { c.commit(ctx) })
}

// every calls f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// commit commits every partition whose done prefix advanced.
func (c *Connector) commit(ctx context.Context) {
	ready := c.offsets.Committable()
	if len(ready) == 0 {
		return
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, off := range ready {
		if offsets[tp.Topic] == nil {
			offsets[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	var commitErr error
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					commitErr = fmt.Errorf("commit %s[%d]: error code %d", t.Topic, p.Partition, p.ErrorCode)
					delete(ready, TopicPartition{t.Topic, p.Partition})
				}
			}
		}
	})
	if commitErr != nil {
		c.log.Warn("commit", "err", commitErr)
		if ctx.Err() != nil {
			return
		}
	}
	c.offsets.MarkCommitted(ready)
	c.m.committed(len(ready))
}

// onRevoked commits what is done of the revoked partitions and forgets them;
// their unfinished records will be redelivered to the new owner.
func (c *Connector) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.commit(ctx)
	var tps []TopicPartition
	for t, ps := range revoked {
		for _, p := range ps {
			tps = append(tps, TopicPartition{t, p})
		}
	}
	if n := c.offsets.Revoke(tps...); n > 0 {
		c.log.Info("partitions revoked with records in flight; they will be redelivered", "partitions", len(tps), "records", n)
	}
}

// backoff is the delay before attempt (1-based): base doubled per attempt up
// to max, with full jitter over its upper half.
func backoff(base, max time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
