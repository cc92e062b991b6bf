package records

import (
	"bytes"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderHops is the provenance of a message's hops: each tier that decided
// on it, which replica, with which model, what it decided, and the time
// the message waited in Kafka and in the replica. The connector of each
// tier writes it (HopAppender) on the record its decision becomes (a
// result or a forward): the hops the record it read carried, then its own. A pipeline
// has few tiers; the header keeps the last MaxHops.
//
// Its value is the hops in order, separated by ';', each the fields of
// Hop separated by ',':
//
//	tier,replica,model,confidence,e|f,fetched_unix_ms,kafka_wait_us,service_us
//
// with tier and replica path-escaped (url.PathEscape), so that neither
// holds ',' or ';', and model the compact form of a wire.ModelVersion:
// the sha256 prefix, then '@' and the tier's version label when it has
// one (0123456789ab or 0123456789ab@v2; a hop written before labels
// existed reads as a model without one). A hop adds about 70 bytes, and
// a label its length and 1.
const HeaderHops = "ddnn-hops"

// MaxHops bounds the hops HeaderHops keeps (the last ones).
const MaxHops = 8

// maxHopsBytes bounds a HeaderHops value a connector carries over from
// the record it read: a longer one (a device's own, or damaged) is not
// carried. A hop's fields are bounded (maxFieldBytes, maxModelBytes and
// at most 64 bytes of numbers and separators), so a header of MaxHops
// hops stays within it.
const maxHopsBytes = MaxHops * (2*maxFieldBytes + maxModelBytes + 64)

// maxModelBytes bounds a hop's model: the longest compact form of a
// wire.ModelVersion.
const maxModelBytes = wire.MaxModelSHALen + 1 + wire.MaxModelVersionLen

// maxFieldBytes bounds a hop's tier and replica as written (escaped),
const maxFieldBytes = 64

// Hop is what one tier did with a message.
type Hop struct {
	Tier string
	// Replica is the replica that answered (its address, host:port).
	Replica string
	// Model is the model version the replica ran: its sha256 prefix and
	// version label, zero when the replica did not say.
	Model wire.ModelVersion
	HopDecision
}

// HopDecision is what a tier decided on one message of a call, and when.
type HopDecision struct {
	Confidence float32
	// Exit is true when the message exited at the tier, false when it
	// was forwarded.
	Exit bool
	// FetchedAt is when the tier's connector fetched the record.
	FetchedAt time.Time
	// KafkaWait is from the record's timestamp (when it was written) to
	// FetchedAt; Service is the call to the replica, sent to answered.
	KafkaWait time.Duration
	Service   time.Duration
}

// HopAppender adds the hops of one call's records (HeaderHops): they
// share the tier, the replica and its model, escaped once, and one
// buffer, so that a record's hop costs no allocation of its own.
type HopAppender struct {
	call    []byte // "tier,replica,model,"
	buf     []byte
	records int // to size buf
}

// NewHopAppender adds the hops of a call of tier to replica, which ran
// model, for about records records. A model that does not read back
// (wire.ParseModelVersion) is written as none.
func NewHopAppender(tier, replica string, model wire.ModelVersion, records int) *HopAppender {
	m := model.String()
	if _, err := wire.ParseModelVersion(m); err != nil {
		m = ""
	}
	call := make([]byte, 0, len(tier)+len(replica)+len(m)+3)
	for _, f := range []string{tier, replica} {
		call = append(append(call, cutField(url.PathEscape(f))...), ',')
	}
	call = append(append(call, m...), ',')
	return &HopAppender{call: call, records: max(records, 1)}
}

// Add sets rec's HeaderHops to those of from (the record the hop's tier
// read), unless carry is false or from's do not fit maxHopsBytes, then
// this call's hop with d; the oldest hop is dropped past MaxHops.
func (a *HopAppender) Add(rec, from *kgo.Record, carry bool, d *HopDecision) {
	var prior []byte
	if carry && from != nil {
		for _, hd := range from.Headers {
			if hd.Key == HeaderHops {
				prior = hd.Value
			}
		}
		if len(prior) > maxHopsBytes {
			prior = nil
		}
		for bytes.Count(prior, []byte{';'}) >= MaxHops-1 {
			_, prior, _ = bytes.Cut(prior, []byte{';'})
		}
	}
	if a.buf == nil {
		// The records of a call mostly carry as many hops: the first
		// one's size tells the buffer's.
		a.buf = make([]byte, 0, a.records*(len(prior)+len(a.call)+48))
	}
	start := len(a.buf)
	if len(prior) > 0 {
		a.buf = append(append(a.buf, prior...), ';')
	}
	a.buf = append(a.buf, a.call...)
	a.buf = strconv.AppendFloat(a.buf, float64(d.Confidence), 'g', 4, 32)
	if d.Exit {
		a.buf = append(a.buf, ",e,"...)
	} else {
		a.buf = append(a.buf, ",f,"...)
	}
	a.buf = strconv.AppendInt(a.buf, d.FetchedAt.UnixMilli(), 10)
	a.buf = append(a.buf, ',')
	a.buf = strconv.AppendInt(a.buf, d.KafkaWait.Microseconds(), 10)
	a.buf = append(a.buf, ',')
	a.buf = strconv.AppendInt(a.buf, d.Service.Microseconds(), 10)
	// The value's capacity ends with it: a later record's hop, appended
	// to the buffer, never writes into it.
	v := a.buf[start:len(a.buf):len(a.buf)]
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderHops, Value: v})
}

// cutField bounds an escaped field to maxFieldBytes, not inside an escape.
func cutField(s string) string {
	if len(s) <= maxFieldBytes {
		return s
	}
	s = s[:maxFieldBytes]
	if i := strings.LastIndexByte(s, '%'); i >= len(s)-2 {
		s = s[:i]
	}
	return s
}

// ReadHops reads r's HeaderHops (the last one): nil without one, an
// error naming the hop when it does not read.
func ReadHops(r *kgo.Record) ([]Hop, error) {
	v := Header(r, HeaderHops)
	if v == "" {
		return nil, nil
	}
	var hs []Hop
	for i, s := range strings.Split(v, ";") {
		h, err := parseHop(s)
		if err != nil {
			return nil, fmt.Errorf("header %s: hop %d: %w", HeaderHops, i, err)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

func parseHop(s string) (Hop, error) {
	f := strings.Split(s, ",")
	if len(f) != 8 {
		return Hop{}, fmt.Errorf("%d fields, want 8", len(f))
	}
	var (
		h    Hop
		errs []error
	)
	unescape := func(name, v string) string {
		u, err := url.PathUnescape(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return u
	}
	integer := func(name, v string) int64 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not an integer", name, v))
		}
		return n
	}
	h.Tier = unescape("tier", f[0])
	h.Replica = unescape("replica", f[1])
	m, err := wire.ParseModelVersion(f[2])
	if err != nil {
		errs = append(errs, err)
	}
	h.Model = m
	c, err := strconv.ParseFloat(f[3], 32)
	if err != nil || math.IsNaN(c) || math.IsInf(c, 0) {
		errs = append(errs, fmt.Errorf("confidence %q is not a finite number", f[3]))
	}
	h.Confidence = float32(c)
	switch f[4] {
	case "e":
		h.Exit = true
	case "f":
	default:
		errs = append(errs, fmt.Errorf("decision %q is neither e nor f", f[4]))
	}
	h.FetchedAt = time.UnixMilli(integer("fetched", f[5])).UTC()
	h.KafkaWait = time.Duration(integer("kafka wait", f[6])) * time.Microsecond
	h.Service = time.Duration(integer("service", f[7])) * time.Microsecond
	if len(errs) > 0 {
		return Hop{}, errs[0]
	}
	return h, nil
}

// LastHopModel is the model of r's last hop (HeaderHops): for a forward,
// the model of the previous tier that wrote it, which the next tier's
// replicas must accept (httpapi.HeaderProducer). Zero without hops, or
// when the last hop names no model or does not read. It reads only that
// field, as the connector does for every forward it fetches.
func LastHopModel(r *kgo.Record) wire.ModelVersion {
	v := Header(r, HeaderHops)
	if v == "" {
		return wire.ModelVersion{}
	}
	v = v[strings.LastIndexByte(v, ';')+1:]
	// tier,replica,model,...
	_, rest, ok := strings.Cut(v, ",")
	if !ok {
		return wire.ModelVersion{}
	}
	_, rest, ok = strings.Cut(rest, ",")
	if !ok {
		return wire.ModelVersion{}
	}
	model, _, _ := strings.Cut(rest, ",")
	m, err := wire.ParseModelVersion(model)
	if err != nil {
		return wire.ModelVersion{}
	}
	return m
}
