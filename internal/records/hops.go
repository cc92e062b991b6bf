package records

import (
	"bytes"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderHops is the provenance of a message's hops: each tier that decided
// on it, which replica, with which model, what it decided, and the time
// the message waited in Kafka and in the replica. The connector of each
// tier writes it on the record its decision becomes (a result or a
// forward): the hops the record it read carried, then its own. A pipeline
// has few tiers; the header keeps the last MaxHops.
//
// Its value is the hops in order, separated by ';', each the fields of
// Hop separated by ',':
//
//	tier,replica,model,confidence,e|f,fetched_unix_ms,kafka_wait_us,service_us
//
// with tier and replica path-escaped (url.PathEscape), so that neither
// holds ',' or ';'. A hop adds about 70 bytes.
const HeaderHops = "ddnn-hops"

// MaxHops bounds the hops HeaderHops keeps (the last ones).
const MaxHops = 8

// maxHopsBytes bounds a HeaderHops value a connector carries over from
// the record it read: a longer one (a device's own, or damaged) is not
// carried. A hop's fields are bounded (maxFieldBytes), so a header of
// MaxHops hops stays within it.
const maxHopsBytes = MaxHops * (2*maxFieldBytes + 80)

// maxFieldBytes bounds a hop's tier and replica as written (escaped),
// and a model digest prefix.
const maxFieldBytes = 64

// Hop is what one tier did with a message.
type Hop struct {
	Tier string
	// Replica is the replica that answered (its address, host:port).
	Replica string
	// Model is the prefix of the sha256 of the model the replica ran, ""
	// when the replica did not say.
	Model      string
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

// AddHop sets rec's HeaderHops to those of from (the record the hop's
// tier read), unless carry is false or from's do not fit maxHopsBytes,
// then h; the oldest hop is dropped past MaxHops.
func AddHop(rec, from *kgo.Record, carry bool, h *Hop) {
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
	v := make([]byte, 0, len(prior)+96)
	if len(prior) > 0 {
		v = append(append(v, prior...), ';')
	}
	v = appendHop(v, h)
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderHops, Value: v})
}

func appendHop(v []byte, h *Hop) []byte {
	v = append(v, cutField(url.PathEscape(h.Tier))...)
	v = append(v, ',')
	v = append(v, cutField(url.PathEscape(h.Replica))...)
	v = append(v, ',')
	v = append(v, cutField(url.PathEscape(h.Model))...)
	v = append(v, ',')
	v = strconv.AppendFloat(v, float64(h.Confidence), 'g', 4, 32)
	if h.Exit {
		v = append(v, ",e,"...)
	} else {
		v = append(v, ",f,"...)
	}
	v = strconv.AppendInt(v, h.FetchedAt.UnixMilli(), 10)
	v = append(v, ',')
	v = strconv.AppendInt(v, h.KafkaWait.Microseconds(), 10)
	v = append(v, ',')
	return strconv.AppendInt(v, h.Service.Microseconds(), 10)
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
	h.Model = unescape("model", f[2])
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
