package connector

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/records"
)

// deadLetter parks rec on the dead-letter topic with the reason and marks it done
// once Kafka acknowledged the copy. It returns at once: the produce runs in
// the background and is retried with backoff (counted) until it succeeds
// or the drain deadline passes, when rec stays uncommitted.
func (c *Connector) deadLetter(rec *kgo.Record, reason string) {
	reason = records.CutReason(reason)
	dlq := records.DeadLetter(c.dlq, rec, reason, c.recordLimit())
	dlq.Context = c.deadLetterContext(rec)
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
		again := &kgo.Record{Topic: dlq.Topic, Key: dlq.Key, Value: dlq.Value, Headers: dlq.Headers, Context: c.deadLetterContext(rec)}
		time.AfterFunc(c.backoff(attempt), func() {
			c.produceDeadLetter(again, rec, reason, attempt+1)
		})
	})
}
