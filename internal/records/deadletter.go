package records

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Headers a dead letter carries besides wire.HeaderReason.
const (
	HeaderSourceTopic     = "ddnn-source-topic"
	HeaderSourcePartition = "ddnn-source-partition"
	HeaderSourceOffset    = "ddnn-source-offset"
	// HeaderOriginalSize is the size of the record's value as fetched.
	HeaderOriginalSize = "ddnn-original-size"
	// HeaderTruncated says what was cut from a copy that would have been
	// larger than kafka.max_record_bytes.
	HeaderTruncated = "ddnn-truncated"
)

// maxReasonBytes bounds a dead letter's reason: an error can quote what
// it refused (a header of any size), and the reason must leave room in a
// copy of at most kafka.max_record_bytes (4096 at least).
const maxReasonBytes = 1024

// CutReason bounds reason to 1 KiB, on a UTF-8 boundary, as DeadLetter
// writes it.
func CutReason(reason string) string {
	if len(reason) <= maxReasonBytes {
		return reason
	}
	return strings.ToValidUTF8(reason[:maxReasonBytes-len("…")], "") + "…"
}

// DeadLetter is rec parked on topic: its key, value and headers, plus the
// reason (CutReason), the value's size and where it came from. A copy
// that would be larger than maxBytes (kafka.max_record_bytes) gets its
// value cut to fit, then, if that is not enough, loses the original
// headers and key, and HeaderTruncated says what was cut.
func DeadLetter(topic string, rec *kgo.Record, reason string, maxBytes int) *kgo.Record {
	reason = CutReason(reason)
	ours := []kgo.RecordHeader{
		{Key: wire.HeaderReason, Value: []byte(reason)},
		{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(len(rec.Value)))},
		{Key: HeaderSourceTopic, Value: []byte(rec.Topic)},
		{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	}
	out := &kgo.Record{
		Topic:   topic,
		Key:     rec.Key,
		Value:   rec.Value,
		Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...), ours...),
	}
	over := kafka.RecordSize(out) - maxBytes
	if over <= 0 {
		return out
	}
	// Room for the note itself, at its longest.
	const note = len(HeaderTruncated) + 96 + 10
	over += note
	var cut []string
	if over > 0 && len(out.Value) > 0 {
		keep := max(0, len(out.Value)-over)
		over -= len(out.Value) - keep
		out.Value = out.Value[:keep]
		cut = append(cut, fmt.Sprintf("value cut to %d of %d bytes", keep, len(rec.Value)))
	}
	if over > 0 && len(rec.Headers) > 0 {
		out.Headers = ours
		over = kafka.RecordSize(out) + note - maxBytes
		cut = append(cut, "original headers dropped")
	}
	if over > 0 && len(out.Key) > 0 {
		out.Key = nil
		cut = append(cut, "key dropped")
	}
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderTruncated, Value: []byte(strings.Join(cut, "; "))})
	return out
}

// Parked is what a dead letter says of the record it parks.
type Parked struct {
	// ID is the message's id, from its wire.HeaderID or its key; "" when
	// the record had neither.
	ID     string `json:"id"`
	Reason string `json:"reason"`
	// Source is where the record was read: topic, partition, offset.
	SourceTopic     string `json:"source_topic"`
	SourcePartition int32  `json:"source_partition"`
	SourceOffset    int64  `json:"source_offset"`
	// Size is the value's size as it was read; Truncated says what was
	// cut from the copy ("" when nothing was).
	Size      int    `json:"size"`
	Truncated string `json:"truncated,omitempty"`
}

// ReadDeadLetter reads what a dead letter (DeadLetter) says of the record
// it parks; headers it lacks or that do not parse are left zero.
func ReadDeadLetter(r *kgo.Record) Parked {
	p := Parked{
		ID:          Header(r, wire.HeaderID),
		Reason:      Header(r, wire.HeaderReason),
		SourceTopic: Header(r, HeaderSourceTopic),
		Truncated:   Header(r, HeaderTruncated),
	}
	if p.ID == "" {
		p.ID = string(r.Key)
	}
	if n, err := strconv.ParseInt(Header(r, HeaderSourcePartition), 10, 32); err == nil {
		p.SourcePartition = int32(n)
	}
	if n, err := strconv.ParseInt(Header(r, HeaderSourceOffset), 10, 64); err == nil {
		p.SourceOffset = n
	}
	if n, err := strconv.Atoi(Header(r, HeaderOriginalSize)); err == nil {
		p.Size = n
	}
	return p
}

// HeaderReplayedFrom marks a record ddnn dlq replay sent back to a tier:
// the dead letter it came from, as <topic>/<partition>/<offset>.
const HeaderReplayedFrom = "ddnn-replayed-from"

// Replay is the record a dead letter parks, for topic: its key, value and
// headers as they were read, without what DeadLetter added, and with
// HeaderReplayedFrom naming the dead letter. A dead letter whose copy was
// cut (HeaderTruncated) cannot be replayed: the record is not all there.
func Replay(topic string, dead *kgo.Record) (*kgo.Record, error) {
	if cut := Header(dead, HeaderTruncated); cut != "" {
		return nil, fmt.Errorf("the dead letter holds a cut copy (%s)", cut)
	}
	added := map[string]bool{wire.HeaderReason: true, HeaderOriginalSize: true, HeaderSourceTopic: true,
		HeaderSourcePartition: true, HeaderSourceOffset: true, HeaderReplayedFrom: true}
	out := &kgo.Record{Topic: topic, Key: dead.Key, Value: dead.Value}
	// DeadLetter appends its headers after the record's own: the last of
	// each of ours is DeadLetter's; earlier ones are the record's (a
	// record dead-lettered twice), and stay but for an older replay mark.
	last := map[string]int{}
	for i, h := range dead.Headers {
		last[h.Key] = i
	}
	for i, h := range dead.Headers {
		if added[h.Key] && (last[h.Key] == i || h.Key == HeaderReplayedFrom) {
			continue
		}
		out.Headers = append(out.Headers, h)
	}
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderReplayedFrom,
		Value: []byte(fmt.Sprintf("%s/%d/%d", dead.Topic, dead.Partition, dead.Offset))})
	return out, nil
}
