package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The JSON form, written and read here by hand where speed matters (tensor
// data) and with encoding/json elsewhere.
//
//	{"messages":[message...]}
//	{"decisions":[decision...]}
//	message  = {"id":s,"device":s,"sent_at":time,"route":s,"hops":[{"tier":s,"at":time}...],"tensor":tensor}
//	decision = {"id":s,"tier":s,"exit":b,"class":n,"label":s,"confidence":n,"forward":tensor}
//	tensor   = {"dtype":"uint8"|"float32","shape":[n...],"data":[n...]}
//
// Empty strings, zero times and empty hops are omitted; times are RFC 3339
// with nanoseconds, in UTC.

// jsonTensor, jsonMessage and jsonDecision are what encoding/json decodes
// into. Tensor data is kept raw and parsed by parseJSONData.
type jsonTensor struct {
	DType string          `json:"dtype"`
	Shape []int           `json:"shape"`
	Data  json.RawMessage `json:"data"`
}

type jsonHop struct {
	Tier string    `json:"tier"`
	At   time.Time `json:"at"`
}

type jsonMessage struct {
	ID     string      `json:"id"`
	Device string      `json:"device"`
	SentAt time.Time   `json:"sent_at"`
	Route  string      `json:"route"`
	Hops   []jsonHop   `json:"hops"`
	Tensor *jsonTensor `json:"tensor"`
}

type jsonDecision struct {
	ID         string      `json:"id"`
	Tier       string      `json:"tier"`
	Exit       bool        `json:"exit"`
	Class      int         `json:"class"`
	Label      string      `json:"label"`
	Confidence float32     `json:"confidence"`
	Forward    *jsonTensor `json:"forward"`
}

// Encoding.

func appendMessagesJSON(dst []byte, msgs []Message) ([]byte, error) {
	size := 16
	for i := range msgs {
		// Up to 4 bytes per uint8 and about 12 per float32.
		size += 3*messageSize(&msgs[i]) + 96
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, `{"messages":[`...)
	for i := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendMessageJSON(dst, &msgs[i]); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return append(dst, "]}"...), nil
}

func appendMessageJSON(dst []byte, m *Message) ([]byte, error) {
	if err := checkMessage(m); err != nil {
		return nil, err
	}
	dst = append(dst, '{')
	if m.ID != "" {
		dst = append(dst, `"id":`...)
		dst = appendJSONString(dst, m.ID)
		dst = append(dst, ',')
	}
	if m.Device != "" {
		dst = append(dst, `"device":`...)
		dst = appendJSONString(dst, m.Device)
		dst = append(dst, ',')
	}
	if !m.SentAt.IsZero() {
		dst = append(dst, `"sent_at":`...)
		dst = appendJSONTime(dst, m.SentAt)
		dst = append(dst, ',')
	}
	if m.Route != "" {
		dst = append(dst, `"route":`...)
		dst = appendJSONString(dst, m.Route)
		dst = append(dst, ',')
	}
	if len(m.Hops) > 0 {
		dst = append(dst, `"hops":[`...)
		for i, h := range m.Hops {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"tier":`...)
			dst = appendJSONString(dst, h.Tier)
			if !h.At.IsZero() {
				dst = append(dst, `,"at":`...)
				dst = appendJSONTime(dst, h.At)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, "],"...)
	}
	dst = append(dst, `"tensor":`...)
	dst, err := appendTensorJSON(dst, &m.Tensor)
	if err != nil {
		return nil, fmt.Errorf("tensor: %w", err)
	}
	return append(dst, '}'), nil
}

func appendDecisionsJSON(dst []byte, ds []Decision) ([]byte, error) {
	size := 16
	for i := range ds {
		size += 96 + len(ds[i].ID) + len(ds[i].Tier) + len(ds[i].Label)
		if f := ds[i].Forward; f != nil {
			size += 48 + 3*len(f.Data)
		}
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, `{"decisions":[`...)
	for i := range ds {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendDecisionJSON(dst, &ds[i]); err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
	}
	return append(dst, "]}"...), nil
}

func appendDecisionJSON(dst []byte, d *Decision) ([]byte, error) {
	if err := checkDecision(d); err != nil {
		return nil, err
	}
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, d.ID)
	dst = append(dst, `,"tier":`...)
	dst = appendJSONString(dst, d.Tier)
	dst = append(dst, `,"exit":`...)
	dst = strconv.AppendBool(dst, d.Exit)
	if d.Exit || d.Class != 0 {
		dst = append(dst, `,"class":`...)
		dst = strconv.AppendInt(dst, int64(d.Class), 10)
	}
	if d.Label != "" {
		dst = append(dst, `,"label":`...)
		dst = appendJSONString(dst, d.Label)
	}
	dst = append(dst, `,"confidence":`...)
	dst = strconv.AppendFloat(dst, float64(d.Confidence), 'g', -1, 32)
	if d.Forward != nil {
		dst = append(dst, `,"forward":`...)
		var err error
		if dst, err = appendTensorJSON(dst, d.Forward); err != nil {
			return nil, fmt.Errorf("forward: %w", err)
		}
	}
	return append(dst, '}'), nil
}

// appendTensorJSON appends t, which must have passed checkStructure. It
// fails for a non-finite float32, which JSON cannot express.
func appendTensorJSON(dst []byte, t *Tensor) ([]byte, error) {
	dst = append(dst, `{"dtype":"`...)
	dst = append(dst, t.DType.String()...)
	dst = append(dst, `","shape":[`...)
	for i, d := range t.Shape {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(d), 10)
	}
	dst = append(dst, `],"data":[`...)
	switch t.DType {
	case Uint8:
		for i, b := range t.Data {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, uint8Text[b]...)
		}
	case Float32:
		data := t.Data
		for i := 0; len(data) >= 4; i++ {
			bits := binary.LittleEndian.Uint32(data)
			data = data[4:]
			if bits&0x7f800000 == 0x7f800000 {
				return nil, fmt.Errorf("element %d is %s, which JSON cannot express", i, float32Name(bits))
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendFloat(dst, float64(math.Float32frombits(bits)), 'g', -1, 32)
		}
	}
	return append(dst, "]}"...), nil
}

// uint8Text holds the decimal text of every byte value.
var uint8Text = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s, which must be valid UTF-8, as a JSON string.
// Like encoding/json it escapes U+2028 and U+2029 so that the output is
// also valid JavaScript, but it does not escape <, > and &.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Decoding.

var errEmpty = errors.New("empty input")

func newJSONDecoder(b []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec
}

// decodeJSONBatch decodes {"<field>":[item...]}, calling item to decode
// each element of the array with dec positioned at it.
func decodeJSONBatch(b []byte, field string, item func(i int, dec *json.Decoder) error) error {
	if skipSpace(b, 0) == len(b) {
		return errEmpty
	}
	dec := newJSONDecoder(b)
	if err := expectDelim(dec, '{', "a JSON object"); err != nil {
		return err
	}
	seen := false
	for dec.More() {
		tok, err := token(dec)
		if err != nil {
			return err
		}
		key, _ := tok.(string) // object keys are strings
		if key != field {
			return fmt.Errorf("unknown field %q, want %q", key, field)
		}
		if seen {
			return fmt.Errorf("duplicate field %q", key)
		}
		seen = true
		if err := expectDelim(dec, '[', "an array"); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		for i := 0; dec.More(); i++ {
			if err := item(i, dec); err != nil {
				return err
			}
		}
		if _, err := token(dec); err != nil { // ']'
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	if _, err := token(dec); err != nil { // '}'
		return err
	}
	return expectEOF(dec)
}

// token returns the next token, taking the end of input as an error: it
// is only called where more input is needed.
func token(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	return tok, err
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	tok, err := token(dec)
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("want %s, got %v", what, tokenText(tok))
	}
	return nil
}

func tokenText(tok json.Token) string {
	switch tok := tok.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(tok)
	}
	return fmt.Sprint(tok)
}

func expectEOF(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data at offset %d", dec.InputOffset())
	}
	return nil
}

func decodeMessagesJSON(b []byte) ([]Message, error) {
	var msgs []Message
	err := decodeJSONBatch(b, "messages", func(i int, dec *json.Decoder) error {
		var jm jsonMessage
		if err := dec.Decode(&jm); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		m, err := jm.message()
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if msgs == nil {
		msgs = []Message{}
	}
	return msgs, nil
}

func decodeDecisionsJSON(b []byte) ([]Decision, error) {
	var ds []Decision
	err := decodeJSONBatch(b, "decisions", func(i int, dec *json.Decoder) error {
		var jd jsonDecision
		if err := dec.Decode(&jd); err != nil {
			return fmt.Errorf("decision %d: %w", i, err)
		}
		d, err := jd.decision()
		if err != nil {
			return fmt.Errorf("decision %d: %w", i, err)
		}
		ds = append(ds, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ds == nil {
		ds = []Decision{}
	}
	return ds, nil
}

func decodeMessageJSON(b []byte) (Message, error) {
	if skipSpace(b, 0) == len(b) {
		return Message{}, errEmpty
	}
	dec := newJSONDecoder(b)
	var jm jsonMessage
	if err := dec.Decode(&jm); err != nil {
		return Message{}, err
	}
	if err := expectEOF(dec); err != nil {
		return Message{}, err
	}
	return jm.message()
}

// jsonTime converts a decoded time to UTC and checks that the binary form
// can hold it too.
func jsonTime(t time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Time{}, nil
	}
	if _, err := timeNanos(t); err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func (jm *jsonMessage) message() (Message, error) {
	m := Message{ID: jm.ID, Device: jm.Device, Route: jm.Route}
	var err error
	if m.SentAt, err = jsonTime(jm.SentAt); err != nil {
		return Message{}, fmt.Errorf("sent_at: %w", err)
	}
	if len(jm.Hops) > 0 {
		m.Hops = make([]Hop, len(jm.Hops))
		for i, h := range jm.Hops {
			m.Hops[i].Tier = h.Tier
			if m.Hops[i].At, err = jsonTime(h.At); err != nil {
				return Message{}, fmt.Errorf("hop %d: at: %w", i, err)
			}
		}
	}
	if jm.Tensor == nil {
		return Message{}, errors.New("tensor: missing")
	}
	if m.Tensor, err = jm.Tensor.tensor(); err != nil {
		return Message{}, fmt.Errorf("tensor: %w", err)
	}
	return m, nil
}

func (jd *jsonDecision) decision() (Decision, error) {
	d := Decision{
		ID:         jd.ID,
		Tier:       jd.Tier,
		Exit:       jd.Exit,
		Class:      jd.Class,
		Label:      jd.Label,
		Confidence: jd.Confidence,
	}
	if jd.Forward != nil {
		if d.Exit {
			return Decision{}, errExitForward
		}
		t, err := jd.Forward.tensor()
		if err != nil {
			return Decision{}, fmt.Errorf("forward: %w", err)
		}
		d.Forward = &t
	}
	return d, nil
}

func (jt *jsonTensor) tensor() (Tensor, error) {
	if jt.DType == "" {
		return Tensor{}, errors.New("dtype: missing")
	}
	dt, err := ParseDType(jt.DType)
	if err != nil {
		return Tensor{}, err
	}
	n, err := checkShape(jt.Shape)
	if err != nil {
		return Tensor{}, err
	}
	if jt.Data == nil {
		return Tensor{}, errors.New("data: missing")
	}
	data, err := parseJSONData(jt.Data, dt, n)
	if err != nil {
		return Tensor{}, fmt.Errorf("data: %w", err)
	}
	return Tensor{DType: dt, Shape: jt.Shape, Data: data}, nil
}

// parseJSONData parses raw, a JSON array of n numbers, into little-endian
// elements of type dt.
func parseJSONData(raw []byte, dt DType, n int) ([]byte, error) {
	// An element takes at least two bytes of raw (a digit and a separator),
	// so the input bounds the allocation whatever the shape says.
	out := make([]byte, 0, min(n, len(raw)/2)*dt.Size())
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil, fmt.Errorf("want an array of numbers, got %s", snippet(raw[i:]))
	}
	i = skipSpace(raw, i+1)
	count := 0
	if i < len(raw) && raw[i] == ']' {
		i++
	} else {
		for {
			if count == n {
				return nil, fmt.Errorf("more than %d elements", n)
			}
			end, integer, ok := scanNumber(raw, i)
			if !ok {
				return nil, fmt.Errorf("element %d: want a number, got %s", count, snippet(raw[i:]))
			}
			num := raw[i:end]
			switch dt {
			case Uint8:
				v, ok := parseUint8(num, integer)
				if !ok {
					return nil, fmt.Errorf("element %d: %s is not an integer in 0..255", count, snippet(num))
				}
				out = append(out, v)
			case Float32:
				// num is a valid number, so the only possible error is ErrRange.
				f, err := strconv.ParseFloat(string(num), 32)
				if err != nil {
					return nil, fmt.Errorf("element %d: %s is out of the float32 range", count, snippet(num))
				}
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(f)))
			}
			count++
			i = skipSpace(raw, end)
			if i < len(raw) && raw[i] == ',' {
				i = skipSpace(raw, i+1)
				continue
			}
			if i < len(raw) && raw[i] == ']' {
				i++
				break
			}
			return nil, fmt.Errorf("element %d: want ',' or ']' after it, got %s", count-1, snippet(raw[i:]))
		}
	}
	if i = skipSpace(raw, i); i != len(raw) {
		return nil, fmt.Errorf("trailing data %s", snippet(raw[i:]))
	}
	if count != n {
		return nil, fmt.Errorf("has %d elements, want %d", count, n)
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber returns the end of the JSON number at raw[i:] and whether it
// is an integer (has neither fraction nor exponent). ok is false if raw[i:]
// does not start with a JSON number.
func scanNumber(raw []byte, i int) (end int, integer, ok bool) {
	j := i
	if j < len(raw) && raw[j] == '-' {
		j++
	}
	switch {
	case j >= len(raw):
		return j, false, false
	case raw[j] == '0':
		j++
	case isDigit(raw[j]):
		for j < len(raw) && isDigit(raw[j]) {
			j++
		}
	default:
		return j, false, false
	}
	integer = true
	if j < len(raw) && raw[j] == '.' {
		integer = false
		j++
		if j >= len(raw) || !isDigit(raw[j]) {
			return j, false, false
		}
		for j < len(raw) && isDigit(raw[j]) {
			j++
		}
	}
	if j < len(raw) && (raw[j] == 'e' || raw[j] == 'E') {
		integer = false
		j++
		if j < len(raw) && (raw[j] == '+' || raw[j] == '-') {
			j++
		}
		if j >= len(raw) || !isDigit(raw[j]) {
			return j, false, false
		}
		for j < len(raw) && isDigit(raw[j]) {
			j++
		}
	}
	return j, integer, true
}

// parseUint8 parses num, a JSON number, as an integer in 0..255. "-0" is 0.
func parseUint8(num []byte, integer bool) (byte, bool) {
	if !integer {
		return 0, false
	}
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	if len(num) > 3 {
		return 0, false
	}
	v := 0
	for _, c := range num {
		v = v*10 + int(c-'0')
	}
	if v > 255 || neg && v != 0 {
		return 0, false
	}
	return byte(v), true
}

// snippet quotes the start of b for an error message.
func snippet(b []byte) string {
	if len(b) == 0 {
		return "end of input"
	}
	if len(b) > 24 {
		return strconv.Quote(string(b[:24])) + "..."
	}
	return strconv.Quote(string(b))
}
