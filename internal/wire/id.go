package wire

import (
	"fmt"
	"strconv"
)

// Message and device ids that enter the pipeline from devices (funnel
// headers, JSON fields and CoAP queries; the envelope, headers and key of
// a record a device produced) are at most MaxIDBytes bytes of IDChars.
// The rule keeps ids printable, safe as Kafka keys, header values, log
// fields and URL query values, and bounded in every topic they travel
// through.
const (
	MaxIDBytes = 128
	// IDChars describes the characters an id may hold.
	IDChars = "ASCII letters, digits and -_.:@/+="
)

// IDRule is the rule CheckID applies, for error messages and docs.
const IDRule = "1 to 128 bytes of " + IDChars

// idByte reports whether c may appear in an id.
var idByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.:@/+=" {
		t[c] = true
	}
	return t
}()

// IDError is an id that breaks the rule: where it came from (a header, a
// JSON field, a query) and what is wrong with it. It never holds the id
// itself, which may be large or unprintable.
type IDError struct {
	Field  string // e.g. "X-Message-Id", `JSON "device"`, "?id=", "ddnn-id header"
	Reason string
}

func (e *IDError) Error() string {
	return fmt.Sprintf("%s: %s (an id is %s)", e.Field, e.Reason, IDRule)
}

// CheckID returns an *IDError naming field when v is not 1 to MaxIDBytes
// bytes of IDChars.
func CheckID(field, v string) error {
	switch {
	case v == "":
		return &IDError{Field: field, Reason: "empty"}
	case len(v) > MaxIDBytes:
		return &IDError{Field: field, Reason: fmt.Sprintf("%d bytes, over the limit of %d", len(v), MaxIDBytes)}
	}
	for i := 0; i < len(v); i++ {
		if !idByte[v[i]] {
			return &IDError{Field: field, Reason: fmt.Sprintf("byte %d is %s, not allowed", i, quoteByte(v[i]))}
		}
	}
	return nil
}

// quoteByte shows c as a Go character literal when printable ASCII, else
// in hex.
func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

// DecodeDeviceRecord is DecodeRecord for a record a device may have
// produced straight to the first tier's topic: besides decoding, the id
// and device the record carries (in its envelope, headers or key) must
// pass CheckID, else an *IDError says which and why. A device may leave
// both out; fallbackID, which the caller makes, is not checked.
func DecodeDeviceRecord(key, value []byte, headers []Header, raw *RawInput, fallbackID string) (Message, error) {
	m, err := DecodeRecord(key, value, headers, raw, fallbackID)
	if err != nil {
		return m, err
	}
	if m.ID != fallbackID {
		if err := CheckID("", m.ID); err != nil {
			err.(*IDError).Field = "record id (" + recordSource(value, headers, raw, HeaderID, func(e Message) bool { return e.ID != "" }, true) + ")"
			return m, err
		}
	}
	if m.Device != "" {
		if err := CheckID("", m.Device); err != nil {
			err.(*IDError).Field = "record device (" + recordSource(value, headers, raw, HeaderDevice, func(e Message) bool { return e.Device != "" }, false) + ")"
			return m, err
		}
	}
	return m, nil
}

// recordSource names where DecodeRecord took a field from: the envelope
// when has says it holds one, else header, else (with key) the record
// key. It decodes the value again, which only error paths call for.
func recordSource(value []byte, headers []Header, raw *RawInput, header string, has func(Message) bool, key bool) string {
	var hs []Header
	for _, h := range headers {
		if h.Key == HeaderEncoding {
			hs = append(hs, h)
		}
	}
	if e, err := DecodeRecord(nil, value, hs, raw, ""); err == nil && has(e) {
		return "envelope"
	}
	if !key {
		return header + " header"
	}
	for _, h := range headers {
		if h.Key == header && len(h.Value) > 0 {
			return header + " header"
		}
	}
	return "record key"
}
