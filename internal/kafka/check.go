package kafka

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// The embedded broker's data directory is checked before kfake loads it.
// kfake reads a partition's segment files (.dat: Kafka record batches,
// each with a CRC-32C) and its groups.log and pids.log (entries framed as
// [length LE32][CRC-32C LE32][version LE16][JSON]) front to back and, at
// the first batch or entry that fails its checksum or is cut short,
// silently drops it and everything after it: the records behind a flipped
// byte, the commits behind a flipped byte in groups.log. So the broker
// refuses to start on a damaged directory, naming each damaged file, its
// byte range and the offsets it held, and RepairDataDir drops exactly
// the damaged bytes, keeps what follows them, and says what was dropped.
// After an unclean stop, what an interrupted write leaves (a torn tail, a
// commit past the end) is recovered at start instead (checkDataDir). The
// check reads one segment at a time through a window of segWindow bytes
// and keeps only where each batch lies, so its memory does not grow with
// the data kept.

// DamagedError is the start's refusal of a damaged data directory.
type DamagedError struct {
	Dir    string
	Damage []Damage
	// Clean says the broker had stopped cleanly before: a torn tail is
	// then damage too, not an interrupted write.
	Clean bool
}

func (e *DamagedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "embedded broker data dir %s is damaged, so the broker does not start on it:", e.Dir)
	for _, d := range e.Damage {
		b.WriteString("\n  " + d.String())
	}
	if e.Clean {
		b.WriteString("\nthe broker had stopped cleanly (its files synced), so this is no write a crash interrupted")
	} else {
		b.WriteString("\nthe broker had not stopped cleanly, but this is more than the torn tail of an interrupted write, which the start drops by itself")
	}
	b.WriteString("\nrun `ddnn broker repair -f PIPELINE.yaml [--site NAME]` with the broker stopped: it drops exactly the damaged bytes, keeps what follows, and lists what is lost")
	return b.String()
}

// Damage is one damaged byte range of a file in the data directory.
type Damage struct {
	File     string // relative to the data directory
	From, To int64  // the damaged bytes, [From, To)
	Size     int64  // the file's size
	Reason   string

	// A segment's damage: the partition and the offsets the damaged
	// bytes held (First, Last inclusive; -1 when unknown).
	Topic       string
	Partition   int32
	First, Last int64
	// Bounds says where First and Last come from.
	Bounds string

	// A log's damage: how many entries the range held, if its framing
	// still says (-1 otherwise).
	Entries int
}

func (d Damage) String() string {
	if d.From < 0 {
		return d.File + ": " + d.Reason
	}
	s := fmt.Sprintf("%s: bytes %d-%d of %d %s", d.File, d.From, d.To, d.Size, d.Reason)
	switch {
	case d.Topic != "" && d.First >= 0 && d.Last >= d.First:
		s += fmt.Sprintf(": offsets %d-%d of %s-%d (%d records, %s)", d.First, d.Last, d.Topic, d.Partition, d.Last-d.First+1, d.Bounds)
	case d.Topic != "":
		s += fmt.Sprintf(": offsets from %d of %s-%d, the end unknown", d.First, d.Topic, d.Partition)
	case d.Entries == 1:
		s += ": 1 entry"
	case d.Entries >= 0:
		s += fmt.Sprintf(": %d entries", d.Entries)
	}
	return s
}

// snapshotFile is the part of kfake's partition snapshot.json (written at
// a clean stop) the check uses.
type snapshotFile struct {
	HighWatermark int64 `json:"high_watermark"`
	Segments      []struct {
		BaseOffset int64 `json:"base_offset"`
		Size       int64 `json:"size"`
	} `json:"segments"`
}

// partScan is the scan of one partition directory.
type partScan struct {
	dir       string // relative to the data directory
	topic     string
	partition int32
	compacted bool
	snap      *snapshotFile
	segs      []segScan
	damage    []Damage
}

type segScan struct {
	base int64
	path string // relative
	size int
	good []batchSpan
	bad  []badSpan
	// fixed are the batches (by position) whose base offset, which
	// their checksum does not cover, the offsets around them contradict:
	// good holds them with the offsets restored.
	fixed map[int]int64
}

// end is the offset after the partition's last readable record, and
// whether it has any.
func (p *partScan) end() (int64, bool) {
	for i := len(p.segs) - 1; i >= 0; i-- {
		if g := p.segs[i].good; len(g) > 0 {
			return g[len(g)-1].last + 1, true
		}
	}
	return 0, false
}

// logScan is the scan of groups.log or pids.log.
type logScan struct {
	name   string
	raw    []byte
	good   []span
	bad    []span
	damage []Damage
}

// dirScan is the scan of a whole data directory.
type dirScan struct {
	parts []*partScan
	logs  []*logScan
}

func (s *dirScan) damage() []Damage {
	var out []Damage
	for _, p := range s.parts {
		out = append(out, p.damage...)
	}
	for _, l := range s.logs {
		out = append(out, l.damage...)
	}
	return out
}

// topicsFile is the part of kfake's topics.json the check uses.
type topicsFile struct {
	Topics []struct {
		Name    string            `json:"name"`
		Configs map[string]string `json:"configs"`
	} `json:"topics"`
}

// scanDataDir reads every segment file, groups.log and pids.log of dir.
// It holds one window of one segment file at a time and keeps only where
// the batches are and what offsets they hold.
func scanDataDir(dir string) (*dirScan, error) {
	s := &dirScan{}
	compacted := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "topics.json")); err == nil {
		var tf topicsFile
		if json.Unmarshal(b, &tf) == nil {
			for _, t := range tf.Topics {
				compacted[t.Name] = strings.Contains(t.Configs["cleanup.policy"], "compact")
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "partitions"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		i := strings.LastIndexByte(e.Name(), '-')
		if i < 0 {
			continue
		}
		part, err := strconv.ParseInt(e.Name()[i+1:], 10, 32)
		if err != nil {
			continue
		}
		topic, err := url.PathUnescape(e.Name()[:i])
		if err != nil {
			continue
		}
		p := &partScan{dir: filepath.Join("partitions", e.Name()), topic: topic, partition: int32(part), compacted: compacted[topic]}
		if err := p.scan(dir); err != nil {
			return nil, err
		}
		s.parts = append(s.parts, p)
	}
	for _, name := range []string{"groups.log", "pids.log"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		l := &logScan{name: name, raw: raw}
		l.good, l.bad = scanLog(raw)
		for _, b := range l.bad {
			d := Damage{File: name, From: int64(b.from), To: int64(b.to), Size: int64(len(raw)), Entries: -1}
			d.Reason, d.Entries = logDamage(raw, b)
			l.damage = append(l.damage, d)
		}
		s.logs = append(s.logs, l)
	}
	return s, nil
}

// logDamage says why a log's damaged range is damaged and how many
// entries it held, when its framing says.
func logDamage(raw []byte, b span) (string, int) {
	if b.to == len(raw) {
		length := 0
		if b.from+4 <= len(raw) {
			length = int(binary.LittleEndian.Uint32(raw[b.from:]))
		}
		if b.from+8+length > len(raw) && length >= 2 && length < 1<<26 {
			return "are an entry cut short (the file ends inside it)", 1
		}
	}
	if b.from+4 <= len(raw) {
		if length := int(binary.LittleEndian.Uint32(raw[b.from:])); b.from+8+length == b.to {
			return "fail their checksum (CRC-32C)", 1
		}
	}
	return "fail their checksum (CRC-32C) and their framing", -1
}

func (p *partScan) scan(dir string) error {
	pdir := filepath.Join(dir, p.dir)
	entries, err := os.ReadDir(pdir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".dat")
		if !ok {
			continue
		}
		off, err := strconv.ParseInt(base, 10, 64)
		if err != nil {
			continue
		}
		sg := segScan{base: off, path: filepath.Join(p.dir, e.Name())}
		if err := sg.scan(dir); err != nil {
			return err
		}
		p.segs = append(p.segs, sg)
	}
	slices.SortFunc(p.segs, func(a, b segScan) int { return int(min(max(a.base-b.base, -1), 1)) })
	if b, err := os.ReadFile(filepath.Join(pdir, "snapshot.json")); err == nil {
		var snap snapshotFile
		if json.Unmarshal(b, &snap) == nil {
			p.snap = &snap
		}
	}
	p.checkOffsets()
	for i := range p.segs {
		sg := &p.segs[i]
		for _, b := range sg.bad {
			p.damage = append(p.damage, p.segDamage(i, b))
		}
		// A file shorter than kfake recorded at its last clean stop
		// lost its end, even if it now ends on a batch boundary.
		if p.snap == nil || p.compacted {
			continue
		}
		for _, ss := range p.snap.Segments {
			if ss.BaseOffset != sg.base || ss.Size <= int64(sg.size) {
				continue
			}
			if n := len(sg.bad); n > 0 && sg.bad[n-1].to == sg.size {
				d := &p.damage[len(p.damage)-1]
				d.Reason += fmt.Sprintf(", and the file is %d bytes shorter than when the broker last stopped", ss.Size-int64(sg.size))
				continue
			}
			d := p.segDamage(i, badSpan{span: span{sg.size, sg.size}})
			d.To = ss.Size
			d.Reason = fmt.Sprintf("are missing (the file is %d bytes shorter than when the broker last stopped)", ss.Size-int64(sg.size))
			p.damage = append(p.damage, d)
		}
	}
	return nil
}

// scan reads the segment file a window at a time.
func (sg *segScan) scan(dir string) error {
	f, err := os.Open(filepath.Join(dir, sg.path))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	sg.size = int(fi.Size())
	sg.good, sg.bad, err = scanSegment(newSegReader(f, sg.size))
	if err != nil {
		return fmt.Errorf("read %s: %w", sg.path, err)
	}
	return nil
}

// segDamage describes damaged range b of segment i: the offsets it held
// lie between the readable batches around it.
func (p *partScan) segDamage(i int, b badSpan) Damage {
	sg := &p.segs[i]
	d := Damage{File: sg.path, From: int64(b.from), To: int64(b.to), Size: int64(sg.size),
		Topic: p.topic, Partition: p.partition, First: -1, Last: -1, Entries: -1}
	d.Reason = "fail their checksum (CRC-32C)"
	if b.to == sg.size {
		if hb, ok := b.hdr, b.hdrOK; (ok && b.from+hb.size > sg.size) || sg.size-b.from < batchHeaderSize {
			d.Reason = "are a batch cut short (the file ends inside it)"
		}
	}
	// The first offset: after the readable batch before the range.
	d.First = sg.base
	for _, g := range sg.good {
		if g.pos < b.from {
			d.First = g.last + 1
		}
	}
	if i > 0 && d.First == sg.base {
		for j := i - 1; j >= 0; j-- {
			if g := p.segs[j].good; len(g) > 0 {
				d.First = g[len(g)-1].last + 1
				break
			}
		}
	}
	// The last: before the readable batch after it, else the next
	// segment's base, else the end kfake recorded, else what the damaged
	// batch's own header says.
	for _, g := range sg.good {
		if g.pos >= b.to {
			d.Last, d.Bounds = g.first-1, "between the readable batches around them"
			return d
		}
	}
	if i+1 < len(p.segs) {
		d.Last, d.Bounds = p.segs[i+1].base-1, "up to the next segment"
		return d
	}
	if p.snap != nil && p.snap.HighWatermark > d.First {
		d.Last, d.Bounds = p.snap.HighWatermark-1, "up to the end recorded at the last clean stop"
		return d
	}
	if hb, ok := b.hdr, b.hdrOK; ok && hb.first == d.First && hb.last >= hb.first {
		d.Last, d.Bounds = hb.last, "as the damaged batch's header says (unverified)"
	}
	return d
}

// checkDataDir refuses a damaged data directory. After an unclean stop
// (clean false) it first recovers what an interrupted write leaves, as
// Apache Kafka's log recovery does: when the only damage is torn tails
// (the last batch of a partition's last segment, or the last entry of
// groups.log or pids.log, cut short or unreadable up to the end of the
// file) and commits past their partition's end, it drops those tails,
// sets those commits to the end, and returns what it did. Damage anywhere
// else, or any damage after a clean stop (which synced every file), is no
// interrupted write: the start is refused.
func checkDataDir(dir string, clean bool) (*RepairReport, error) {
	s, err := scanDataDir(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded broker data dir %s: check: %w", dir, err)
	}
	d := append(s.damage(), s.commitsPastEnd()...)
	if len(d) == 0 {
		return nil, nil
	}
	if !clean && s.tornOnly() {
		rep, err := s.repair(dir)
		if err != nil {
			return rep, fmt.Errorf("embedded broker data dir %s: recover after an unclean stop: %w", dir, err)
		}
		return rep, nil
	}
	return nil, &DamagedError{Dir: dir, Damage: d, Clean: clean}
}

// tornOnly reports whether all of s's damage is torn tails: in each
// damaged partition only the end of its last segment, from its last
// readable batch, and no file shorter than at the last clean stop; in
// groups.log and pids.log only their end, from their last readable entry.
func (s *dirScan) tornOnly() bool {
	for _, p := range s.parts {
		if len(p.damage) == 0 {
			continue
		}
		if len(p.damage) != 1 || len(p.segs) == 0 {
			return false
		}
		last := &p.segs[len(p.segs)-1]
		for i := range p.segs {
			sg := &p.segs[i]
			if len(sg.fixed) > 0 || (sg != last && len(sg.bad) > 0) {
				return false
			}
		}
		if len(last.bad) != 1 || last.bad[0].to != last.size {
			return false
		}
		if p.snap != nil && !p.compacted {
			for _, ss := range p.snap.Segments {
				if ss.BaseOffset == last.base && ss.Size > int64(last.size) {
					return false // lost what the last clean stop had synced
				}
			}
		}
	}
	for _, l := range s.logs {
		if len(l.bad) > 1 || (len(l.bad) == 1 && l.bad[0].to != len(l.raw)) {
			return false
		}
	}
	return true
}

// commitsPastEnd are the commits past their partition's end: kfake would
// hand them to the group, which would skip the records produced up to
// them or, out of range, read the partition from its start again.
func (s *dirScan) commitsPastEnd() []Damage {
	var out []Damage
	c := s.commits()
	for _, g := range slices.Sorted(maps.Keys(c)) {
		for k, o := range c[g] {
			if s.damaged(k.topic, k.part) {
				continue // the damage says it
			}
			if end, known := s.end(k.topic, k.part); known && o > end {
				out = append(out, Damage{File: "groups.log", From: -1, To: -1, Entries: -1, First: -1, Last: -1,
					Reason: fmt.Sprintf("the commit of group %s for %s-%d is at offset %d, past the partition's end %d", g, k.topic, k.part, o, end)})
			}
		}
	}
	return out
}

// DroppedRecord is a record of a damaged batch that could still be read
// (its content is unverified: the batch failed its checksum).
type DroppedRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Headers   []kgo.RecordHeader
}

// Header is the value of the record's header key, if it has one.
func (r *DroppedRecord) Header(key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// readDamagedRecords reads what records it can from a damaged range of a
// segment: the batches whose headers still parse, decompressed if they
// can be, each record until one fails to parse.
// It reads one batch at a time.
func readDamagedRecords(topic string, partition int32, r *segReader, b span) []DroppedRecord {
	var out []DroppedRecord
	dec := kgo.DefaultDecompressor()
	for pos := b.from; pos < b.to; {
		hb, ok := batchHeaderAt(r, pos)
		if !ok {
			break
		}
		n := int(int32(binary.BigEndian.Uint32(r.at(pos, batchHeaderSize)[57:])))
		end := min(pos+hb.size, b.to)
		recs := make([]byte, max(end-pos-batchHeaderSize, 0))
		if _, err := r.r.ReadAt(recs, int64(pos+batchHeaderSize)); err != nil {
			break
		}
		if codec := hb.attrs & 0x07; codec != 0 {
			d, err := dec.Decompress(recs, kgo.CompressionCodecType(codec))
			if err != nil {
				pos += hb.size
				continue
			}
			recs = d
		}
		for i := 0; i < n && len(recs) > 0; i++ {
			length, used := binary.Varint(recs)
			if used <= 0 || length < 0 || int(length) > len(recs)-used {
				break
			}
			var r kmsg.Record
			if err := r.ReadFrom(recs[:used+int(length)]); err != nil {
				break
			}
			dr := DroppedRecord{Topic: topic, Partition: partition, Offset: hb.first + int64(r.OffsetDelta), Key: r.Key}
			for _, h := range r.Headers {
				dr.Headers = append(dr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			out = append(out, dr)
			recs = recs[used+int(length):]
		}
		pos += hb.size
	}
	return out
}

func (s *dirScan) damaged(topic string, part int32) bool {
	for _, p := range s.parts {
		if p.topic == topic && p.partition == part {
			return len(p.damage) > 0
		}
	}
	return false
}

// checkOffsets finds readable batches whose base offset (the first 8
// bytes, which the batch's CRC-32C does not cover) contradicts the
// offsets around them: a batch that does not start where its predecessor
// ended (or, first in its segment, at the offset the file is named after)
// while the next batch (or, for the last, the end recorded at the last
// clean stop) starts where it would end if it did. A gap the batches
// after it agree with is a gap (what a repair leaves, or compaction, whose
// topics are not checked). Such a batch's records are intact: its base
// offset is restored to the one the sequence gives, and the damage says
// so.
func (p *partScan) checkOffsets() {
	if p.compacted {
		return
	}
	expect := int64(-1)
	for i := range p.segs {
		sg := &p.segs[i]
		expect = sg.base
		for j := range sg.good {
			b := &sg.good[j]
			for _, bad := range sg.bad {
				if bad.from < b.pos && (j == 0 || bad.from > sg.good[j-1].pos) {
					expect = -1 // a damaged range before it: its offsets are unknown
				}
			}
			if expect >= 0 && b.first != expect && p.nextFirst(i, j) == expect+b.last-b.first+1 {
				delta := b.last - b.first
				if sg.fixed == nil {
					sg.fixed = map[int]int64{}
				}
				sg.fixed[b.pos] = expect
				p.damage = append(p.damage, Damage{File: sg.path, From: int64(b.pos), To: int64(b.pos + 8), Size: int64(sg.size),
					Reason: fmt.Sprintf("hold the base offset %d where the batches around say %d (the base offset is not covered by the batch's checksum)", b.first, expect),
					Topic:  p.topic, Partition: p.partition, First: expect, Last: expect + delta, Entries: -1,
					Bounds: "intact: the repair restores the base offset and keeps them"})
				b.first, b.last = expect, expect+delta
			}
			expect = b.last + 1
		}
	}
}

// nextFirst is the base offset of the readable batch after batch j of
// segment i, else the end recorded at the last clean stop, else -1.
func (p *partScan) nextFirst(i, j int) int64 {
	if j+1 < len(p.segs[i].good) {
		return p.segs[i].good[j+1].first
	}
	for k := i + 1; k < len(p.segs); k++ {
		if g := p.segs[k].good; len(g) > 0 {
			return g[0].first
		}
	}
	if p.snap != nil {
		return p.snap.HighWatermark
	}
	return -1
}

// logRecovery logs at ERROR, a line each, what checkDataDir dropped after
// an unclean stop, and counts each in ddnn_broker_storage_errors_total
// {kind="recovery"}.
func logRecovery(log *slog.Logger, m *storageMetrics, rep *RepairReport) {
	for _, d := range rep.Damage {
		m.errors.WithLabelValues(storageRecovery).Inc()
		attrs := []any{"data_dir", rep.Dir, "file", d.File, "bytes", fmt.Sprintf("%d-%d of %d", d.From, d.To, d.Size), "reason", d.Reason}
		if d.Topic != "" {
			attrs = append(attrs, "topic", d.Topic, "partition", d.Partition, "first_offset", d.First)
			if d.Last >= d.First {
				attrs = append(attrs, "last_offset", d.Last, "records", d.Last-d.First+1, "bounds", d.Bounds)
			}
			var ids []string
			for _, r := range rep.Records {
				if r.Topic == d.Topic && r.Partition == d.Partition && r.Offset >= d.First && (d.Last < d.First || r.Offset <= d.Last) {
					id, ok := r.Header(wire.HeaderID)
					if !ok {
						id = string(r.Key)
					}
					ids = append(ids, id)
				}
			}
			attrs = append(attrs, "readable_ids", strings.Join(ids, ","))
		}
		log.Error("embedded broker recovered its data dir after an unclean stop: dropped a torn tail (a write the stop cut short)", attrs...)
	}
	for _, u := range rep.Unprocessed {
		log.Error("embedded broker recovered its data dir after an unclean stop: records lost", "data_dir", rep.Dir,
			"group", u.Group, "topic", u.Topic, "partition", u.Partition, "committed", u.Committed,
			"first_offset", u.First, "last_offset", u.Last, "records", u.Last-u.First+1)
	}
	for _, c := range rep.Commits {
		m.errors.WithLabelValues(storageRecovery).Inc()
		log.Error("embedded broker recovered its data dir after an unclean stop: set a commit past its partition's end to the end", "data_dir", rep.Dir,
			"group", c.Group, "topic", c.Topic, "partition", c.Partition, "old_offset", c.Old, "new_offset", c.New)
	}
	for _, e := range rep.LostEntries {
		attrs := []any{"data_dir", rep.Dir, "file", e.File, "reads", e.Reads}
		if e.Topic != "" {
			attrs = append(attrs, "group", e.Group, "topic", e.Topic, "partition", e.Partition, "kept_commit", e.Kept)
		}
		log.Error("embedded broker recovered its data dir after an unclean stop: dropped a log entry", attrs...)
	}
}
