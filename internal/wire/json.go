package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The JSON form, written here by hand, for speed (a codec spends most of
// its time on tensor data), and read in jsondecode.go with a maintained
// codec.
//
//	{"messages":[message...]}
//	{"decisions":[decision...]}
//	message  = {"id":s,"device":s,"sent_at":time,"route":s,"hops":[{"tier":s,"at":time}...],"tensor":tensor}
//	decision = {"id":s,"tier":s,"exit":b,"class":n,"label":s,"confidence":n,"forward":tensor}
//	tensor   = {"dtype":"uint8"|"float32","shape":[n...],"data":[n...]}
//
// The encoder omits empty strings, zero times and empty hops, a decision's
// class unless it exits or the class is not 0, and an empty label. Times
// are RFC 3339 with nanoseconds, in UTC. uint8 data are integers 0..255;
// float32 data are written in the shortest form that reads back exactly.
//
// The decoder accepts fields in any order and whitespace anywhere; a null
// value is an absent field. Field names must match exactly, and unknown or
// duplicate fields, invalid UTF-8 (also an unpaired surrogate in a \u
// escape) and trailing data are errors. Only tensor is required in a
// message, and dtype, shape and data in a tensor.

func appendMessagesJSON(dst []byte, msgs []Message) ([]byte, error) {
	size := 16
	for i := range msgs {
		// Up to 4 bytes per uint8, and at most 16 per float32.
		size += 4*messageSize(&msgs[i]) + 64
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
	dst = appendOriginJSON(append(dst, '{'), m)
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

// appendOriginJSON appends the fields of m a device gives, id, device and
// sent_at, each followed by a comma, leaving out empty ones.
func appendOriginJSON(dst []byte, m *Message) []byte {
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
	return dst
}

func appendDecisionsJSON(dst []byte, ds []Decision) ([]byte, error) {
	size := 16
	for i := range ds {
		size += 96 + len(ds[i].ID) + len(ds[i].Tier) + len(ds[i].Label)
		if f := ds[i].Forward; f != nil {
			size += 48 + 4*len(f.Data)
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
	dst = append(dst, `],"data":`...)
	dst, err := appendDataJSON(dst, t)
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// appendDataJSON appends t's elements as a JSON array. It fails for a
// non-finite float32, which JSON cannot express.
func appendDataJSON(dst []byte, t *Tensor) ([]byte, error) {
	dst = append(dst, '[')
	switch t.DType {
	case Uint8:
		dst = appendUint8sJSON(dst, t.Data)
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
	return append(dst, ']'), nil
}

// uint8Comma holds the decimal text of every byte value followed by a
// comma, packed little-endian into a uint32 so that one store writes it.
var uint8Comma = func() (t [256]uint32) {
	for i := range t {
		s := strconv.Itoa(i) + ","
		var v uint32
		for j := len(s) - 1; j >= 0; j-- {
			v = v<<8 | uint32(s[j])
		}
		t[i] = v
	}
	return t
}()

// appendUint8sJSON appends data as comma-separated decimal numbers.
func appendUint8sJSON(dst []byte, data []byte) []byte {
	if len(data) == 0 {
		return dst
	}
	n := len(dst)
	dst = slices.Grow(dst, 4*len(data))[:n+4*len(data)]
	for _, b := range data {
		v := uint8Comma[b]
		binary.LittleEndian.PutUint32(dst[n:], v)
		// The text is 2, 3 or 4 bytes long: the comma is its last byte.
		switch {
		case b < 10:
			n += 2
		case b < 100:
			n += 3
		default:
			n += 4
		}
	}
	return dst[:n-1] // drop the last comma
}

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
