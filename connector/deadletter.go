package connector

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

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

// deadLetter parks rec on the dead-letter topic with the reason and marks it done
// once Kafka acknowledged the copy. It returns at once: the produce runs in
// the background and is retried with backoff (counted) until it succeeds
// or the drain deadline passes, when rec stays uncommitted.
func (c *Connector) deadLetter(rec *kgo.Record, reason string) {
	reason = cutReason(reason)
	dlq := DeadLetter(c.dlq, rec, reason, c.site.Kafka.MaxRecordBytes)
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
