package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The binary form. All integers are little-endian or varints.
//
//	batch    = magic version kind uvarint(count) item*
//	single   = magic version 'm' message
//	message  = string(id) string(device) string(route) varint(sent_at)
//	           uvarint(hops) (string(tier) varint(at))* tensor
//	decision = string(id) string(tier) flags varint(class) string(label)
//	           float32(confidence) [tensor]
//	tensor   = dtype uvarint(rank) uvarint(dim)* uvarint(bytes) byte*
//	string   = uvarint(len) byte*
//
// Times are Unix nanoseconds, 0 for the zero time. The decision flags are
// bit 0 exit and bit 1 has a forward tensor.
//
// The version byte lets a later layout be read next to this one: the
// encoders write version, the decoders read every version in
// readVersions, and where a later version's items differ the decoder's
// methods branch on decoder.version. An unknown version is an error that
// names it and the versions this build reads.
const (
	magic         = "DDN"
	version       = 1 // written
	kindMessages  = 'M'
	kindDecisions = 'D'
	kindMessage   = 'm'
	headerLen     = len(magic) + 2 // magic, version, kind

	flagExit    = 1 << 0
	flagForward = 1 << 1

	// The smallest encodings of an item, to bound declared counts.
	minTensorLen   = 5 // dtype, rank, one dim, length, one byte
	minMessageLen  = 5 + minTensorLen
	minHopLen      = 2
	minDecisionLen = 5 + 4

	// maxPrealloc is the most items a decoder allocates room for before
	// decoding them.
	maxPrealloc = 1024
)

// readVersions are the versions of the binary form the decoders read.
var readVersions = []byte{1}

// UnsupportedVersionError is a binary payload of a version this build does
// not read, such as one written by a newer ddnn.
type UnsupportedVersionError struct {
	Version   byte
	Supported []byte
}

func (e *UnsupportedVersionError) Error() string {
	vs := make([]string, len(e.Supported))
	for i, v := range e.Supported {
		vs[i] = strconv.Itoa(int(v))
	}
	return fmt.Sprintf("unsupported binary version %d (this build reads version %s)", e.Version, strings.Join(vs, ", "))
}

func appendHeader(dst []byte, kind byte) []byte {
	dst = append(dst, magic...)
	return append(dst, version, kind)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// messageSize estimates the encoded size of m, to grow buffers once.
func messageSize(m *Message) int { return messageHeadSize(m) + len(m.Tensor.Data) }

// messageHeadSize estimates the encoded size of m but its tensor's data.
func messageHeadSize(m *Message) int {
	n := 48 + len(m.ID) + len(m.Device) + len(m.Route)
	for _, h := range m.Hops {
		n += 12 + len(h.Tier)
	}
	return n
}

func appendMessagesBinary(dst []byte, msgs []Message) ([]byte, error) {
	return appendListBinary(dst, kindMessages, "message", msgs, messageSize, appendMessageBinary)
}

// appendListBinary appends the binary list of kind holding items: the
// header, the count, then each item with appendItem; an item's error is
// wrapped with its index ("message 3: ..."). The room it grows dst by up
// front is size's estimate summed over items.
func appendListBinary[T any](dst []byte, kind byte, what string, items []T, size func(*T) int, appendItem func([]byte, *T) ([]byte, error)) ([]byte, error) {
	n := headerLen + binary.MaxVarintLen64
	for i := range items {
		n += size(&items[i])
	}
	dst = slices.Grow(dst, n)
	dst = appendHeader(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(items)))
	for i := range items {
		var err error
		if dst, err = appendItem(dst, &items[i]); err != nil {
			return nil, fmt.Errorf("%s %d: %w", what, i, err)
		}
	}
	return dst, nil
}

func appendMessageBinary(dst []byte, m *Message) ([]byte, error) {
	if err := checkMessage(m); err != nil {
		return nil, err
	}
	return appendTensorBinary(appendMessageHead(dst, m), &m.Tensor), nil
}

// appendMessageHead appends m but its tensor; m must have passed
// checkMessageHead.
func appendMessageHead(dst []byte, m *Message) []byte {
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Device)
	dst = appendString(dst, m.Route)
	sent, _ := timeNanos(m.SentAt) // checked by checkMessageHead
	dst = binary.AppendVarint(dst, sent)
	dst = binary.AppendUvarint(dst, uint64(len(m.Hops)))
	for _, h := range m.Hops {
		dst = appendString(dst, h.Tier)
		at, _ := timeNanos(h.At) // checked by checkMessageHead
		dst = binary.AppendVarint(dst, at)
	}
	return dst
}

// appendTensorBinary appends t, which must have passed checkStructure.
func appendTensorBinary(dst []byte, t *Tensor) []byte {
	dst = append(dst, byte(t.DType))
	dst = binary.AppendUvarint(dst, uint64(len(t.Shape)))
	for _, d := range t.Shape {
		dst = binary.AppendUvarint(dst, uint64(d))
	}
	dst = binary.AppendUvarint(dst, uint64(len(t.Data)))
	return append(dst, t.Data...)
}

func decisionSize(d *Decision) int {
	n := 32 + len(d.ID) + len(d.Tier) + len(d.Label)
	if d.Forward != nil {
		n += 16 + len(d.Forward.Data)
	}
	return n
}

func appendDecisionsBinary(dst []byte, ds []Decision) ([]byte, error) {
	return appendListBinary(dst, kindDecisions, "decision", ds, decisionSize, appendDecisionBinary)
}

func appendDecisionBinary(dst []byte, d *Decision) ([]byte, error) {
	if err := checkDecision(d); err != nil {
		return nil, err
	}
	dst = appendString(dst, d.ID)
	dst = appendString(dst, d.Tier)
	var flags byte
	if d.Exit {
		flags |= flagExit
	}
	if d.Forward != nil {
		flags |= flagForward
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, int64(d.Class))
	dst = appendString(dst, d.Label)
	dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(d.Confidence))
	if d.Forward != nil {
		dst = appendTensorBinary(dst, d.Forward)
	}
	return dst, nil
}

// decoder reads the binary form. Every method checks lengths against the
// remaining input before slicing or allocating.
//
// Allocation dominates decoding, so the decoder carves tensor data, shapes
// and hops out of shared chunks (capacity-limited, so appending to one
// never overwrites another), and reuses the strings that repeat across a
// batch (device, route and tier names, labels).
type decoder struct {
	b       []byte
	off     int
	version byte // of the payload, set by header
	data    chunk[byte]
	ints    chunk[int]
	hops    chunk[Hop]
	fwds    chunk[Tensor]

	recent     [8]string // recently decoded repeating strings
	nextRecent int
}

// dataChunk is the most tensor data the decoder allocates at once, and so
// the most that one retained tensor keeps alive.
const dataChunk = 64 << 10

// chunk hands out slices of a larger allocation.
type chunk[T any] struct {
	buf []T
}

// take returns a zeroed slice of n elements, allocating a new chunk of
// max(n, size) elements if the current one is too small.
func (c *chunk[T]) take(n, size int) []T {
	if cap(c.buf)-len(c.buf) < n {
		c.buf = make([]T, 0, max(n, size))
	}
	start := len(c.buf)
	c.buf = c.buf[:start+n]
	return c.buf[start : start+n : start+n]
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) truncated(what string, need uint64) error {
	return fmt.Errorf("%s needs %d bytes, %d remain: %w", what, need, d.remaining(), io.ErrUnexpectedEOF)
}

func (d *decoder) header(kind byte) error {
	m := d.b[:min(len(d.b), len(magic))]
	if string(m) != magic[:len(m)] {
		return fmt.Errorf("bad magic %q, want %q", m, magic)
	}
	if d.remaining() < headerLen {
		return d.truncated("header", uint64(headerLen))
	}
	h := d.b[:headerLen]
	d.version = h[len(magic)]
	if !slices.Contains(readVersions, d.version) {
		return &UnsupportedVersionError{Version: d.version, Supported: readVersions}
	}
	if k := h[len(magic)+1]; k != kind {
		return fmt.Errorf("kind %s, want %s", kindName(k), kindName(kind))
	}
	d.off = headerLen
	return nil
}

func kindName(k byte) string {
	switch k {
	case kindMessages:
		return "'M' (message batch)"
	case kindDecisions:
		return "'D' (decision batch)"
	case kindMessage:
		return "'m' (single message)"
	}
	return fmt.Sprintf("%#02x", k)
}

func (d *decoder) byte(what string) (byte, error) {
	if d.remaining() < 1 {
		return 0, d.truncated(what, 1)
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	if n == 0 {
		return 0, fmt.Errorf("%s: %w", what, io.ErrUnexpectedEOF)
	}
	if n < 0 {
		return 0, fmt.Errorf("%s: varint overflows 64 bits", what)
	}
	d.off += n
	return v, nil
}

func (d *decoder) varint(what string) (int64, error) {
	v, n := binary.Varint(d.b[d.off:])
	if n == 0 {
		return 0, fmt.Errorf("%s: %w", what, io.ErrUnexpectedEOF)
	}
	if n < 0 {
		return 0, fmt.Errorf("%s: varint overflows 64 bits", what)
	}
	d.off += n
	return v, nil
}

// count reads a count of items, each at least minLen bytes long.
func (d *decoder) count(what string, minLen int) (int, error) {
	n, err := d.uvarint(what)
	if err != nil {
		return 0, err
	}
	if n > uint64(d.remaining()/minLen) {
		return 0, fmt.Errorf("%s %d is more than the %d remaining bytes can hold", what, n, d.remaining())
	}
	return int(n), nil
}

// string reads a string. If repeats, the string is likely to repeat in
// the batch, and an equal recent one is returned instead of a copy.
func (d *decoder) string(what string, repeats bool) (string, error) {
	n, err := d.uvarint(what)
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", d.truncated(what, n)
	}
	b := d.b[d.off : d.off+int(n)]
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%s: invalid UTF-8", what)
	}
	d.off += int(n)
	if !repeats || n == 0 {
		return string(b), nil
	}
	for _, s := range d.recent {
		if s == string(b) {
			return s, nil
		}
	}
	s := string(b)
	d.recent[d.nextRecent] = s
	d.nextRecent = (d.nextRecent + 1) % len(d.recent)
	return s, nil
}

func (d *decoder) time(what string) (time.Time, error) {
	n, err := d.varint(what)
	if err != nil {
		return time.Time{}, err
	}
	return nanosTime(n), nil
}

func (d *decoder) tensor(t *Tensor) error {
	dt, err := d.byte("dtype")
	if err != nil {
		return err
	}
	t.DType = DType(dt)
	if !t.DType.valid() {
		return fmt.Errorf("unknown dtype %d", dt)
	}
	rank, err := d.uvarint("rank")
	if err != nil {
		return err
	}
	if rank < 1 || rank > MaxRank {
		return fmt.Errorf("rank %d is not in 1..%d", rank, MaxRank)
	}
	t.Shape = d.ints.take(int(rank), 64)
	for i := range t.Shape {
		v, err := d.uvarint("dim")
		if err != nil {
			return err
		}
		if v < 1 || v > MaxElements {
			return fmt.Errorf("dim %d is %d, want 1..%d", i, v, MaxElements)
		}
		t.Shape[i] = int(v)
	}
	n, err := checkShape(t.Shape)
	if err != nil {
		return err
	}
	size, err := d.uvarint("data length")
	if err != nil {
		return err
	}
	if want := n * t.DType.Size(); size != uint64(want) {
		return fmt.Errorf("data is %d bytes, want %d for shape %v %s", size, want, t.Shape, t.DType)
	}
	if int(size) > d.remaining() {
		return d.truncated("data", size)
	}
	// size <= remaining, so the chunk is bounded by the input too.
	t.Data = d.data.take(int(size), min(d.remaining(), dataChunk))
	d.off += copy(t.Data, d.b[d.off:])
	return nil
}

func (d *decoder) message(m *Message) error {
	var err error
	if m.ID, err = d.string("id", false); err != nil {
		return err
	}
	if m.Device, err = d.string("device", true); err != nil {
		return err
	}
	if m.Route, err = d.string("route", true); err != nil {
		return err
	}
	if m.SentAt, err = d.time("sent_at"); err != nil {
		return err
	}
	n, err := d.count("hop count", minHopLen)
	if err != nil {
		return err
	}
	if n > 0 {
		m.Hops = d.hops.take(n, 32)
		for i := range m.Hops {
			h := &m.Hops[i]
			if h.Tier, err = d.string("tier", true); err != nil {
				return fmt.Errorf("hop %d: %w", i, err)
			}
			if h.At, err = d.time("at"); err != nil {
				return fmt.Errorf("hop %d: %w", i, err)
			}
		}
	}
	if err := d.tensor(&m.Tensor); err != nil {
		return fmt.Errorf("tensor: %w", err)
	}
	return nil
}

// decision reads a decision; with spliced set, its forward tensor is
// checked and left encoded in *spliced instead of decoded into x.Forward.
func (d *decoder) decision(x *Decision, spliced *EncodedTensor) error {
	var err error
	if x.ID, err = d.string("id", false); err != nil {
		return err
	}
	if x.Tier, err = d.string("tier", true); err != nil {
		return err
	}
	flags, err := d.byte("flags")
	if err != nil {
		return err
	}
	if flags&^(flagExit|flagForward) != 0 {
		return fmt.Errorf("flags %#02x has unknown bits", flags)
	}
	x.Exit = flags&flagExit != 0
	if x.Exit && flags&flagForward != 0 {
		return errExitForward
	}
	class, err := d.varint("class")
	if err != nil {
		return err
	}
	x.Class = int(class)
	if int64(x.Class) != class {
		return fmt.Errorf("class %d overflows int", class)
	}
	if x.Label, err = d.string("label", true); err != nil {
		return err
	}
	if d.remaining() < 4 {
		return d.truncated("confidence", 4)
	}
	x.Confidence = math.Float32frombits(binary.LittleEndian.Uint32(d.b[d.off:]))
	d.off += 4
	if err := checkConfidence(x.Confidence); err != nil {
		return err
	}
	if flags&flagForward != 0 && spliced != nil {
		if *spliced, err = d.skipTensor(); err != nil {
			return fmt.Errorf("forward: %w", err)
		}
		return nil
	}
	if flags&flagForward != 0 {
		x.Forward = &d.fwds.take(1, 32)[0]
		if err := d.tensor(x.Forward); err != nil {
			return fmt.Errorf("forward: %w", err)
		}
	}
	return nil
}

func (d *decoder) end() error {
	if n := d.remaining(); n != 0 {
		return fmt.Errorf("%d trailing bytes", n)
	}
	return nil
}

// decodeMessagesBinary and decodeDecisionsBinary are written out twice on
// purpose: a generic list decoder that calls the item decoder through a
// func value moves the decoder to the heap, one more allocation per batch
// (BenchmarkDecodeMessages: 75 to 77 allocs/op).
func decodeMessagesBinary(b []byte) ([]Message, error) {
	d := decoder{b: b}
	if err := d.header(kindMessages); err != nil {
		return nil, err
	}
	n, err := d.count("message count", minMessageLen)
	if err != nil {
		return nil, err
	}
	// n is bounded by the input, but a Message is much larger than its
	// smallest encoding: grow as messages decode rather than trust n.
	msgs := make([]Message, 0, min(n, maxPrealloc))
	for i := range n {
		msgs = append(msgs, Message{})
		if err := d.message(&msgs[i]); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("after %d messages: %w", n, err)
	}
	return msgs, nil
}

func decodeDecisionsBinary(b []byte) ([]Decision, error) {
	d := decoder{b: b}
	if err := d.header(kindDecisions); err != nil {
		return nil, err
	}
	n, err := d.count("decision count", minDecisionLen)
	if err != nil {
		return nil, err
	}
	ds := make([]Decision, 0, min(n, maxPrealloc))
	for i := range n {
		ds = append(ds, Decision{})
		if err := d.decision(&ds[i], nil); err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("after %d decisions: %w", n, err)
	}
	return ds, nil
}

func decodeMessageBinary(b []byte) (Message, error) {
	d := decoder{b: b}
	if err := d.header(kindMessage); err != nil {
		return Message{}, err
	}
	var m Message
	if err := d.message(&m); err != nil {
		return Message{}, err
	}
	if err := d.end(); err != nil {
		return Message{}, err
	}
	return m, nil
}
