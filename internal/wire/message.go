package wire

import (
	"errors"
	"fmt"
	"math"
	"mime"
	"strings"
	"time"
	"unicode/utf8"
)

// Hop records when a message entered a tier (per-tier timestamps).
type Hop struct {
	Tier string
	At   time.Time
}

// Message is one sample travelling through the pipeline.
type Message struct {
	ID     string
	Device string
	SentAt time.Time // zero if unknown
	Route  string    // the tier this message is addressed to; may be empty
	Hops   []Hop
	Tensor Tensor
}

// Decision is an inference function's answer for one message.
type Decision struct {
	ID         string
	Tier       string // tier that decided
	Exit       bool
	Class      int     // valid when Exit
	Label      string  // class name, when Exit
	Confidence float32 // the exit score used by the policy (e.g. top-1 probability), both when exiting and forwarding
	Forward    *Tensor // when !Exit: the tensor for the next tier
}

// The content types of the two encodings.
const (
	ContentTypeJSON   = "application/json"
	ContentTypeBinary = "application/x-ddnn-batch"
)

// Encoding selects JSON or binary.
type Encoding int

// The encodings.
const (
	JSON Encoding = iota
	Binary
)

// ContentType returns the content type of e, or "" for an unknown e.
func (e Encoding) ContentType() string {
	switch e {
	case JSON:
		return ContentTypeJSON
	case Binary:
		return ContentTypeBinary
	}
	return ""
}

// String returns "json", "binary" or "Encoding(n)".
func (e Encoding) String() string {
	switch e {
	case JSON:
		return "json"
	case Binary:
		return "binary"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// UnsupportedContentTypeError is returned by EncodingFor for a content type
// that names neither encoding, or that is missing or malformed.
type UnsupportedContentTypeError struct {
	ContentType string
	// Supported lists the content types that would be taken; nil means
	// the two encodings' (EncodingFor's).
	Supported []string
}

func (e *UnsupportedContentTypeError) Error() string {
	list := []string{ContentTypeJSON, ContentTypeBinary}
	if e.Supported != nil {
		list = e.Supported
	}
	supported := "(supported: " + strings.Join(list, ", ") + ")"
	if e.ContentType == "" {
		return "missing content type " + supported
	}
	return fmt.Sprintf("unsupported content type %q %s", e.ContentType, supported)
}

// EncodingFor returns the encoding for a content type such as an HTTP
// Content-Type header value. Parameters (e.g. charset) are ignored. Any
// other media type, a missing or a malformed one gives an
// *UnsupportedContentTypeError.
func EncodingFor(contentType string) (Encoding, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	// A malformed parameter still yields the media type; we ignore
	// parameters anyway.
	if err == nil || errors.Is(err, mime.ErrInvalidMediaParameter) {
		switch mt {
		case ContentTypeJSON:
			return JSON, nil
		case ContentTypeBinary:
			return Binary, nil
		}
	}
	return 0, &UnsupportedContentTypeError{ContentType: contentType}
}

// AppendMessages appends the encoding of a batch of messages to dst. An
// empty batch is fine. On error it returns dst unchanged; the error names
// the index of the message at fault.
//
// The encoders refuse what the decoders would: structurally invalid
// tensors (see Tensor.Validate), strings that are not valid UTF-8, and
// times outside the years 1678..2262 (Unix nanoseconds). JSON also refuses
// NaN and infinite float32 elements, which it cannot express; binary
// carries them.
func AppendMessages(dst []byte, enc Encoding, msgs []Message) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch enc {
	case JSON:
		out, err = appendMessagesJSON(dst, msgs)
	case Binary:
		out, err = appendMessagesBinary(dst, msgs)
	default:
		err = unknownEncoding(enc)
	}
	if err != nil {
		return dst, err
	}
	return out, nil
}

// DecodeMessages decodes a batch of messages. An empty batch gives no
// messages and no error. It checks tensors structurally but not that
// float32 elements are finite (see Tensor.Validate).
//
// The messages do not alias b, but to save allocations they may share
// backing arrays with each other (capacity-limited, so appending to one
// never changes another): a retained tensor may keep up to 64 KiB of its
// batch's data alive.
func DecodeMessages(enc Encoding, b []byte) ([]Message, error) {
	switch enc {
	case JSON:
		return decodeMessagesJSON(b)
	case Binary:
		return decodeMessagesBinary(b)
	}
	return nil, unknownEncoding(enc)
}

// AppendDecisions appends the encoding of a batch of decisions to dst. On
// error it returns dst unchanged; the error names the index of the
// decision at fault. Besides what AppendMessages refuses, it refuses a
// NaN or infinite Confidence and an exit decision with a Forward tensor.
func AppendDecisions(dst []byte, enc Encoding, ds []Decision) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch enc {
	case JSON:
		out, err = appendDecisionsJSON(dst, ds)
	case Binary:
		out, err = appendDecisionsBinary(dst, ds)
	default:
		err = unknownEncoding(enc)
	}
	if err != nil {
		return dst, err
	}
	return out, nil
}

// DecodeDecisions decodes a batch of decisions. An empty batch gives no
// decisions and no error. It checks forward tensors structurally but not
// that their float32 elements are finite. The decisions do not alias b.
func DecodeDecisions(enc Encoding, b []byte) ([]Decision, error) {
	switch enc {
	case JSON:
		return decodeDecisionsJSON(b)
	case Binary:
		return decodeDecisionsBinary(b)
	}
	return nil, unknownEncoding(enc)
}

// AppendMessage appends the encoding of a single message (not a batch) to
// dst, e.g. for a Kafka record value. On error it returns dst unchanged.
func AppendMessage(dst []byte, enc Encoding, m *Message) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch enc {
	case JSON:
		out, err = appendMessageJSON(dst, m)
	case Binary:
		out, err = appendMessageBinary(appendHeader(dst, kindMessage), m)
	default:
		err = unknownEncoding(enc)
	}
	if err != nil {
		return dst, fmt.Errorf("message: %w", err)
	}
	return out, nil
}

// DecodeMessage decodes a single message encoded by AppendMessage. Like
// DecodeMessages it checks the tensor structurally but not that float32
// elements are finite. The message does not alias b.
func DecodeMessage(enc Encoding, b []byte) (Message, error) {
	var (
		m   Message
		err error
	)
	switch enc {
	case JSON:
		m, err = decodeMessageJSON(b)
	case Binary:
		m, err = decodeMessageBinary(b)
	default:
		return Message{}, unknownEncoding(enc)
	}
	if err != nil {
		return Message{}, fmt.Errorf("message: %w", err)
	}
	return m, nil
}

func unknownEncoding(enc Encoding) error {
	return fmt.Errorf("unknown encoding %d", int(enc))
}

// Checks shared by both encodings, so that they accept the same values.

// timeNanos returns t as Unix nanoseconds, 0 for the zero time.
func timeNanos(t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, nil
	}
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		return 0, fmt.Errorf("time %s is outside the years 1678..2262", t.Format(time.RFC3339))
	}
	return n, nil
}

// nanosTime is the inverse of timeNanos.
func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func checkString(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("invalid UTF-8")
	}
	return nil
}

func checkMessage(m *Message) error {
	if err := checkMessageHead(m); err != nil {
		return err
	}
	if _, err := m.Tensor.checkStructure(); err != nil {
		return fmt.Errorf("tensor: %w", err)
	}
	return nil
}

// checkMessageHead checks m but its tensor.
func checkMessageHead(m *Message) error {
	if err := checkString(m.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if err := checkString(m.Device); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := checkString(m.Route); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	if _, err := timeNanos(m.SentAt); err != nil {
		return fmt.Errorf("sent_at: %w", err)
	}
	for i := range m.Hops {
		if err := checkHop(&m.Hops[i]); err != nil {
			return fmt.Errorf("hop %d: %w", i, err)
		}
	}
	return nil
}

func checkHop(h *Hop) error {
	if err := checkString(h.Tier); err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	if _, err := timeNanos(h.At); err != nil {
		return fmt.Errorf("at: %w", err)
	}
	return nil
}

func checkDecision(d *Decision) error {
	if err := checkString(d.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if err := checkString(d.Tier); err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	if err := checkString(d.Label); err != nil {
		return fmt.Errorf("label: %w", err)
	}
	if err := checkConfidence(d.Confidence); err != nil {
		return err
	}
	if d.Forward != nil {
		if d.Exit {
			return errExitForward
		}
		if _, err := d.Forward.checkStructure(); err != nil {
			return fmt.Errorf("forward: %w", err)
		}
	}
	return nil
}

var errExitForward = errors.New("exit decision has a forward tensor")

func checkConfidence(c float32) error {
	if math.IsNaN(float64(c)) || math.IsInf(float64(c), 0) {
		return fmt.Errorf("confidence is %s", float32Name(math.Float32bits(c)))
	}
	return nil
}
