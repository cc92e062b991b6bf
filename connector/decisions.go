package connector

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Kinds of decision records (ddnn_connector_decision_records_total).
const (
	kindResults  = "results"  // a result on this site's results topic
	kindForwards = "forwards" // a message for the next tier on this site
	kindUplink   = "uplink"   // either, for another site, on the link's queue
)

// settled is what becomes of a record its peer accepted: rec, to be
// produced before the record is done; nothing (rec nil), it is done at
// once; or, with fault set, its dead letter with that reason.
type settled struct {
	src   *kgo.Record
	rec   *kgo.Record
	kind  string    // of rec
	exit  bool      // the decision was an exit
	sent  time.Time // for a result on the results topic: its message's send time
	fault string
}

// decisionWriter turns the decisions a tier's function answered into the
// records they become, where records.DestinationOf says from the tier's
// site: exits into results, forwards into messages for the next tier.
type decisionWriter struct {
	tier              string
	next              string // "" on the last tier
	enc               wire.Encoding
	results, forwards records.Destination
	maxBytes          int // kafka.max_record_bytes, less records.TraceHeaderBytes when tracing
	now               func() time.Time
	// carryHops says whether the hops the read records carry
	// (records.HeaderHops) are carried on: not on the first tier, whose
	// records devices may produce with any headers.
	carryHops bool
	// limitNote says why maxBytes is under kafka.max_record_bytes.
	limitNote string
}

// newDecisionWriter writes the decisions of tier, the i-th, on site: its
// Kafka bounds the records' size.
func newDecisionWriter(site *pipeline.SiteView, tier string, i int) *decisionWriter {
	p := site.Pipeline
	w := &decisionWriter{
		tier:      tier,
		enc:       p.Encoding(),
		results:   records.DestinationOf(p, site.Name, ""),
		maxBytes:  site.Kafka.MaxRecordBytes,
		now:       time.Now,
		carryHops: i > 0,
	}
	if !p.Last(i) {
		w.next = p.Tiers[i+1].Name
		w.forwards = records.DestinationOf(p, site.Name, w.next)
	}
	return w
}

// write reads answer, the decisions for batch, and returns what becomes
// of each record. An answer that does not read, or whose decisions are
// not batch's in order, is an error: the function failed the call.
func (w *decisionWriter) write(batch []item, answer reply) ([]settled, error) {
	ds, fwds, err := w.decode(answer.body)
	if err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	if len(ds) != len(batch) {
		return nil, fmt.Errorf("answer: %d decisions for %d messages", len(ds), len(batch))
	}
	for i := range ds {
		if ds[i].ID != batch[i].msg.ID {
			return nil, fmt.Errorf("answer: decision %d is for message %q, not %q", i, ds[i].ID, batch[i].msg.ID)
		}
	}
	hop := wire.Hop{Tier: w.tier, At: answer.sent.UTC()}
	hops := records.NewHopAppender(w.tier, answer.replica, answer.model, len(batch))
	exitedAt := w.now().UTC()
	out := make([]settled, len(batch))
	for i := range ds {
		var fwd wire.EncodedTensor
		if fwds != nil {
			fwd = fwds[i]
		}
		out[i] = w.record(&batch[i], &ds[i], fwd, hop, exitedAt, &answer, hops)
		out[i].exit = ds[i].Exit
	}
	return out, nil
}

// decode reads the function's answer. A binary answer's forward tensors
// stay as the answer holds them (fwds), to be spliced into the next
// tier's records as bytes; a JSON answer's are decoded (fwds nil).
func (w *decisionWriter) decode(answer []byte) (ds []wire.Decision, fwds []wire.EncodedTensor, err error) {
	if w.enc == wire.Binary {
		return wire.DecodeDecisionsSpliced(answer)
	}
	ds, err = wire.DecodeDecisions(w.enc, answer)
	return ds, nil, err
}

// record is what message it becomes after decision d, whose forward
// tensor is fwd when left encoded: a result record, a message record for
// the next tier, or a fault when the record would not encode or fit, or
// the last tier forwarded. The record carries the hop's provenance, the
// call's (hops) with d and answer's times.
func (w *decisionWriter) record(it *item, d *wire.Decision, fwd wire.EncodedTensor, hop wire.Hop, exitedAt time.Time, answer *reply, hops *records.HopAppender) settled {
	out := settled{src: it.rec}
	m := it.msg
	m.Hops = append(m.Hops[:len(m.Hops):len(m.Hops)], hop)
	var err error
	switch {
	case d.Exit:
		r := wire.NewResult(&m, d, answer.model, exitedAt)
		out.rec, err = records.Result(w.results, &r)
		out.kind, out.sent = kindOf(w.results, kindResults), m.SentAt
	case w.next == "":
		out.fault = fmt.Sprintf("function forwarded message %s from the last tier %q, where every sample must exit", m.ID, w.tier)
		return out
	case fwd != nil:
		m.Route, m.Tensor = w.next, wire.Tensor{}
		out.rec, err = records.Forward(w.forwards, &m, fwd)
		out.kind = kindOf(w.forwards, kindForwards)
	case d.Forward == nil:
		out.fault = fmt.Sprintf("function forwarded message %s without a forward tensor", m.ID)
		return out
	default:
		m.Route, m.Tensor = w.next, *d.Forward
		out.rec, err = records.Message(w.forwards, w.enc, &m)
		out.kind = kindOf(w.forwards, kindForwards)
	}
	if err != nil {
		return settled{src: it.rec, fault: "unencodable decision: " + err.Error()}
	}
	hops.Add(out.rec, it.rec, w.carryHops, &records.HopDecision{
		Confidence: d.Confidence, Exit: d.Exit,
		FetchedAt: it.fetched, KafkaWait: max(it.fetched.Sub(it.rec.Timestamp), 0), Service: answer.took,
	})
	if n := kafka.RecordSize(out.rec); n > w.maxBytes {
		return settled{src: it.rec, fault: fmt.Sprintf("decision record of %d bytes (%s) over kafka.max_record_bytes %d%s", n, out.kind, w.maxBytes, w.limitNote)}
	}
	return out
}

func kindOf(d records.Destination, local string) string {
	if d.Uplink() {
		return kindUplink
	}
	return local
}

// settle finishes the records of an accepted call: each is dead-lettered,
// done, or done once Kafka acknowledged the record it became.
func (c *Connector) settle(ss []settled) {
	for _, s := range ss {
		switch {
		case s.fault != "":
			c.deadLetter(s.src, s.fault)
		case s.rec == nil:
			c.done(s.src)
		default:
			c.inflight.Add(1)
			c.produceDecision(s, 1)
		}
	}
}

// produceDecision produces s.rec and marks s.src done once Kafka
// acknowledged it. A produce Kafka does not acknowledge is nobody's
// record's fault: it is retried with backoff (counted) until it succeeds
// or the drain deadline passes, when s.src stays uncommitted. Only a
// record the brokers refuse as too large is dead-lettered.
func (c *Connector) produceDecision(s settled, attempt int) {
	c.cl.Produce(c.work, s.rec, func(_ *kgo.Record, err error) {
		switch {
		case err == nil:
			c.m.decisionRecords.WithLabelValues(s.kind).Inc()
			if s.kind == kindResults && !s.sent.IsZero() {
				c.m.e2e.Observe(time.Since(s.sent).Seconds())
			}
			c.done(s.src)
			c.inflight.Done()
			return
		case c.work.Err() != nil:
			c.inflight.Done()
			return
		case tooLarge(err):
			c.deadLetter(s.src, fmt.Sprintf("kafka refused the decision record (%s): %v", s.kind, err))
			c.inflight.Done()
			return
		}
		c.m.decisionRetries.Inc()
		c.log.Warn("decision produce failed, retrying", "topic", s.rec.Topic, "source_partition", s.src.Partition, "source_offset", s.src.Offset, "attempt", attempt, "err", err)
		// The retry continues the trace from the failed publish (tracing
		// on); its context is bound to work either way.
		s.rec = &kgo.Record{Topic: s.rec.Topic, Key: s.rec.Key, Value: s.rec.Value, Headers: s.rec.Headers, Context: s.rec.Context}
		time.AfterFunc(c.backoff(attempt), func() {
			c.produceDecision(s, attempt+1)
		})
	})
}

// tooLarge says whether Kafka refused a record for its size.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}
