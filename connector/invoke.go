package connector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// invocation outcomes.
const (
	outcomeOK       = "ok"
	outcomeRejected = "rejected"
	outcomeRetry    = "retry"
)

// invoke sends batch to r (already acquired, or nil to acquire one) and
// keeps at it until every record is accepted (and settled: see
// target.accepted) or dead-lettered, or the drain deadline passes.
//
// A failed call is charged to its records only when the model failed on
// them (500), the function answered 2xx with an answer that does not
// read, or the replica that failed it answered 200 to other calls since
// this batch's last try: then the records, not the tier or that replica,
// are the likely cause. A charged batch is split in halves so a bad
// record is isolated, and a record charged max_attempts times, the last
// time alone, goes to the DLQ. Uncharged failures (every replica down, a
// remote funnel unreachable) are retried without limit.
//
// A batch of a tier's canary (item.variant) goes to the canary's
// replicas; one they fail goes on to the current replicas (canary.go).
func (c *Connector) invoke(r *replica, batch []item) {
	conn := c.live.Load()
	queue := [][]item{batch} // sub-batches still to send
	variant := batch[0].variant
	pl := c.poolFor(variant)
	seen := pl.successesSoFar()
	var last *replica
	fails := 0 // consecutive failures, for the backoff
	// triedCanary is set once the current replicas' refusal of the
	// batch's producer sent it to the candidate's, until the next wait.
	triedCanary := false
	defer func() {
		if r != nil {
			pl.giveBack(r) // acquired for a batch that needed no call
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
			if r, err = pl.acquire(c.work, last, call.producer); err != nil {
				switch {
				case errors.Is(err, errNoneAccepts) && variant == variantCanary:
					// No candidate replica reads these forwards: the
					// current ones take them.
					variant, pl, seen, last = variantCurrent, c.pool, c.pool.successesSoFar(), nil
					c.canary.m.fallbacks.Add(float64(queued(queue)))
					continue
				case errors.Is(err, errNoneAccepts) && variant == variantCurrent && c.canary.serving() && !triedCanary:
					// No current replica reads these forwards: the
					// candidate's may (the previous tier's candidate
					// wrote them for this tier's).
					variant, pl, seen, last, triedCanary = variantCanary, c.canary.pool, c.canary.pool.successesSoFar(), nil, true
					continue
				case errors.Is(err, errNoneAccepts) && c.awaitAccepting(call.producer):
					triedCanary = false
					continue
				}
				return // drain deadline passed: records stay uncommitted
			}
		}
		var spans []trace.Span
		if c.tr.Enabled() {
			spans = c.startCall(batch, r.url)
		}
		start := time.Now()
		ans, err := c.call(r, call, spans)
		status, body := ans.status, ans.body
		took := time.Since(start)
		c.m.invocationSeconds.Observe(took.Seconds())
		c.m.batchSize.Observe(float64(len(batch)))
		healthy := err == nil && status < 500
		delivered := err == nil && status/100 == 2
		rel := pl.release(r, healthy, delivered, backoff(conn.Backoff, conn.MaxBackoff, 1))
		c.canary.countCall(variant, took.Seconds(), delivered)
		if pl == c.pool { // a canary's replicas down are not the tier down
			c.tierChanged(rel, r.url, err, status, body)
		}
		last, r = r, nil
		var badAnswer error
		if delivered {
			ss, aerr := c.t.accepted(call, batch, reply{body: body, sent: start, took: took, replica: last.host, model: ans.model})
			if spans != nil {
				endCall(spans, status, aerr)
				continueDecisions(c.work, ss, spans, ans.traces)
			}
			if aerr == nil {
				c.m.invocations.WithLabelValues(outcomeOK).Inc()
				c.canary.countDecisions(variant, ss)
				if variant == variantCanary {
					c.shadowScore(call, body)
				}
				c.settle(ss)
				queue, fails, seen = queue[1:], 0, rel.successes
				continue
			}
			badAnswer = aerr
		} else if spans != nil {
			endCall(spans, status, err)
		}
		if variant == variantCanary && !healthy {
			// The candidate failed: the tier's current replicas take the
			// records left.
			variant, pl, seen, last = variantCurrent, c.pool, c.pool.successesSoFar(), nil
			c.canary.m.fallbacks.Add(float64(queued(queue)))
			continue
		}
		switch {
		case err == nil && status == httpapi.StatusNotAccepted && call.producer != "":
			// The replica's model does not read forwards of this
			// producer: another replica's may. Not the records' fault.
			pl.refuse(last, call.producer)
			c.m.notAccepted.Inc()
			c.log.Debug("replica does not accept the forwards' model; trying another", "replica", last.url, "producer", call.producer, "records", len(batch))
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
		if err == nil && badAnswer != nil {
			err = badAnswer
		}
		if err != nil {
			reason = fmt.Sprintf("%s %s: %v", c.t.peer(), last.url, err)
		}
		if c.t.chargeable() && (status == http.StatusInternalServerError || badAnswer != nil || rel.lastSuccess > seen) {
			queue = append(c.charge(batch, reason), queue[1:]...)
		}
		seen = rel.successes
		fails++
		c.log.Debug("invocation failed; retrying", "records", len(batch), "fails", fails, "err", reason)
		if len(queue) > 0 && !c.sleep(pl, backoff(conn.Backoff, conn.MaxBackoff, fails)) {
			return
		}
	}
}

// awaitAccepting waits while no replica accepts forwards of producer
// (see pool.acquire): until the replica list may have changed; false
// when the drain deadline passed. The records wait uncommitted, as for a
// tier that is down; they are never dead-lettered for it.
func (c *Connector) awaitAccepting(producer string) bool {
	if _, warned := c.unaccepted.LoadOrStore(producer, true); !warned {
		c.log.Warn("forwards wait: no replica accepts their model (tiers[].accepts, or their shape); they are kept until one runs", "producer", producer)
	}
	c.m.awaitingAccept.Inc()
	defer c.m.awaitingAccept.Dec()
	t := time.NewTimer(followEvery)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.work.Done():
		return false
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
	if batch[0].attempts >= c.live.Load().MaxAttempts {
		c.m.exhausts.Inc()
		c.deadLetter(batch[0].rec, "attempts exhausted: "+reason)
		return nil
	}
	return [][]item{batch}
}

// sleep waits d, or less if pl's replicas come back up meanwhile; false
// when the drain deadline passed.
func (c *Connector) sleep(pl *pool, d time.Duration) bool {
	up := pl.cameUp()
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
		c.m.downSince.Set(float64(c.downSince.UnixNano()) / 1e9)
		why := fmt.Sprintf("status %d: %s", status, snippet(body))
		if err != nil {
			why = err.Error()
		}
		c.log.Warn(c.t.downMessage(), "replicas", c.pool.size(), "last_replica", url, "err", why)
		return
	}
	c.m.down.Set(0)
	c.m.downSince.Set(0)
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

// answer is what a replica (or a funnel) answered a call.
type answer struct {
	status int
	body   []byte
	// model is the model the replica said it ran (httpapi.HeaderModel);
	// zero when it did not say, or said what does not read.
	model wire.ModelVersion
	// traces are the contexts the peer answered for the messages' spans,
	// one per message (telemetry.HeaderTraceparents); nil without.
	traces []trace.SpanContext
}

// call posts req to r, with the trace context of each message's span
// when tracing is on.
func (c *Connector) call(r *replica, req request, spans []trace.Span) (answer, error) {
	ctx, cancel := context.WithTimeout(c.work, c.live.Load().RequestTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+req.path, bytes.NewReader(req.body))
	if err != nil {
		return answer{}, err
	}
	hr.Header.Set("Content-Type", req.contentType)
	if req.producer != "" {
		hr.Header.Set(httpapi.HeaderProducer, req.producer)
	}
	if spans != nil {
		setCallTraces(hr.Header, spans)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	a.model, _ = wire.ParseModelVersion(resp.Header.Get(httpapi.HeaderModel))
	if spans != nil {
		a.traces = telemetry.Batch(resp.Header, len(spans))
	}
	a.body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return a, err
}

// backoff is backoff with the connector's live settings.
func (c *Connector) backoff(attempt int) time.Duration {
	conn := c.live.Load()
	return backoff(conn.Backoff, conn.MaxBackoff, attempt)
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
