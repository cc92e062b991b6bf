// Package connector owns the kafka-to-http connector of one tier: it
// consumes the tier's input topic in a consumer group, micro-batches records
// into invocations of the tier's inference replicas (least outstanding
// requests, several in flight per replica), retries failures on another
// replica with exponential backoff and jitter, parks records the function
// rejects as bad input, or that keep failing while others succeed, on the
// tier's dead-letter topic with the reason, and commits an offset only when
// every record at or below it is done (Offsets) and only once Kafka
// confirmed the commit.
//
// When no replica answers (the tier or what it delivers to is down) the
// connector waits and retries without limit: the records stay uncommitted,
// the lag grows, fetching stops at connector.max_pending_records, and it
// resumes as soon as a replica answers again.
//
// The same machinery, pointed at another site's funnel instead of a
// tier's replicas, is the uplink of a cross-site link (Config.Link): it
// consumes the link's queue on the sending site, posts each record, batched
// by route, to the remote funnel, and parks what that funnel refuses (4xx)
// on the link's dead-letter topic. A remote funnel that fails or does not
// answer is the link down: its records are never charged, only waited for.
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
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Headers a dead-lettered record carries besides wire.HeaderReason.
const (
	HeaderSourceTopic     = "ddnn-source-topic"
	HeaderSourcePartition = "ddnn-source-partition"
	HeaderSourceOffset    = "ddnn-source-offset"
	// HeaderOriginalSize is the size of the record's value as fetched.
	HeaderOriginalSize = "ddnn-original-size"
	// HeaderTruncated says what was cut from a copy that would have been
	// larger than kafka.max_record_bytes.
	HeaderTruncated = "ddnn-truncated"
)

// Config is what a connector needs.
type Config struct {
	// Pipeline is the pipeline as the connector's site runs it: its kafka
	// section is the cluster consumed (pipeline.OnSite). An uplink takes
	// the whole pipeline and uses the sending site's Kafka.
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
	// ReplicasURL, when set, is polled for the live replica set: a JSON
	// array of {"url":…} (what `ddnn up` serves). Replicas that leave the
	// set get no new calls and finish their in-flight ones.
	ReplicasURL string
	// DrainTimeout bounds the graceful stop (default 8s).
	DrainTimeout time.Duration
	// InstanceID, when set, makes the connector a static member of its
	// group: restarted with the same id it takes its partitions back at
	// once, without a rebalance, where a new member waits for the dead
	// one's session to time out. Each connector of a tier needs its own.
	InstanceID string
	// Service, when set, is presented on every call: replicas that
	// deliver onward and the funnels' delivery zones want it.
	Service *auth.Tokens
	// Claims, when set, checks the device claims of the first tier's
	// records: a claim without a valid signature is dead-lettered
	// (auth.Claims). Set it when devices are authenticated.
	Claims *auth.Claims
	// Registerer receives the connector's and the Kafka client's metrics;
	// nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Connector runs one tier's connector, or one link's uplink.
type Connector struct {
	p    *pipeline.Pipeline // as the consuming site runs it
	t    target
	conn pipeline.Connector
	// name says whose connector this is in errors: tier "fog", uplink
	// "edge" -> "fog".
	name string
	// topic is consumed in group; what the target refuses goes to dlq.
	topic, group, dlq, clientID string
	cfg                         Config
	offsets                     *Offsets
	pool                        *pool
	m                           *Metrics
	log                         *slog.Logger
	http                        *http.Client
	cl                          *kgo.Client

	// inflight counts invocations and dead-letter produces under way.
	inflight sync.WaitGroup
	// work is canceled only when the drain deadline passes.
	work context.Context
	// room is signaled when records leave the offset window, for a poll
	// waiting at max_pending_records.
	room chan struct{}

	downMu    sync.Mutex
	downSince time.Time // when the tier went down; zero while up
}

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
	tt := &tierTarget{enc: cfg.Pipeline.Encoding()}
	if i == 0 {
		// Devices may produce raw samples straight to the first tier,
		// and claim to be any device.
		tt.raw = &wire.RawInput{DType: cfg.Pipeline.Input.DType, Shape: cfg.Pipeline.Input.Shape}
		tt.claims = cfg.Claims
	}
	p := cfg.Pipeline
	return newConnector(cfg, &Connector{
		p:        p,
		t:        tt,
		conn:     t.Connector,
		name:     fmt.Sprintf("tier %q", t.Name),
		topic:    p.InputTopic(t.Name),
		group:    p.ConsumerGroup(t.Name),
		dlq:      p.DLQTopic(t.Name),
		clientID: "connector-" + t.Name,
	}, prometheus.Labels{"tier": t.Name}), nil
}

// newConnector completes c, whose target, settings and topics are set,
// for cfg; its metrics carry labels.
func newConnector(cfg Config, c *Connector, labels prometheus.Labels) *Connector {
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 8 * time.Second
	}
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.cfg = cfg
	c.offsets = NewOffsets()
	c.pool = newPool(cfg.Replicas, c.conn.InFlightPerReplica)
	c.http = &http.Client{Transport: cfg.Service.Transport(&http.Transport{
		MaxIdleConnsPerHost: c.conn.InFlightPerReplica * 2,
		IdleConnTimeout:     90 * time.Second,
	})}
	c.room = make(chan struct{}, 1)
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exported
	}
	c.m = NewMetrics(prometheus.WrapRegistererWith(labels, reg), c.offsets.Window)
	return c
}

// item is one decoded record on its way to a replica or a remote funnel.
type item struct {
	rec *kgo.Record
	// route groups items that may share a call (see target).
	route  string
	msg    wire.Message
	result *wire.Result // an uplink's result record
	// attempts counts the failures charged to the record (see invoke).
	attempts int
}

// Run consumes until ctx ends, then stops gracefully, in order: stop
// fetching, finish what was handed out (bounded by the drain timeout),
// commit what is done, leave the group.
func (c *Connector) Run(ctx context.Context) error {
	conn := c.conn
	opts, err := kafka.ClientOptions(&c.p.Kafka, c.clientID, c.cfg.Registerer, c.log)
	if err != nil {
		return fmt.Errorf("%s: kafka client: %w", c.name, err)
	}
	opts = append(opts, kafka.GroupConsumerOptions(c.group, c.topic)...)
	opts = append(opts, kafka.ProducerOptions(&c.p.Kafka)...)
	opts = append(opts,
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onRevoked),
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
	stopDeadline := context.AfterFunc(ctx, func() {
		t := time.NewTimer(c.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	})
	defer stopDeadline()

	// Background loops run until the final commit.
	loops, stopLoops := context.WithCancel(context.Background())
	var bg errgroup.Group
	if c.cfg.ReplicasURL != "" {
		follow := func() {
			if err := c.followReplicas(loops); err != nil {
				c.log.Warn("replica list", "err", err)
			}
		}
		follow()
		bg.Go(func() error { every(loops, 500*time.Millisecond, follow); return nil })
	}
	bg.Go(func() error { every(loops, 200*time.Millisecond, func() { c.commit(loops) }); return nil })

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

// poll fetches records while the offset window has room, tracks them, and
// hands decoded ones to the batcher; undecodable ones go to the DLQ.
func (c *Connector) poll(ctx context.Context, items chan<- item) error {
	limit := c.conn.MaxPendingRecords
	for {
		if !c.waitRoom(ctx, limit) {
			return nil
		}
		fetches := c.cl.PollRecords(ctx, min(cap(items), limit-c.offsets.Window()))
		if ctx.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			// Records fetched with this poll are not handed out; they
			// were not added to the tracker, so nothing commits past them.
			return nil
		}
		var fenced error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, kerr.FencedInstanceID) {
				fenced = err
			}
			c.log.Warn("fetch", "topic", topic, "partition", p, "err", err)
		})
		if fenced != nil {
			// Records fetched with this poll are not tracked: nothing
			// commits past them.
			c.cl.AllowRebalance()
			return fmt.Errorf("%s: another connector joined with instance id %q: %w", c.name, c.cfg.InstanceID, fenced)
		}
		recs := fetches.Records()
		for _, r := range recs {
			if err := c.offsets.Add(TopicPartition{r.Topic, r.Partition}, r.Offset); err != nil {
				c.log.Error("offset tracking", "err", err)
			}
		}
		c.cl.AllowRebalance()
		c.m.fetchedRecs.Add(float64(len(recs)))
		for _, r := range recs {
			it, err := c.t.decode(r)
			if err != nil {
				c.deadLetter(r, DecodeFailure(err))
				continue
			}
			select {
			case items <- it:
			case <-ctx.Done():
				// Not handed out: pending, so nothing commits past it.
				return nil
			}
		}
	}
}

// waitRoom waits until fewer than limit records are in the offset window;
// false when ctx ended first.
func (c *Connector) waitRoom(ctx context.Context, limit int) bool {
	for c.offsets.Window() >= limit {
		select {
		case <-c.room:
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// maxReasonBytes bounds a dead letter's reason: an error can quote what
// it refused (a header of any size), and the reason must leave room in a
// copy of at most kafka.max_record_bytes (4096 at least).
const maxReasonBytes = 1024

// cutReason bounds reason to maxReasonBytes, on a UTF-8 boundary.
func cutReason(reason string) string {
	if len(reason) <= maxReasonBytes {
		return reason
	}
	return strings.ToValidUTF8(reason[:maxReasonBytes-len("…")], "") + "…"
}

// DeadLetter is rec parked on topic: its key, value and headers, plus the
// reason (cut to 1 KiB), the value's size and where it came from. A copy
// that would be larger than maxBytes (kafka.max_record_bytes) gets its
// value cut to fit, then, if that is not enough, loses the original
// headers and key, and HeaderTruncated says what was cut.
func DeadLetter(topic string, rec *kgo.Record, reason string, maxBytes int) *kgo.Record {
	reason = cutReason(reason)
	ours := []kgo.RecordHeader{
		{Key: wire.HeaderReason, Value: []byte(reason)},
		{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(len(rec.Value)))},
		{Key: HeaderSourceTopic, Value: []byte(rec.Topic)},
		{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	}
	out := &kgo.Record{
		Topic:   topic,
		Key:     rec.Key,
		Value:   rec.Value,
		Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...), ours...),
	}
	over := kafka.RecordSize(out) - maxBytes
	if over <= 0 {
		return out
	}
	// Room for the note itself, at its longest.
	const note = len(HeaderTruncated) + 96 + 10
	over += note
	var cut []string
	if over > 0 && len(out.Value) > 0 {
		keep := max(0, len(out.Value)-over)
		over -= len(out.Value) - keep
		out.Value = out.Value[:keep]
		cut = append(cut, fmt.Sprintf("value cut to %d of %d bytes", keep, len(rec.Value)))
	}
	if over > 0 && len(rec.Headers) > 0 {
		out.Headers = ours
		over = kafka.RecordSize(out) + note - maxBytes
		cut = append(cut, "original headers dropped")
	}
	if over > 0 && len(out.Key) > 0 {
		out.Key = nil
		cut = append(cut, "key dropped")
	}
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderTruncated, Value: []byte(strings.Join(cut, "; "))})
	return out
}

// recordHeaders converts a record's headers for wire.DecodeRecord.
func recordHeaders(r *kgo.Record) []wire.Header {
	hs := make([]wire.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = wire.Header{Key: h.Key, Value: h.Value}
	}
	return hs
}

// batch groups items of one route into invocations of at most MaxBatch.
// With MaxWait 0 (the default) partial batches go as soon as no more
// records are queued: batches grow only while records arrive faster than
// they are dispatched (dispatch blocks while every replica slot is busy),
// so an idle pipeline adds no batching delay. With MaxWait > 0 partial
// batches wait up to that long to fill.
func (c *Connector) batch(items <-chan item) {
	conn := c.conn
	var (
		cur   = map[string][]item{} // by route
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
			cur[it.route] = append(cur[it.route], it)
			n++
			if len(cur[it.route]) >= conn.MaxBatch {
				flush(it.route)
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

// invoke sends batch to r (already acquired, or nil to acquire one) and
// keeps at it until every record is acknowledged or dead-lettered, or the
// drain deadline passes.
//
// A failed call is charged to its records only when the model failed on
// them (500) or the replica that failed it answered 200 to other calls
// since this batch's last try: then the records, not the tier or that
// replica, are the likely cause. A charged
// batch is split in halves so a bad record is isolated, and a record
// charged max_attempts times, the last time alone, goes to the DLQ. Uncharged failures (every
// replica down, the funnel unreachable) are retried without limit.
func (c *Connector) invoke(r *replica, batch []item) {
	conn := c.conn
	queue := [][]item{batch} // sub-batches still to send
	seen := c.pool.succeeded()
	var last *replica
	fails := 0 // consecutive failures, for the backoff
	defer func() {
		if r != nil {
			c.pool.giveBack(r) // acquired for a batch that needed no call
		}
	}()
	for len(queue) > 0 {
		batch := queue[0]
		call, err := c.t.request(batch)
		if err != nil {
			if rest := c.dropUnencodable(batch); len(rest) > 0 {
				queue[0] = rest
			} else {
				queue = queue[1:]
			}
			continue
		}
		if r == nil {
			if r, err = c.pool.acquire(c.work, last); err != nil {
				return // drain deadline passed: records stay uncommitted
			}
		}
		start := time.Now()
		status, body, err := c.call(r, call)
		c.m.invokeTimeHi.Observe(time.Since(start).Seconds())
		c.m.batchSize.Observe(float64(len(batch)))
		healthy := err == nil && status < 500
		delivered := err == nil && status/100 == 2
		rel := c.pool.release(r, healthy, delivered, backoff(conn.Backoff, conn.MaxBackoff, 1))
		c.tierChanged(rel, r.url, err, status, body)
		last, r = r, nil
		switch {
		case delivered:
			c.m.invocations.WithLabelValues(outcomeOK).Inc()
			c.t.delivered(call.body, len(batch))
			for _, it := range batch {
				c.done(it.rec)
			}
			queue, fails, seen = queue[1:], 0, rel.successes
			continue
		case err == nil && len(batch) > 1 && (status == http.StatusRequestEntityTooLarge || (c.t.refusesWhole() && refused(status))):
			// Too big for the replica, or refused as a whole: send the
			// halves, so that a refused record ends up alone.
			half := len(batch) / 2
			queue = append([][]item{batch[:half], batch[half:]}, queue[1:]...)
			continue
		case err == nil && refused(status):
			c.m.invocations.WithLabelValues(outcomeRejected).Inc()
			if rest := c.rejected(batch, status, body); len(rest) > 0 {
				queue[0] = rest
			} else {
				queue = queue[1:]
			}
			continue
		}
		c.m.invocations.WithLabelValues(outcomeRetry).Inc()
		c.m.retries.Inc()
		reason := fmt.Sprintf("%s %s: status %d: %s", c.t.peer(), last.url, status, snippet(body))
		if err != nil {
			reason = fmt.Sprintf("%s %s: %v", c.t.peer(), last.url, err)
		}
		if c.t.chargeable() && (status == http.StatusInternalServerError || rel.replicaOK > seen) {
			queue = append(c.charge(batch, reason), queue[1:]...)
		}
		seen = rel.successes
		fails++
		c.log.Debug("invocation failed; retrying", "records", len(batch), "fails", fails, "err", reason)
		if len(queue) > 0 && !c.sleep(backoff(conn.Backoff, conn.MaxBackoff, fails)) {
			return
		}
	}
}

// refused says whether status refuses the records of a call: a 4xx other
// than busy, a timeout, or a refused credential (401, 403: the caller's
// setup is wrong, not the records, and they wait until it is fixed).
func refused(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusUnauthorized, http.StatusForbidden:
		return false
	}
	return status >= 400 && status < 500
}

// charge counts a failure against each record of batch. A batch of
// several comes back split in halves, so that a bad record ends up alone;
// a record alone that has been charged max_attempts times goes to the DLQ.
func (c *Connector) charge(batch []item, reason string) [][]item {
	for i := range batch {
		batch[i].attempts++
	}
	if len(batch) > 1 {
		half := len(batch) / 2
		return [][]item{batch[:half], batch[half:]}
	}
	if batch[0].attempts >= c.conn.MaxAttempts {
		c.m.exhausts.Inc()
		c.deadLetter(batch[0].rec, "attempts exhausted: "+reason)
		return nil
	}
	return [][]item{batch}
}

// sleep waits d, or less if the tier comes back up meanwhile; false when
// the drain deadline passed.
func (c *Connector) sleep(d time.Duration) bool {
	up := c.pool.cameUp()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-up:
	case <-c.work.Done():
		return false
	}
	return true
}

// tierChanged logs and counts the tier going down (every replica failing)
// and coming back.
func (c *Connector) tierChanged(rel released, url string, err error, status int, body []byte) {
	if !rel.wentDown && !rel.cameUp {
		return
	}
	c.downMu.Lock()
	defer c.downMu.Unlock()
	if rel.wentDown {
		c.downSince = time.Now()
		c.m.down.Set(1)
		why := fmt.Sprintf("status %d: %s", status, snippet(body))
		if err != nil {
			why = err.Error()
		}
		c.log.Warn(c.t.downMessage(), "replicas", c.pool.size(), "last_replica", url, "err", why)
		return
	}
	c.m.down.Set(0)
	c.log.Info(c.t.upMessage(), "replica", url, "down_for", time.Since(c.downSince).Round(time.Millisecond))
	c.downSince = time.Time{}
}

// rejected handles a 4xx: records the function named as bad go to the
// dead-letter topic; the rest are returned to be sent again. Without a
// list, or with one that names no record of the batch, the whole batch is
// bad.
func (c *Connector) rejected(batch []item, status int, body []byte) []item {
	reason := fmt.Sprintf("%s answered %d: %s", c.t.answerer(), status, snippet(body))
	eb, err := wire.DecodeErrorBody(body)
	if err == nil && eb.Error != "" {
		reason = fmt.Sprintf("%s answered %d: %s", c.t.answerer(), status, eb.Error)
	}
	bad := make(map[int]string, len(eb.Rejected))
	for _, r := range eb.Rejected {
		if r.Index >= 0 && r.Index < len(batch) {
			bad[r.Index] = r.Reason
		}
	}
	if status != http.StatusBadRequest || len(bad) == 0 {
		for _, it := range batch {
			c.deadLetter(it.rec, reason)
		}
		return nil
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

// dropUnencodable dead-letters the records of batch that cannot be encoded
// for a call and returns the others. What decodes from a raw record (an
// id from a binary key, a send time past 2262, a NaN for JSON) may not
// encode: that is the record's fault, not a replica's.
func (c *Connector) dropUnencodable(batch []item) []item {
	var rest []item
	for _, it := range batch {
		if _, err := c.t.request([]item{it}); err != nil {
			c.deadLetter(it.rec, "unencodable record: "+strings.TrimPrefix(err.Error(), "message 0: "))
			continue
		}
		rest = append(rest, it)
	}
	return rest
}

// call posts req to r.
func (c *Connector) call(r *replica, req request) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(c.work, c.conn.RequestTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+req.path, bytes.NewReader(req.body))
	if err != nil {
		return 0, nil, err
	}
	hr.Header.Set("Content-Type", req.contentType)
	resp, err := c.http.Do(hr)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, err
}

// deadLetter parks rec on the dead-letter topic with the reason and marks it done
// once Kafka acknowledged the copy. It returns at once: the produce runs in
// the background and is retried with backoff (counted) until it succeeds
// or the drain deadline passes, when rec stays uncommitted.
func (c *Connector) deadLetter(rec *kgo.Record, reason string) {
	reason = cutReason(reason)
	dlq := DeadLetter(c.dlq, rec, reason, c.p.Kafka.MaxRecordBytes)
	c.inflight.Add(1)
	c.produceDeadLetter(dlq, rec, reason, 1)
}

func (c *Connector) produceDeadLetter(dlq, rec *kgo.Record, reason string, attempt int) {
	c.cl.Produce(c.work, dlq, func(_ *kgo.Record, err error) {
		if err == nil {
			c.m.deadLetters.Inc()
			c.log.Warn("record dead-lettered", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "reason", reason)
			c.done(rec)
			c.inflight.Done()
			return
		}
		if c.work.Err() != nil {
			c.inflight.Done()
			return
		}
		c.m.dlqRetries.Inc()
		c.log.Error("dead-letter produce failed, retrying", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "attempt", attempt, "err", err)
		again := &kgo.Record{Topic: dlq.Topic, Key: dlq.Key, Value: dlq.Value, Headers: dlq.Headers}
		time.AfterFunc(backoff(c.conn.Backoff, c.conn.MaxBackoff, attempt), func() {
			c.produceDeadLetter(again, rec, reason, attempt+1)
		})
	})
}

// done marks rec finished and wakes a poll waiting for room.
func (c *Connector) done(rec *kgo.Record) {
	err := c.offsets.Done(TopicPartition{rec.Topic, rec.Partition}, rec.Offset)
	if err != nil && !errors.Is(err, ErrRevoked) {
		c.log.Error("offset tracking", "err", err)
	}
	select {
	case c.room <- struct{}{}:
	default:
	}
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

// commit commits every partition whose done prefix advanced, and marks
// committed only what Kafka confirmed; the rest is tried again next time.
// It reports whether nothing is left to commit.
func (c *Connector) commit(ctx context.Context) bool {
	ready := c.offsets.Committable()
	if len(ready) == 0 {
		return true
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, off := range ready {
		if offsets[tp.Topic] == nil {
			offsets[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	confirmed := map[TopicPartition]int64{}
	var errs []error
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				tp := TopicPartition{t.Topic, p.Partition}
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", tpString(tp), err))
					continue
				}
				if off, ok := ready[tp]; ok {
					confirmed[tp] = off
				}
			}
		}
	})
	c.offsets.MarkCommitted(confirmed)
	c.m.commits.Add(float64(len(confirmed)))
	if err := errors.Join(errs...); err != nil {
		c.m.commitFails.Inc()
		c.log.Warn("commit failed; retrying", "partitions", len(ready)-len(confirmed), "err", err)
		return false
	}
	return len(confirmed) == len(ready)
}

// commitAll commits until nothing is left to commit or ctx ends.
func (c *Connector) commitAll(ctx context.Context) {
	for !c.commit(ctx) {
		select {
		case <-ctx.Done():
			c.log.Warn("final commit failed: records done since the last commit will be processed again", "pending", c.offsets.Pending())
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
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
	// Their window is gone: wake a poll waiting for room.
	select {
	case c.room <- struct{}{}:
	default:
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
