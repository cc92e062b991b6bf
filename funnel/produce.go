package funnel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// ProducerOptions are the producer settings a funnel's client needs on top
// of the shared ones: kafka.ProducerOptions (acks from all in-sync replicas
// with idempotence, bounded delivery time, batches the brokers accept), a
// short linger for batching and a deep buffer.
//
// A funnel answers within kafka.produce_timeout whatever the brokers do,
// so it also lets the producer give up records already sent to a broker
// that does not answer (kgo.AllowIdempotentProduceCancellation): at the
// produce timeout the request in flight is cut, its records and those
// behind it fail, and the producer starts a new idempotent epoch.
// Without it the producer keeps such records, and every later one of
// their partitions, until the broker answers, however long it hangs, and
// stores them then although their requests were answered 503. A record
// given up after it was sent may still have been stored by the broker:
// idempotence no longer guards its retry, which is at least once like
// the rest of the pipeline (docs/streaming.md, "Ids").
func ProducerOptions(k *pipeline.Kafka) []kgo.Opt {
	return append(kafka.ProducerOptions(k),
		kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(100_000),
		kgo.AllowIdempotentProduceCancellation(),
	)
}

// RecordTooLargeError is a message whose record would be larger than
// kafka.max_record_bytes; the request gets 413.
type RecordTooLargeError struct {
	Index, Bytes, Limit int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("message %d makes a record of %d bytes, over kafka.max_record_bytes %d", e.Index, e.Bytes, e.Limit)
}

func (f *Funnel) produceFailed(w http.ResponseWriter, route string, err error) {
	var tl *RecordTooLargeError
	if errors.As(err, &tl) {
		f.fail(w, route, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	f.log.Warn("produce", "route", route, "err", err)
	f.fail(w, route, http.StatusServiceUnavailable, unavailableReason(err))
}

// unavailableReason is the answer to a produce that failed for err (503,
// CoAP 5.03).
func unavailableReason(err error) string {
	if _, ok := errors.AsType[*ProduceTimeoutError](err); ok {
		return err.Error()
	}
	return "kafka did not acknowledge: " + err.Error()
}

// ingestError names the device's message in err when its produce timed
// out, so that a device that let the funnel make the id can retry with it.
func ingestError(m *wire.Message, err error) error {
	if _, ok := errors.AsType[*ProduceTimeoutError](err); ok {
		return fmt.Errorf("message %s: %w: retry with the same id", m.ID, err)
	}
	return err
}

// produceMessages writes msgs to d, each record as records.Message
// builds it; a device's message for the first tier is signed
// (records.SignDevice). spans, when tracing is on and msgs came in a
// batch, are the messages' own spans, one each, which their records'
// publish spans continue (nil: ctx's span is every record's parent).
func (f *Funnel) produceMessages(ctx context.Context, d records.Destination, msgs []wire.Message, spans []trace.Span) error {
	recs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		rec, err := records.Message(d, f.p.Encoding(), &msgs[i])
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if f.auth.Devices != nil && f.auth.Service != nil && d.Topic == f.p.InputTopic(f.first) {
			// With device authentication the first tier believes a
			// device claim only signed: this funnel authenticated the
			// device. Without it nothing checks a claim, so nothing is
			// signed. (auth.devices: token requires a service token.)
			records.SignDevice(rec, f.auth.Service, msgs[i].Device)
		}
		if n, limit := kafka.RecordSize(rec), f.recordLimit(); n > limit {
			return &RecordTooLargeError{Index: i, Bytes: n, Limit: limit}
		}
		recs[i] = rec
	}
	withSpans(recs, spans)
	return f.produce(ctx, recs)
}

// ProduceTimeoutError is a produce that Kafka did not acknowledge within
// kafka.produce_timeout; the request gets 503 with Retry-After (CoAP
// 5.03). Records already sent to a broker may still be stored and then
// processed: a device retries with the same message id (docs/streaming.md,
// "Ids").
type ProduceTimeoutError struct {
	Timeout time.Duration
	// Unfinished is how many of the request's records had no answer from
	// Kafka yet; Records how many it had.
	Unfinished, Records int
}

func (e *ProduceTimeoutError) Error() string {
	return fmt.Sprintf("kafka did not acknowledge %d of %d records within kafka.produce_timeout (%s); they may still be stored", e.Unfinished, e.Records, e.Timeout)
}

// produce hands every record to the producer at once and waits until each
// was acknowledged or failed, at most kafka.produce_timeout whatever the
// brokers do, or until ctx ends (its error is returned then). The
// records' own context ends with the produce timeout, not with ctx: a
// caller that goes away does not cut a produce request that other
// requests' records share. The producer (ProducerOptions) then fails the
// records it still holds; an outcome that comes after produce returned is
// counted in ddnn_funnel_records_total as acked_late or failed_late, and a
// record acknowledged late is logged, since its request was answered as
// not acknowledged.
func (f *Funnel) produce(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	timeout := f.site.Kafka.ProduceTimeout
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	w := &produceWait{f: f, left: len(recs), done: make(chan struct{})}
	for _, rec := range recs {
		if rec.Context != nil {
			// The record's own trace (withSpans), under the produce's
			// deadline.
			rec.Context = trace.ContextWithSpan(pctx, trace.SpanFromContext(rec.Context))
		}
		f.cl.Produce(pctx, rec, w.promise)
	}
	var err error
	select {
	case <-w.done:
	case <-pctx.Done():
		err = &ProduceTimeoutError{Timeout: timeout, Records: len(recs)}
	case <-ctx.Done():
		err = ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.left == 0 {
		// Every record finished, perhaps just as the wait ended.
		cancel()
		if errors.Is(w.first, context.DeadlineExceeded) || errors.Is(w.first, kgo.ErrRecordTimeout) {
			// The producer failed a record at the produce timeout
			// (the records' context or kgo.RecordDeliveryTimeout).
			return &ProduceTimeoutError{Timeout: timeout, Unfinished: w.failed, Records: len(recs)}
		}
		return w.first
	}
	if pto, ok := errors.AsType[*ProduceTimeoutError](err); ok {
		pto.Unfinished = w.left
	}
	// cancel is left to the timeout: it is what makes the producer fail
	// the records it holds.
	w.answered = true
	w.cancel = cancel
	return err
}

// produceWait collects the outcomes of one request's records.
type produceWait struct {
	f    *Funnel
	done chan struct{}

	mu       sync.Mutex
	left     int   // records without an outcome yet
	first    error // the first record's error
	failed   int
	answered bool // produce returned before every record had an outcome
	late     struct{ acked, failed int }
	cancel   context.CancelFunc // of the records' context, once answered
	topic    string
}

func (w *produceWait) promise(r *kgo.Record, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.left--
	if err != nil {
		w.failed++
		if w.first == nil {
			w.first = err
		}
	}
	if !w.answered {
		w.f.m.record(topicLabel(w.f.p, r.Topic), err)
		if w.left == 0 {
			close(w.done)
		}
		return
	}
	w.f.m.recordLate(topicLabel(w.f.p, r.Topic), err)
	if err != nil {
		w.late.failed++
	} else {
		w.late.acked++
		w.topic = r.Topic
	}
	if w.left > 0 {
		return
	}
	w.cancel()
	if w.late.acked > 0 {
		w.f.log.Warn("kafka acknowledged records after the funnel stopped waiting for them (their request was answered 503, or its client went away); they will be processed, and a retry makes a duplicate with the same message id",
			"topic", w.topic, "acked", w.late.acked, "failed", w.late.failed)
	}
}
