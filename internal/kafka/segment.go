package kafka

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

const (
	batchHeaderSize = 61 // a record batch's header, up to its first record
	logEntryHeader  = 10 // a groups.log or pids.log entry's framing
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// batchSpan is a readable record batch of a segment file.
type batchSpan struct {
	pos, size   int
	first, last int64
	epoch       int32
	attrs       int16
	maxTS       int64
}

// segWindow is how much of a segment file segReader holds at a time: the
// check and the repair read a segment in pieces of this size, so their
// memory does not grow with the data the broker keeps.
const segWindow = 256 << 10

// segReader reads a segment file through one window of segWindow bytes.
// The first read error is kept in err; reads after it find nothing.
type segReader struct {
	r    io.ReaderAt
	size int
	buf  []byte
	win  []byte // bytes [wOff, wOff+len(win)) of the file
	wOff int
	err  error
}

func newSegReader(r io.ReaderAt, size int) *segReader {
	return &segReader{r: r, size: size, buf: make([]byte, min(segWindow, max(size, batchHeaderSize)))}
}

// at is bytes [pos, pos+n) of the file (n <= segWindow, pos+n <= size),
// valid until the next read; nil after a read error.
func (r *segReader) at(pos, n int) []byte {
	if pos >= r.wOff && pos+n <= r.wOff+len(r.win) {
		return r.win[pos-r.wOff : pos-r.wOff+n]
	}
	if r.err != nil {
		return nil
	}
	m := min(len(r.buf), r.size-pos)
	if k, err := r.r.ReadAt(r.buf[:m], int64(pos)); k < m {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.err, r.win = err, nil
		return nil
	}
	r.win, r.wOff = r.buf[:m], pos
	return r.win[:n]
}

// crc is the CRC-32C of bytes [from, to) of the file, read a window at a
// time.
func (r *segReader) crc(from, to int) (uint32, bool) {
	var c uint32
	for pos := from; pos < to; {
		n := min(len(r.buf), to-pos)
		b := r.at(pos, n)
		if b == nil {
			return 0, false
		}
		c = crc32.Update(c, crc32c, b)
		pos += n
	}
	return c, true
}

// copyTo writes bytes [from, to) of the file to w, a window at a time.
func (r *segReader) copyTo(w io.Writer, from, to int) error {
	for pos := from; pos < to; {
		n := min(len(r.buf), to-pos)
		b := r.at(pos, n)
		if b == nil {
			return r.err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		pos += n
	}
	return nil
}

// validBatchAt reads the record batch at pos if it is whole and its
// CRC-32C matches.
func validBatchAt(r *segReader, pos int) (batchSpan, bool) {
	hb, ok := batchHeaderAt(r, pos)
	if !ok || pos+hb.size > r.size {
		return batchSpan{}, false
	}
	h := r.at(pos, batchHeaderSize)
	if h == nil {
		return batchSpan{}, false
	}
	want := binary.BigEndian.Uint32(h[17:])
	if got, ok := r.crc(pos+21, pos+hb.size); !ok || got != want {
		return batchSpan{}, false
	}
	return hb, true
}

// span is a byte range [from, to).
type span struct{ from, to int }

// badSpan is a damaged range of a segment file and what the header of a
// batch at its start says, if one parses there (unverified).
type badSpan struct {
	span
	hdr   batchSpan
	hdrOK bool
}

// scanSegment splits a segment file into its readable batches and the
// damaged ranges between them: after a damaged byte the scan resumes at
// the next position where a whole batch with a matching CRC-32C starts.
// It holds one window of the file at a time.
func scanSegment(r *segReader) (good []batchSpan, bad []badSpan, err error) {
	for pos := 0; pos < r.size && r.err == nil; {
		if b, ok := validBatchAt(r, pos); ok {
			good = append(good, b)
			pos += b.size
			continue
		}
		bs := badSpan{span: span{from: pos}}
		bs.hdr, bs.hdrOK = batchHeaderAt(r, pos)
		q := pos + 1
		for ; q < r.size && r.err == nil; q++ {
			if _, ok := validBatchAt(r, q); ok {
				break
			}
		}
		bs.to = q
		bad = append(bad, bs)
		pos = q
	}
	return good, bad, r.err
}

// validEntryAt reads the groups.log or pids.log entry at pos of raw.
func validEntryAt(raw []byte, pos int) (size int, ok bool) {
	if pos+logEntryHeader > len(raw) {
		return 0, false
	}
	length := int(binary.LittleEndian.Uint32(raw[pos:]))
	if length < 2 || length > len(raw)-pos-8 {
		return 0, false
	}
	end := pos + 8 + length
	if binary.LittleEndian.Uint32(raw[pos+4:]) != crc32.Checksum(raw[pos+8:end], crc32c) {
		return 0, false
	}
	return 8 + length, true
}

// scanLog splits groups.log or pids.log into its readable entries and
// the damaged ranges between them, resuming after a damaged byte at the
// next whole entry with a matching checksum.
func scanLog(raw []byte) (good, bad []span) {
	for pos := 0; pos < len(raw); {
		if n, ok := validEntryAt(raw, pos); ok {
			good = append(good, span{pos, pos + n})
			pos += n
			continue
		}
		q := pos + 1
		for ; q < len(raw); q++ {
			if _, ok := validEntryAt(raw, q); ok {
				break
			}
		}
		bad = append(bad, span{pos, q})
		pos = q
	}
	return good, bad
}

// batchHeaderAt reads the header of a batch at pos without checking it.
func batchHeaderAt(r *segReader, pos int) (batchSpan, bool) {
	if pos+batchHeaderSize > r.size {
		return batchSpan{}, false
	}
	h := r.at(pos, batchHeaderSize)
	if h == nil || h[16] != 2 {
		return batchSpan{}, false
	}
	length := int(int32(binary.BigEndian.Uint32(h[8:])))
	if length < batchHeaderSize-12 {
		return batchSpan{}, false
	}
	first := int64(binary.BigEndian.Uint64(h))
	return batchSpan{pos: pos, size: 12 + length, first: first,
		last:  first + int64(int32(binary.BigEndian.Uint32(h[23:]))),
		epoch: int32(binary.BigEndian.Uint32(h[12:])),
		attrs: int16(binary.BigEndian.Uint16(h[21:])),
		maxTS: int64(binary.BigEndian.Uint64(h[35:]))}, true
}
