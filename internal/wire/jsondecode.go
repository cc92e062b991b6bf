package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// JSON is decoded by github.com/go-json-experiment/json, the upstream of
// Go's encoding/json/v2, into the structs below, which mirror the grammar
// in json.go. Its defaults give the strictness the forms need: field names
// match exactly, duplicate fields, invalid UTF-8 (also in \u escapes) and
// trailing data are errors, and null leaves a field as if it were absent;
// jsonDecodeOptions adds that unknown fields are errors. Only the elements
// of a tensor's data are parsed here, from the array the codec has read
// and checked, since they depend on a dtype and shape that may come after.
//
// Measured when the hand-written decoder was replaced (2 shared, noisy
// cores, before and after alternated): decoding a device's 28x28 uint8
// image takes 2 to 3 times as long (5 to 11 µs before, 12 to 23 µs
// after; a batch of 64 images 0.7 to 0.9 ms before, 2.2 to 3.0 ms after),
// most of it the codec checking the data array, while a result record
// decodes 5 times faster than with encoding/json. Funnel ingest end to end
// did not change beyond the noise: ddnn bench, HTTP, --encoding json, 4
// devices, 6000 msg/s offered for 15 s (more than the pipeline takes), three
// runs each side alternated on a quiet machine: 4111, 4284, 4136 results/s
// before, 3924, 3970, 4875 after (medians 0.96 of before). The 25 % a
// faster path would have to win back is not there, so there is none.

var jsonDecodeOptions = json.RejectUnknownMembers(true)

var errEmpty = errors.New("empty input")

// unmarshalJSON decodes b into v, reporting errors with the offset and
// the path of the value at fault.
func unmarshalJSON(b []byte, v any) error {
	i := skipSpace(b, 0)
	switch {
	case i == len(b):
		return errEmpty
	case b[i] != '{':
		// The codec would take null for an empty object.
		return fmt.Errorf("want an object at offset %d, got %s", i, snippet(b[i:]))
	}
	if err := json.Unmarshal(b, v, jsonDecodeOptions); err != nil {
		return jsonError(b, err)
	}
	return nil
}

// jsonError rewrites the codec's error about input b in this package's
// terms: where ("message 3: tensor: shape: dim 1: "), what, and the byte
// offset.
func jsonError(b []byte, err error) error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.As(err, &syn) && syn.JSONPointer == "" && jsontext.Value(b[:min(syn.ByteOffset, int64(len(b)))]).IsValid():
		return fmt.Errorf("trailing data at offset %d: %s", syn.ByteOffset, snippet(b[syn.ByteOffset:]))
	case errors.As(err, &syn):
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			return fmt.Errorf("%sduplicate field %q at offset %d", jsonPath(syn.JSONPointer.Parent()), syn.JSONPointer.LastToken(), syn.ByteOffset)
		}
		if errors.Is(syn.Err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%sinput ends at offset %d: %w", jsonPath(syn.JSONPointer), syn.ByteOffset, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("%s%v at offset %d", jsonPath(syn.JSONPointer), syn.Err, syn.ByteOffset)
	case errors.As(err, &sem):
		where := jsonPath(sem.JSONPointer)
		if errors.Is(sem.Err, json.ErrUnknownName) {
			return fmt.Errorf("%sunknown field %q (want %s) at offset %d", jsonPath(sem.JSONPointer.Parent()),
				sem.JSONPointer.LastToken(), strings.Join(fieldNames(sem.GoType), ", "), sem.ByteOffset)
		}
		if len(sem.JSONValue) > 0 && sem.JSONKind == '0' {
			// The number does not fit the field.
			if errors.Is(sem.Err, strconv.ErrRange) {
				return fmt.Errorf("%s%s is out of the %s range at offset %d", where, snippet(sem.JSONValue), sem.GoType, sem.ByteOffset)
			}
			return fmt.Errorf("%s%s is not %s at offset %d", where, snippet(sem.JSONValue), typeName(sem.GoType), sem.ByteOffset)
		}
		got := ""
		if sem.JSONKind != 0 {
			got = ", got " + jsonKindName(sem.JSONKind)
		}
		if sem.Err != nil {
			got += ": " + sem.Err.Error()
		}
		return fmt.Errorf("%swant %s at offset %d%s", where, typeName(sem.GoType), sem.ByteOffset, got)
	}
	return err
}

// jsonPath names the value at p as a prefix of an error message: field
// names, and "message i", "hop i", "dim i", "element i" for array items.
func jsonPath(p jsontext.Pointer) string {
	var toks []string
	for tok := range p.Tokens() {
		toks = append(toks, tok)
	}
	var sb strings.Builder
	for i, tok := range toks {
		item := i+1 < len(toks) && isIndex(toks[i+1])
		switch {
		case i > 0 && isIndex(tok):
			sb.WriteString(itemNames[toks[i-1]] + " " + tok + ": ")
		case item && (tok == "messages" || tok == "decisions" || tok == "hops"):
			// "message 3: " says it.
		default:
			sb.WriteString(tok + ": ")
		}
	}
	return sb.String()
}

// itemNames names an item of each array in the forms.
var itemNames = map[string]string{"messages": "message", "decisions": "decision", "hops": "hop", "shape": "dim", "data": "element", "": "element"}

func isIndex(tok string) bool {
	_, err := strconv.ParseUint(tok, 10, 0)
	return err == nil
}

// fieldNames lists the JSON names of struct type t's fields.
func fieldNames(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// typeName says what a value of t looks like in JSON.
func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time string"
	}
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Pointer, reflect.Map:
		return "an object"
	}
	return t.String()
}

func jsonKindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return k.String()
}

type messagesJSON struct {
	Messages []messageJSON `json:"messages"`
}

type decisionsJSON struct {
	Decisions []decisionJSON `json:"decisions"`
}

type messageJSON struct {
	ID     string      `json:"id"`
	Device string      `json:"device"`
	SentAt time.Time   `json:"sent_at"`
	Route  string      `json:"route"`
	Hops   []hopJSON   `json:"hops"`
	Tensor *tensorJSON `json:"tensor"`
}

type decisionJSON struct {
	ID         string      `json:"id"`
	Tier       string      `json:"tier"`
	Exit       bool        `json:"exit"`
	Class      int         `json:"class"`
	Label      string      `json:"label"`
	Confidence float32     `json:"confidence"`
	Forward    *tensorJSON `json:"forward"`
}

type tensorJSON struct {
	DType string   `json:"dtype"`
	Shape []int    `json:"shape"`
	Data  dataJSON `json:"data"`
}

// ingestJSON is what a device posts to a funnel (DecodeIngestJSON).
type ingestJSON struct {
	ID     string    `json:"id"`
	Device string    `json:"device"`
	SentAt time.Time `json:"sent_at"`
	Data   dataJSON  `json:"data"`
}

// dataJSON is where a tensor's data array is in the input, which the codec
// has read and checked to be valid JSON; its elements are parsed from the
// input once the dtype and shape are known, wherever they come in the
// object, without a copy.
type dataJSON struct {
	start, end int // offsets in the input; end is 0 when absent or null
}

// UnmarshalJSONFrom notes where the value is.
func (d *dataJSON) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	if v.Kind() == 'n' {
		*d = dataJSON{}
		return nil
	}
	end := int(dec.InputOffset())
	*d = dataJSON{start: end - len(v), end: end}
	return nil
}

func (d *dataJSON) present() bool { return d.end > 0 }

func decodeMessagesJSON(b []byte) ([]Message, error) {
	var v messagesJSON
	if err := unmarshalJSON(b, &v); err != nil {
		return nil, err
	}
	msgs := make([]Message, len(v.Messages))
	for i := range v.Messages {
		var err error
		if msgs[i], err = v.Messages[i].message(b); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return msgs, nil
}

func decodeDecisionsJSON(b []byte) ([]Decision, error) {
	var v decisionsJSON
	if err := unmarshalJSON(b, &v); err != nil {
		return nil, err
	}
	ds := make([]Decision, len(v.Decisions))
	for i := range v.Decisions {
		var err error
		if ds[i], err = v.Decisions[i].decision(b); err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
	}
	return ds, nil
}

func decodeMessageJSON(b []byte) (Message, error) {
	var v messageJSON
	if err := unmarshalJSON(b, &v); err != nil {
		return Message{}, err
	}
	return v.message(b)
}

func decodeIngestJSON(b []byte, dt DType, shape []int, n int) (Message, error) {
	var v ingestJSON
	if err := unmarshalJSON(b, &v); err != nil {
		return Message{}, err
	}
	sentAt, err := checkJSONTime(v.SentAt)
	if err != nil {
		return Message{}, fmt.Errorf("sent_at: %w", err)
	}
	data, err := v.Data.elements(b, dt, n)
	if err != nil {
		return Message{}, err
	}
	return Message{ID: v.ID, Device: v.Device, SentAt: sentAt,
		Tensor: Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: data}}, nil
}

// message converts v, decoded from input in.
func (v *messageJSON) message(in []byte) (Message, error) {
	m := Message{ID: v.ID, Device: v.Device, Route: v.Route}
	var err error
	if m.SentAt, err = checkJSONTime(v.SentAt); err != nil {
		return Message{}, fmt.Errorf("sent_at: %w", err)
	}
	for i, h := range v.Hops {
		if h.At, err = checkJSONTime(h.At); err != nil {
			return Message{}, fmt.Errorf("hops: hop %d: at: %w", i, err)
		}
		m.Hops = append(m.Hops, Hop(h))
	}
	if v.Tensor == nil {
		return Message{}, errors.New("tensor: missing")
	}
	if m.Tensor, err = v.Tensor.tensor(in); err != nil {
		return Message{}, fmt.Errorf("tensor: %w", err)
	}
	return m, nil
}

// decision converts v, decoded from input in.
func (v *decisionJSON) decision(in []byte) (Decision, error) {
	d := Decision{ID: v.ID, Tier: v.Tier, Exit: v.Exit, Class: v.Class, Label: v.Label, Confidence: v.Confidence}
	if v.Forward != nil {
		t, err := v.Forward.tensor(in)
		if err != nil {
			return Decision{}, fmt.Errorf("forward: %w", err)
		}
		d.Forward = &t
	}
	if d.Exit && d.Forward != nil {
		return Decision{}, errExitForward
	}
	return d, nil
}

// tensor converts v, decoded from input in.
func (v *tensorJSON) tensor(in []byte) (Tensor, error) {
	if v.DType == "" {
		return Tensor{}, errors.New("dtype: missing")
	}
	dt, err := ParseDType(v.DType)
	if err != nil {
		return Tensor{}, fmt.Errorf("dtype: %w", err)
	}
	if v.Shape == nil {
		return Tensor{}, errors.New("shape: missing")
	}
	if len(v.Shape) > MaxRank {
		return Tensor{}, fmt.Errorf("shape: more than %d dims", MaxRank)
	}
	n, err := checkShape(v.Shape)
	if err != nil {
		return Tensor{}, fmt.Errorf("shape: %w", err)
	}
	data, err := v.Data.elements(in, dt, n)
	if err != nil {
		return Tensor{}, err
	}
	return Tensor{DType: dt, Shape: v.Shape, Data: data}, nil
}

// checkJSONTime converts t to UTC and checks that the binary form can hold
// it too; the zero time stays zero.
func checkJSONTime(t time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Time{}, nil
	}
	if _, err := timeNanos(t); err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// elements parses d in input in, valid JSON, as an array of n numbers,
// returning them as little-endian elements of type dt. Its errors start
// with "data: ".
func (d *dataJSON) elements(in []byte, dt DType, n int) ([]byte, error) {
	if !d.present() {
		return nil, errors.New("data: missing")
	}
	data, err := d.parse(in[d.start:d.end], dt, n)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return data, nil
}

// parse parses b, d's array, as elements.
func (d *dataJSON) parse(b []byte, dt DType, n int) ([]byte, error) {
	if b[0] != '[' {
		return nil, fmt.Errorf("want an array of numbers at offset %d, got %s", d.start, snippet(b))
	}
	// An element takes at least two bytes of input (a digit and a
	// separator), so the input bounds the allocation whatever n is.
	out := make([]byte, 0, min(n, len(b)/2+1)*dt.Size())
	i := skipSpace(b, 1)
	if b[i] == ']' {
		return checkCount(out, 0, n)
	}
	for count := 0; ; count++ {
		if count == n {
			return nil, fmt.Errorf("more than %d elements", n)
		}
		var err error
		if out, i, err = appendElement(out, b, i, d.start, dt); err != nil {
			return nil, fmt.Errorf("element %d: %w", count, err)
		}
		// b is valid JSON: after an element comes ',' or ']'.
		if i = skipSpace(b, i); b[i] == ']' {
			return checkCount(out, count+1, n)
		}
		i = skipSpace(b, i+1)
	}
}

// appendElement appends the number at b[i:] as an element of type dt and
// returns the offset after it; b starts at offset base of the input.
func appendElement(out, b []byte, i, base int, dt DType) ([]byte, int, error) {
	if dt == Uint8 {
		if v, end, ok := fastUint8(b, i); ok {
			return append(out, v), end, nil
		}
	}
	if c := b[i]; c != '-' && !('0' <= c && c <= '9') {
		return nil, 0, fmt.Errorf("want a number at offset %d, got %s", base+i, snippet(b[i:]))
	}
	// The codec checked the number: it ends at a separator, and it is an
	// integer unless it has a fraction or an exponent.
	end := i + bytes.IndexAny(b[i:], ", \t\r\n]")
	num := b[i:end]
	integer := bytes.IndexAny(num, ".eE") < 0
	switch dt {
	case Uint8:
		v, ok := parseUint8(num, integer)
		if !ok {
			return nil, 0, fmt.Errorf("%s is not an integer in 0..255 at offset %d", snippet(num), base+i)
		}
		out = append(out, v)
	case Float32:
		// num is a valid number, so the only possible error is ErrRange.
		f, err := strconv.ParseFloat(string(num), 32)
		if err != nil {
			return nil, 0, fmt.Errorf("%s is out of the float32 range at offset %d", snippet(num), base+i)
		}
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(f)))
	}
	return out, end, nil
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
