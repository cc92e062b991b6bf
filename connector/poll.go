package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/records"
)

// poll fetches records while the offset window has room, tracks them, and
// hands decoded ones to the batcher; undecodable ones go to the DLQ.
func (c *Connector) poll(ctx context.Context, items chan<- item) error {
	for {
		n, ok := c.waitRoom(ctx, cap(items))
		if !ok {
			return nil
		}
		fetches := c.pollRecords(ctx, n)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			// Records fetched with this poll are not handed out; they
			// were not added to the tracker, so nothing commits past them.
			return nil
		}
		var fenced error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return // pollRecords stopped waiting: room for a paused partition
			}
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
			if err := c.offsets.Add(TopicPartition{r.Topic, r.Partition}, r.Offset, r.LeaderEpoch); err != nil {
				c.log.Error("offset tracking", "err", err)
			}
		}
		c.cl.AllowRebalance()
		c.m.fetchedRecs.Add(float64(len(recs)))
		fetched := time.Now()
		for _, r := range recs {
			it, err := c.t.decode(r)
			if err != nil {
				c.deadLetter(r, records.DecodeFailure(err))
				continue
			}
			it.fetched = fetched
			it.variant = c.variantOf(it.msg.ID)
			select {
			case items <- it:
			case <-ctx.Done():
				// Not handed out: pending, so nothing commits past it.
				return nil
			}
		}
	}
}

// pollRecords polls at most n records. While some partitions are paused
// it stops waiting for records at the next room signal, so that a paused
// partition whose records finished resumes even when the others have
// nothing to fetch.
func (c *Connector) pollRecords(ctx context.Context, n int) kgo.Fetches {
	if len(c.paused) == 0 {
		return c.cl.PollRecords(ctx, n)
	}
	pctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-c.room:
			cancel()
		case <-pctx.Done():
		}
	}()
	fetches := c.cl.PollRecords(pctx, n)
	cancel()
	// A room signal the watcher took came before waitRoom looks again.
	<-watched
	return fetches
}

// waitRoom pauses the partitions whose window reached their share of
// max_pending_records and resumes the others, then waits until the next
// poll may take a record. It returns how many the poll may take (at most
// most): no more than the total window has room for, nor than the fullest
// partition still fetched has room for in its share, so neither bound is
// ever passed. It returns false when ctx ended first.
func (c *Connector) waitRoom(ctx context.Context, most int) (int, bool) {
	limit := c.conn.MaxPendingRecords
	for {
		share := c.share()
		windows := c.offsets.Windows()
		total, fullest := 0, 0
		pause, resume := map[string][]int32{}, map[string][]int32{}
		for tp, w := range windows {
			total += w
			switch {
			case w >= share && !c.paused[tp]:
				c.paused[tp] = true
				pause[tp.Topic] = append(pause[tp.Topic], tp.Partition)
			case w < share:
				fullest = max(fullest, w)
			}
		}
		for tp := range c.paused {
			if windows[tp] < share {
				delete(c.paused, tp)
				resume[tp.Topic] = append(resume[tp.Topic], tp.Partition)
			}
		}
		if len(pause) > 0 {
			c.cl.PauseFetchPartitions(pause)
		}
		if len(resume) > 0 {
			c.cl.ResumeFetchPartitions(resume)
		}
		if n := min(most, limit-total, share-fullest); n > 0 && !c.allPaused() {
			return n, true
		}
		select {
		case <-c.room:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// share is how many records one partition may hold in the offset window:
// ⌈max_pending_records / assigned partitions⌉. Before the group assigned
// any it is 1: the poll that joins the group takes one record, whatever
// the assignment it brings turns out to be.
func (c *Connector) share() int {
	c.assignedMu.Lock()
	n := len(c.assigned)
	c.assignedMu.Unlock()
	if n == 0 {
		return 1
	}
	return (c.conn.MaxPendingRecords + n - 1) / n
}

// allPaused reports whether every assigned partition is paused: a poll
// would find nothing to fetch.
func (c *Connector) allPaused() bool {
	c.assignedMu.Lock()
	defer c.assignedMu.Unlock()
	if len(c.assigned) == 0 {
		return false // not assigned yet: the poll joins the group
	}
	for tp := range c.assigned {
		if !c.paused[tp] {
			return false
		}
	}
	return true
}

// onAssigned adds the assigned partitions to the ones the offset window
// is shared among, and wakes a poll waiting for room.
// kgo calls it after every join, also with nothing assigned: the
// connector is a member of its group from then on (Ready).
func (c *Connector) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.joined.Store(true)
	c.assignedMu.Lock()
	for t, ps := range assigned {
		for _, p := range ps {
			c.assigned[TopicPartition{t, p}] = true
		}
	}
	c.assignedMu.Unlock()
	select {
	case c.room <- struct{}{}:
	default:
	}
}
