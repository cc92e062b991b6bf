package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

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
		offsets[tp.Topic][tp.Partition] = off
	}
	confirmed := map[TopicPartition]kgo.EpochOffset{}
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

// onLost is onRevoked for partitions lost with the group membership (the
// session expired, the member was fenced): the connector is no longer a
// member (Ready) until kgo joins again.
func (c *Connector) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	c.joined.Store(false)
	c.onRevoked(ctx, cl, lost)
}

// onRevoked commits what is done of the revoked partitions and forgets them;
// their unfinished records will be redelivered to the new owner.
func (c *Connector) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.commit(ctx)
	var tps []TopicPartition
	c.assignedMu.Lock()
	for t, ps := range revoked {
		for _, p := range ps {
			tps = append(tps, TopicPartition{t, p})
			delete(c.assigned, TopicPartition{t, p})
		}
	}
	c.assignedMu.Unlock()
	if n := c.offsets.Revoke(tps...); n > 0 {
		c.log.Info("partitions revoked with records in flight; they will be redelivered", "partitions", len(tps), "records", n)
	}
	// Their window is gone: wake a poll waiting for room.
	select {
	case c.room <- struct{}{}:
	default:
	}
}
