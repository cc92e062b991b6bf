package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonReader is a strict JSON reader for the forms in json.go. Unlike
// encoding/json it matches field names exactly, rejects duplicate fields
// and invalid UTF-8, and parses tensor data in place. A null value counts
// as an absent field.
type jsonReader struct {
	b []byte
	i int

	recent     [8]string // recently decoded repeating strings
	nextRecent int
}

var errEmpty = errors.New("empty input")

func (r *jsonReader) skipSpace() { r.i = skipSpace(r.b, r.i) }

// consume skips space and then c if it is next.
func (r *jsonReader) consume(c byte) bool {
	r.skipSpace()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

func (r *jsonReader) consumeNull() bool {
	if len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// syntaxError reports that want was expected at the current offset.
func (r *jsonReader) syntaxError(want string) error {
	if r.i >= len(r.b) {
		return fmt.Errorf("want %s at offset %d: %w", want, r.i, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("want %s at offset %d, got %s", want, r.i, snippet(r.b[r.i:]))
}

// end checks that only space remains.
func (r *jsonReader) end() error {
	if r.skipSpace(); r.i != len(r.b) {
		return fmt.Errorf("trailing data at offset %d: %s", r.i, snippet(r.b[r.i:]))
	}
	return nil
}

// object reads an object whose field names must be among fields, calling
// field with the index of each name and r positioned at its value. It
// skips null values.
func (r *jsonReader) object(fields []string, field func(k int) error) error {
	if !r.consume('{') {
		return r.syntaxError("'{'")
	}
	if r.consume('}') {
		return nil
	}
	var seen uint32
	for {
		if r.skipSpace(); r.i >= len(r.b) || r.b[r.i] != '"' {
			return r.syntaxError("a field name")
		}
		key, err := r.stringBytes()
		if err != nil {
			return err
		}
		k := -1
		for j, f := range fields {
			if string(key) == f {
				k = j
				break
			}
		}
		if k < 0 {
			return fmt.Errorf("unknown field %q (want %s)", key, strings.Join(fields, ", "))
		}
		if seen&(1<<k) != 0 {
			return fmt.Errorf("duplicate field %q", key)
		}
		seen |= 1 << k
		if !r.consume(':') {
			return r.syntaxError("':'")
		}
		if r.skipSpace(); !r.consumeNull() {
			if err := field(k); err != nil {
				return err
			}
		}
		if r.consume(',') {
			continue
		}
		if r.consume('}') {
			return nil
		}
		return r.syntaxError("',' or '}'")
	}
}

// array reads an array, calling elem with the index of each element and r
// positioned at it.
func (r *jsonReader) array(elem func(i int) error) error {
	if !r.consume('[') {
		return r.syntaxError("'['")
	}
	if r.consume(']') {
		return nil
	}
	for i := 0; ; i++ {
		r.skipSpace()
		if err := elem(i); err != nil {
			return err
		}
		if r.consume(',') {
			continue
		}
		if r.consume(']') {
			return nil
		}
		return r.syntaxError("',' or ']'")
	}
}

// string reads a string. If repeats, the string is likely to repeat in
// the batch, and an equal recent one is returned instead of a copy.
func (r *jsonReader) string(repeats bool) (string, error) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", r.syntaxError("a string")
	}
	b, err := r.stringBytes()
	if err != nil || !repeats || len(b) == 0 {
		return string(b), err
	}
	for _, s := range r.recent {
		if s == string(b) {
			return s, nil
		}
	}
	s := string(b)
	r.recent[r.nextRecent] = s
	r.nextRecent = (r.nextRecent + 1) % len(r.recent)
	return s, nil
}

// stringBytes reads the string at r.b[r.i] == '"'. The result aliases r.b
// unless the string has escapes.
func (r *jsonReader) stringBytes() ([]byte, error) {
	start := r.i + 1
	i := start
	for i < len(r.b) {
		c := r.b[i]
		if c == '"' {
			r.i = i + 1
			return r.b[start:i], nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		ch, size := utf8.DecodeRune(r.b[i:])
		if ch == utf8.RuneError && size == 1 {
			return nil, fmt.Errorf("invalid UTF-8 in string at offset %d", i)
		}
		i += size
	}
	buf := make([]byte, i-start, i-start+16)
	copy(buf, r.b[start:i])
	for i < len(r.b) {
		c := r.b[i]
		switch {
		case c == '"':
			r.i = i + 1
			return buf, nil
		case c < 0x20:
			return nil, fmt.Errorf("control character %#02x in string at offset %d", c, i)
		case c == '\\':
			n, err := r.appendEscape(&buf, i)
			if err != nil {
				return nil, err
			}
			i += n
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			ch, size := utf8.DecodeRune(r.b[i:])
			if ch == utf8.RuneError && size == 1 {
				return nil, fmt.Errorf("invalid UTF-8 in string at offset %d", i)
			}
			buf = append(buf, r.b[i:i+size]...)
			i += size
		}
	}
	r.i = i
	return nil, r.syntaxError("'\"'")
}

// appendEscape appends the character of the escape at r.b[i] == '\\' and
// returns the escape's length. Like encoding/json, it turns an unpaired
// UTF-16 surrogate into U+FFFD.
func (r *jsonReader) appendEscape(buf *[]byte, i int) (int, error) {
	if i+1 >= len(r.b) {
		return 0, fmt.Errorf("escape at offset %d: %w", i, io.ErrUnexpectedEOF)
	}
	switch c := r.b[i+1]; c {
	case '"', '\\', '/':
		*buf = append(*buf, c)
	case 'b':
		*buf = append(*buf, '\b')
	case 'f':
		*buf = append(*buf, '\f')
	case 'n':
		*buf = append(*buf, '\n')
	case 'r':
		*buf = append(*buf, '\r')
	case 't':
		*buf = append(*buf, '\t')
	case 'u':
		ch, ok := hex4(r.b[i+2:])
		if !ok {
			return 0, fmt.Errorf("invalid \\u escape at offset %d", i)
		}
		n := 6
		if utf16.IsSurrogate(ch) {
			ch2, ok := rune(0), false
			if len(r.b) >= i+12 && r.b[i+6] == '\\' && r.b[i+7] == 'u' {
				ch2, ok = hex4(r.b[i+8:])
			}
			if pair := utf16.DecodeRune(ch, ch2); ok && pair != utf8.RuneError {
				ch, n = pair, 12
			} else {
				ch = utf8.RuneError
			}
		}
		*buf = utf8.AppendRune(*buf, ch)
		return n, nil
	default:
		return 0, fmt.Errorf("invalid escape %q at offset %d", r.b[i:i+2], i)
	}
	return 2, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var v rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | rune(c)
	}
	return v, true
}

// number reads a JSON number and reports whether it is an integer.
func (r *jsonReader) number() (num []byte, integer bool, err error) {
	end, integer, ok := scanNumber(r.b, r.i)
	if !ok {
		return nil, false, r.syntaxError("a number")
	}
	num = r.b[r.i:end]
	r.i = end
	return num, integer, nil
}

func (r *jsonReader) int() (int, error) {
	num, integer, err := r.number()
	if err != nil {
		return 0, err
	}
	if !integer {
		return 0, fmt.Errorf("%s is not an integer", snippet(num))
	}
	v, err := strconv.Atoi(string(num))
	if err != nil {
		return 0, fmt.Errorf("%s is out of range", snippet(num))
	}
	return v, nil
}

func (r *jsonReader) float32() (float32, error) {
	num, _, err := r.number()
	if err != nil {
		return 0, err
	}
	// num is a valid number, so the only possible error is ErrRange.
	f, err := strconv.ParseFloat(string(num), 32)
	if err != nil {
		return 0, fmt.Errorf("%s is out of the float32 range", snippet(num))
	}
	return float32(f), nil
}

func (r *jsonReader) bool() (bool, error) {
	for _, lit := range []string{"false", "true"} {
		if len(r.b)-r.i >= len(lit) && string(r.b[r.i:r.i+len(lit)]) == lit {
			r.i += len(lit)
			return lit == "true", nil
		}
	}
	return false, r.syntaxError("true or false")
}

// time reads an RFC 3339 time, converts it to UTC and checks that the
// binary form can hold it too.
func (r *jsonReader) time() (time.Time, error) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return time.Time{}, r.syntaxError("an RFC 3339 time string")
	}
	s, err := r.stringBytes()
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if err := t.UnmarshalText(s); err != nil {
		return time.Time{}, err
	}
	if t.IsZero() {
		return time.Time{}, nil
	}
	if _, err := timeNanos(t); err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func decodeMessagesJSON(b []byte) ([]Message, error) {
	r := jsonReader{b: b}
	if r.skipSpace(); r.i == len(b) {
		return nil, errEmpty
	}
	msgs := []Message{}
	err := r.object([]string{"messages"}, func(int) error {
		return r.array(func(i int) error {
			m, err := r.message()
			if err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
			msgs = append(msgs, m)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return msgs, nil
}

func decodeDecisionsJSON(b []byte) ([]Decision, error) {
	r := jsonReader{b: b}
	if r.skipSpace(); r.i == len(b) {
		return nil, errEmpty
	}
	ds := []Decision{}
	err := r.object([]string{"decisions"}, func(int) error {
		return r.array(func(i int) error {
			d, err := r.decision()
			if err != nil {
				return fmt.Errorf("decision %d: %w", i, err)
			}
			ds = append(ds, d)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return ds, nil
}

func decodeMessageJSON(b []byte) (Message, error) {
	r := jsonReader{b: b}
	if r.skipSpace(); r.i == len(b) {
		return Message{}, errEmpty
	}
	m, err := r.message()
	if err != nil {
		return Message{}, err
	}
	if err := r.end(); err != nil {
		return Message{}, err
	}
	return m, nil
}

var messageFields = []string{"id", "device", "sent_at", "route", "hops", "tensor"}

func (r *jsonReader) message() (Message, error) {
	var (
		m         Message
		hasTensor bool
	)
	err := r.object(messageFields, func(k int) error {
		var err error
		switch k {
		case 0:
			m.ID, err = r.string(false)
		case 1:
			m.Device, err = r.string(true)
		case 2:
			m.SentAt, err = r.time()
		case 3:
			m.Route, err = r.string(true)
		case 4:
			return r.array(func(i int) error {
				h, err := r.hop()
				if err != nil {
					return fmt.Errorf("hop %d: %w", i, err)
				}
				m.Hops = append(m.Hops, h)
				return nil
			})
		case 5:
			m.Tensor, err = r.tensor()
			hasTensor = true
		}
		if err != nil {
			return fmt.Errorf("%s: %w", messageFields[k], err)
		}
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	if !hasTensor {
		return Message{}, errors.New("tensor: missing")
	}
	return m, nil
}

var hopFields = []string{"tier", "at"}

func (r *jsonReader) hop() (Hop, error) {
	var h Hop
	err := r.object(hopFields, func(k int) error {
		var err error
		switch k {
		case 0:
			h.Tier, err = r.string(true)
		case 1:
			h.At, err = r.time()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", hopFields[k], err)
		}
		return nil
	})
	return h, err
}

var decisionFields = []string{"id", "tier", "exit", "class", "label", "confidence", "forward"}

func (r *jsonReader) decision() (Decision, error) {
	var d Decision
	err := r.object(decisionFields, func(k int) error {
		var err error
		switch k {
		case 0:
			d.ID, err = r.string(false)
		case 1:
			d.Tier, err = r.string(true)
		case 2:
			d.Exit, err = r.bool()
		case 3:
			d.Class, err = r.int()
		case 4:
			d.Label, err = r.string(true)
		case 5:
			d.Confidence, err = r.float32()
		case 6:
			var t Tensor
			if t, err = r.tensor(); err == nil {
				d.Forward = &t
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", decisionFields[k], err)
		}
		return nil
	})
	if err != nil {
		return Decision{}, err
	}
	if d.Exit && d.Forward != nil {
		return Decision{}, errExitForward
	}
	return d, nil
}

var tensorFields = []string{"dtype", "shape", "data"}

func (r *jsonReader) tensor() (Tensor, error) {
	var (
		t       Tensor
		n       int
		hasData bool
		later   []byte // data that came before dtype or shape
	)
	err := r.object(tensorFields, func(k int) error {
		var err error
		switch k {
		case 0:
			var s string
			if s, err = r.string(true); err == nil {
				t.DType, err = ParseDType(s)
			}
		case 1:
			if t.Shape, err = r.shape(); err == nil {
				n, err = checkShape(t.Shape)
			}
		case 2:
			hasData = true
			if t.DType != DTypeInvalid && t.Shape != nil {
				t.Data, err = r.data(t.DType, n)
			} else {
				start := r.i
				if _, err = r.data(DTypeInvalid, MaxElements); err == nil {
					later = r.b[start:r.i]
				}
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tensorFields[k], err)
		}
		return nil
	})
	switch {
	case err != nil:
		return Tensor{}, err
	case t.DType == DTypeInvalid:
		return Tensor{}, errors.New("dtype: missing")
	case t.Shape == nil:
		return Tensor{}, errors.New("shape: missing")
	case !hasData:
		return Tensor{}, errors.New("data: missing")
	case later != nil:
		lr := jsonReader{b: later}
		if t.Data, err = lr.data(t.DType, n); err != nil {
			return Tensor{}, fmt.Errorf("data: %w", err)
		}
	}
	return t, nil
}

// shape reads an array of at most MaxRank ints. It returns a non-nil
// slice, empty for [].
func (r *jsonReader) shape() ([]int, error) {
	shape := make([]int, 0, 4)
	err := r.array(func(i int) error {
		if i == MaxRank {
			return fmt.Errorf("more than %d dims", MaxRank)
		}
		d, err := r.int()
		if err != nil {
			return fmt.Errorf("dim %d: %w", i, err)
		}
		shape = append(shape, d)
		return nil
	})
	return shape, err
}

// data reads an array of n numbers as little-endian elements of type dt.
// For DTypeInvalid it only checks that there are at most n numbers.
func (r *jsonReader) data(dt DType, n int) ([]byte, error) {
	if !r.consume('[') {
		return nil, r.syntaxError("an array of numbers")
	}
	// An element takes at least two bytes of input (a digit and a
	// separator), so the input bounds the allocation whatever n is.
	var out []byte
	if dt != DTypeInvalid {
		out = make([]byte, 0, min(n, (len(r.b)-r.i)/2+1)*dt.Size())
	}
	count := 0
	if r.consume(']') {
		return checkCount(out, count, n)
	}
	for {
		if count == n {
			return nil, fmt.Errorf("more than %d elements", n)
		}
		r.skipSpace()
		start := r.i
		if dt == Uint8 {
			if v, end, ok := fastUint8(r.b, start); ok {
				out = append(out, v)
				count++
				if end < len(r.b) && r.b[end] == ',' {
					r.i = end + 1
					continue
				}
				r.i = end
				if r.consume(',') {
					continue
				}
				if r.consume(']') {
					return checkCount(out, count, n)
				}
				return nil, fmt.Errorf("element %d: %w", count-1, r.syntaxError("',' or ']' after it"))
			}
		}
		end, integer, ok := scanNumber(r.b, start)
		if !ok {
			return nil, fmt.Errorf("element %d: %w", count, r.syntaxError("a number"))
		}
		num := r.b[start:end]
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
		r.i = end
		if r.consume(',') {
			continue
		}
		if r.consume(']') {
			return checkCount(out, count, n)
		}
		return nil, fmt.Errorf("element %d: %w", count-1, r.syntaxError("',' or ']' after it"))
	}
}

// fastUint8 parses the common form of a uint8 element at b[i:], 1 to 3
// digits without a leading zero and not followed by a fraction, an
// exponent or another digit. If ok is false, the general path must decide.
func fastUint8(b []byte, i int) (v byte, end int, ok bool) {
	if i >= len(b) || b[i]-'0' > 9 {
		return 0, i, false
	}
	n := int(b[i] - '0')
	i++
	if n != 0 {
		for k := 0; k < 2 && i < len(b) && b[i]-'0' <= 9; k++ {
			n = n*10 + int(b[i]-'0')
			i++
		}
	}
	if i < len(b) {
		if c := b[i]; c-'0' <= 9 || c == '.' || c == 'e' || c == 'E' {
			return 0, i, false
		}
	}
	if n > 255 {
		return 0, i, false
	}
	return byte(n), i, true
}

func checkCount(out []byte, count, n int) ([]byte, error) {
	if out != nil && count != n {
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
