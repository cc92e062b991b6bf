package connector

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// maxShadowCalls bounds the shadow calls in flight: a sampled canary
// batch that finds them all busy is dropped (counted), never waited for.
const maxShadowCalls = 2

// shadow sends a sample of a canary's batches to the current replicas
// too, off the path of the records: the current model's answers become
// no records, they are only compared with the candidate's (agreement).
type shadow struct {
	// batches counts the canary batches answered, for the sampling.
	batches atomic.Uint64
	// inFlight counts the shadow calls under way (at most
	// maxShadowCalls).
	inFlight atomic.Int32
}

// sampled says whether the n-th canary batch (1-based) is shadowed at
// ratio: every time n·ratio passes a whole number, so ratio of the
// batches, evenly spread (0.1: the 10th, 20th, …; 1: every one).
func sampled(n uint64, ratio float64) bool {
	return math.Floor(float64(n)*ratio) > math.Floor(float64(n-1)*ratio)
}

// agreement compares the candidate's decisions with the current model's
// for the same messages, in order: a message agrees when both exit or
// both forward, and when both exit, with the same class. An error says
// the answers are not for the same messages.
func agreement(canary, current []wire.Decision) (agreed, disagreed int, err error) {
	if len(canary) != len(current) {
		return 0, 0, fmt.Errorf("%d decisions of the canary, %d of the current model", len(canary), len(current))
	}
	for i := range canary {
		a, b := &canary[i], &current[i]
		if a.ID != b.ID {
			return 0, 0, fmt.Errorf("decision %d is for message %q from the canary, %q from the current model", i, a.ID, b.ID)
		}
		if a.Exit == b.Exit && (!a.Exit || a.Class == b.Class) {
			agreed++
		} else {
			disagreed++
		}
	}
	return agreed, disagreed, nil
}

// shadowScore sends call, a canary batch the candidate answered with
// answer, to a current replica too when the batch is sampled, in the
// background, and counts how the two models' decisions compare. It
// never waits: a sampled batch is dropped when the shadow calls are at
// their bound.
func (c *Connector) shadowScore(call request, answer []byte) {
	k := c.canary
	s := k.settings.Load()
	if s == nil || !sampled(k.shadow.batches.Add(1), s.ShadowRatio) {
		return
	}
	if k.shadow.inFlight.Add(1) > maxShadowCalls {
		k.shadow.inFlight.Add(-1)
		k.m.shadowBatches.WithLabelValues("dropped").Inc()
		return
	}
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		defer k.shadow.inFlight.Add(-1)
		k.m.shadowBatches.WithLabelValues(c.shadowCall(call, answer)).Inc()
	}()
}

// shadowCall calls a current replica with call, if one has a free slot
// within the request timeout, and compares its decisions with answer's;
// it returns the outcome.
func (c *Connector) shadowCall(call request, answer []byte) string {
	tt := c.t.(*tierTarget)
	want, _, err := tt.decisions.decode(answer)
	if err != nil {
		return "failed"
	}
	conn := c.live.Load()
	ctx, cancel := context.WithTimeout(c.work, conn.RequestTimeout)
	r, err := c.pool.acquire(ctx, nil, call.producer)
	cancel()
	if err != nil {
		return "dropped"
	}
	ans, err := c.call(r, call, nil)
	healthy := err == nil && ans.status < 500
	delivered := err == nil && ans.status/100 == 2
	rel := c.pool.release(r, healthy, delivered, backoff(conn.Backoff, conn.MaxBackoff, 1))
	c.tierChanged(rel, r.url, err, ans.status, ans.body)
	if !delivered {
		c.log.Debug("canary shadow call failed", "replica", r.url, "status", ans.status, "err", err)
		return "failed"
	}
	got, _, err := tt.decisions.decode(ans.body)
	if err != nil {
		return "failed"
	}
	agreed, disagreed, err := agreement(want, got)
	if err != nil {
		c.log.Debug("canary shadow answer", "replica", r.url, "err", err)
		return "failed"
	}
	c.canary.m.shadowMessages.WithLabelValues("agreed").Add(float64(agreed))
	c.canary.m.shadowMessages.WithLabelValues("disagreed").Add(float64(disagreed))
	return "compared"
}
