package kafka

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// RepairReport is what RepairDataDir found and did.
type RepairReport struct {
	Dir string
	// Damage is every damaged range dropped.
	Damage []Damage
	// Records are the dropped records that could still be read.
	Records []DroppedRecord
	// Unprocessed are, per damaged range and consumer group of its
	// partition, the dropped records at or after the group's commit:
	// the group had not processed them, and never will.
	Unprocessed []Unprocessed
	// Commits are the committed offsets the repair changed.
	Commits []CommitChange
	// LostEntries are the groups.log and pids.log entries dropped, as
	// far as their damaged bytes can be read.
	LostEntries []LostEntry
}

// Unprocessed counts dropped records a group had not yet processed.
type Unprocessed struct {
	Group, Topic string
	Partition    int32
	Committed    int64 // -1: the group had no commit for the partition
	First, Last  int64 // the dropped records at or after the commit
}

// CommitChange is a committed offset the repair changed.
type CommitChange struct {
	Group, Topic string
	Partition    int32
	Old, New     int64
	Reason       string
}

// LostEntry is a dropped entry of groups.log or pids.log.
type LostEntry struct {
	File string
	// What its bytes still say (unverified), or that they are unreadable.
	Reads string
	// For a commit: whether another entry still holds the group's
	// commit for that partition, and at which offset (-1: none, the group
	// reads the partition from its start again).
	Group, Topic string
	Partition    int32
	Kept         int64
}

// RepairDataDir drops the damaged bytes of the stopped broker's data
// directory dir, keeping every readable batch and entry after them, and
// leaves it consistent: no committed offset past its partition's end
// (such commits are set to the end). It reports what it dropped; with
// nothing damaged and nothing inconsistent it changes nothing.
func RepairDataDir(dir string) (*RepairReport, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("embedded broker data dir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("embedded broker data dir %s is not a directory", dir)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	s, err := scanDataDir(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded broker data dir %s: %w", dir, err)
	}
	return s.repair(dir)
}

// repair drops the damage s found in dir (locked) and sets the commits
// past their partition's end to the end.
func (s *dirScan) repair(dir string) (*RepairReport, error) {
	rep := &RepairReport{Dir: dir, Damage: s.damage()}
	commits := s.commits()

	for _, p := range s.parts {
		if len(p.damage) == 0 {
			continue
		}
		for i := range p.segs {
			sg := &p.segs[i]
			if len(sg.bad) == 0 && len(sg.fixed) == 0 {
				continue
			}
			recs, err := rewriteSegment(dir, p, sg)
			rep.Records = append(rep.Records, recs...)
			if err != nil {
				return rep, err
			}
		}
		// A snapshot describes the files as they were; kfake rebuilds
		// the partition from the segments without it.
		if err := os.Remove(filepath.Join(dir, p.dir, "snapshot.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return rep, err
		}
		p.snap = nil
		for _, d := range p.damage {
			if d.First < 0 || d.Last < d.First || d.restored() {
				continue
			}
			groups := commits.groupsOf(p.topic, p.partition)
			for _, g := range groups {
				c := commits.get(g, p.topic, p.partition)
				first := max(d.First, c)
				if c < 0 {
					first = d.First
				}
				if first <= d.Last {
					rep.Unprocessed = append(rep.Unprocessed, Unprocessed{Group: g, Topic: p.topic, Partition: p.partition, Committed: c, First: first, Last: d.Last})
				}
			}
			if len(groups) == 0 {
				rep.Unprocessed = append(rep.Unprocessed, Unprocessed{Topic: p.topic, Partition: p.partition, Committed: -1, First: d.First, Last: d.Last})
			}
		}
	}

	for _, l := range s.logs {
		var keep [][]byte
		for _, g := range l.good {
			keep = append(keep, l.raw[g.from+8:g.to]) // version and JSON
		}
		for _, b := range l.bad {
			le := lostEntry(l.name, l.raw, b)
			if le.Topic != "" {
				le.Kept = commits.get(le.Group, le.Topic, le.Partition)
			}
			rep.LostEntries = append(rep.LostEntries, le)
		}
		changed := len(l.bad) > 0
		if l.name == "groups.log" {
			for i, data := range keep {
				e, ok := parseCommit(data)
				if !ok {
					continue
				}
				end, known := s.end(e.Topic, e.Part)
				if !known || e.Offset <= end {
					continue
				}
				var m map[string]any
				d := json.NewDecoder(bytes.NewReader(data[2:]))
				d.UseNumber()
				if err := d.Decode(&m); err != nil {
					continue
				}
				if end == 0 {
					delete(m, "o") // kfake omits a zero offset
				} else {
					m["o"] = end
				}
				b, err := json.Marshal(m)
				if err != nil {
					return rep, err
				}
				keep[i] = append(binary.LittleEndian.AppendUint16(nil, 1), b...)
				changed = true
				if commits.get(e.Group, e.Topic, e.Part) == e.Offset {
					rep.Commits = append(rep.Commits, CommitChange{Group: e.Group, Topic: e.Topic, Partition: e.Part, Old: e.Offset, New: end,
						Reason: "past the partition's end"})
				}
			}
		}
		if !changed {
			continue
		}
		var out []byte
		for _, data := range keep {
			out = binary.LittleEndian.AppendUint32(out, uint32(len(data)))
			out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(data, crc32c))
			out = append(out, data...)
		}
		if err := replaceFile(filepath.Join(dir, l.name), out); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// rewriteSegment reads what records it can of sg's damaged ranges and
// writes sg's readable batches, unchanged, as its segment file, and their
// index entries (kfake's .idx: per batch, its leader epoch, the largest
// timestamp so far and whether it is transactional). It reads the file
// again a window at a time, as the scan did.
func rewriteSegment(dir string, p *partScan, sg *segScan) ([]DroppedRecord, error) {
	path := filepath.Join(dir, sg.path)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", path, err)
	}
	defer f.Close()
	r := newSegReader(f, sg.size)
	var recs []DroppedRecord
	for _, b := range sg.bad {
		recs = append(recs, readDamagedRecords(p.topic, p.partition, r, b.span)...)
	}
	var idx []byte
	var maxTS int64 = -1
	err = replaceFileFrom(path, func(w io.Writer) error {
		for _, b := range sg.good {
			if first, ok := sg.fixed[b.pos]; ok {
				if _, err := w.Write(binary.BigEndian.AppendUint64(nil, uint64(first))); err != nil {
					return err
				}
				if err := r.copyTo(w, b.pos+8, b.pos+b.size); err != nil {
					return err
				}
			} else if err := r.copyTo(w, b.pos, b.pos+b.size); err != nil {
				return err
			}
			maxTS = max(maxTS, b.maxTS)
			var e [15]byte
			e[0] = 1
			binary.LittleEndian.PutUint32(e[2:6], uint32(b.epoch))
			binary.LittleEndian.PutUint64(e[6:14], uint64(maxTS))
			if b.attrs&0x10 != 0 && b.attrs&0x20 == 0 {
				e[14] = 1
			}
			e[1] = byte(crc32.Checksum(e[2:], crc32c))
			idx = append(idx, e[:]...)
		}
		return nil
	})
	if err != nil {
		return recs, err
	}
	return recs, replaceFile(path[:len(path)-len(".dat")]+".idx", idx)
}

// replaceFile replaces path with an owner-only file holding data, synced
// before the rename.
func replaceFile(path string, data []byte) error {
	tmp := path + ".repair.tmp"
	os.Remove(tmp)
	if err := writeFileSync(tmp, data); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("repair %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("repair %s: %w", path, err)
	}
	return nil
}

// replaceFileFrom replaces path with an owner-only file holding what
// write writes, synced before the rename.
func replaceFileFrom(path string, write func(io.Writer) error) error {
	tmp := path + ".repair.tmp"
	os.Remove(tmp)
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 64<<10)
		err = write(w)
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = f.Sync()
		}
		return errors.Join(err, f.Close())
	}()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("repair %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("repair %s: %w", path, err)
	}
	return nil
}

// commitEntry is a groups.log commit or delete entry.
type commitEntry struct {
	Type   string `json:"type"`
	Group  string `json:"g"`
	Topic  string `json:"t"`
	Part   int32  `json:"p"`
	Offset int64  `json:"o"`
}

// parseCommit reads a groups.log entry (version and JSON) as a commit.
func parseCommit(data []byte) (commitEntry, bool) {
	var e commitEntry
	if len(data) < 2 || json.Unmarshal(data[2:], &e) != nil || e.Type != "commit" {
		return e, false
	}
	return e, true
}

type tp struct {
	topic string
	part  int32
}

// commitSet is the committed offsets groups.log's readable entries give,
// the latest per group and partition, as kfake replays them.
type commitSet map[string]map[tp]int64

func (c commitSet) get(group, topic string, part int32) int64 {
	if o, ok := c[group][tp{topic, part}]; ok {
		return o
	}
	return -1
}

func (c commitSet) groupsOf(topic string, part int32) []string {
	var gs []string
	for g, m := range c {
		if _, ok := m[tp{topic, part}]; ok {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	return gs
}

func (s *dirScan) commits() commitSet {
	c := commitSet{}
	for _, l := range s.logs {
		if l.name != "groups.log" {
			continue
		}
		for _, g := range l.good {
			var e commitEntry
			if json.Unmarshal(l.raw[g.from+logEntryHeader:g.to], &e) != nil {
				continue
			}
			switch e.Type {
			case "commit":
				if c[e.Group] == nil {
					c[e.Group] = map[tp]int64{}
				}
				c[e.Group][tp{e.Topic, e.Part}] = e.Offset
			case "delete":
				delete(c[e.Group], tp{e.Topic, e.Part})
			}
		}
	}
	return c
}

// end is the offset after the partition's last record as kfake will load
// it, and whether the partition is known.
func (s *dirScan) end(topic string, part int32) (int64, bool) {
	for _, p := range s.parts {
		if p.topic != topic || p.partition != part {
			continue
		}
		if e, ok := p.end(); ok {
			return e, true
		}
		if p.snap != nil {
			return p.snap.HighWatermark, true
		}
		return 0, true
	}
	return 0, false
}

var commitFields = regexp.MustCompile(`"g":"([^"]*)","t":"([^"]*)","p":([0-9]+)`)

// lostEntry reads what it can of a damaged log range.
func lostEntry(name string, raw []byte, b span) LostEntry {
	le := LostEntry{File: name, Reads: "unreadable", Kept: -1}
	data := raw[b.from:b.to]
	if len(data) > logEntryHeader {
		data = data[logEntryHeader:]
	}
	if name != "groups.log" {
		return le
	}
	var e commitEntry
	if json.Unmarshal(data, &e) == nil && e.Type != "" {
		le.Reads = fmt.Sprintf("%s of group %s for %s-%d at offset %d (unverified)", e.Type, e.Group, e.Topic, e.Part, e.Offset)
		if e.Type == "commit" {
			le.Group, le.Topic, le.Partition = e.Group, e.Topic, e.Part
		}
		return le
	}
	if m := commitFields.FindSubmatch(data); m != nil {
		p, _ := strconv.ParseInt(string(m[3]), 10, 32)
		le.Group, le.Topic, le.Partition = string(m[1]), string(m[2]), int32(p)
		le.Reads = fmt.Sprintf("an entry of group %s for %s-%d (unverified; the rest unreadable)", le.Group, le.Topic, le.Partition)
	}
	return le
}

// Write prints the report; idHeader names the record header holding a
// message's id (the key is used when a record has none).
func (r *RepairReport) Write(w io.Writer, idHeader string) {
	if len(r.Damage) == 0 && len(r.Commits) == 0 {
		fmt.Fprintf(w, "%s: nothing damaged, nothing changed\n", r.Dir)
		return
	}
	fmt.Fprintf(w, "repaired %s\n", r.Dir)
	for _, d := range r.Damage {
		if d.restored() {
			fmt.Fprintf(w, "restored %s\n", d)
		} else {
			fmt.Fprintf(w, "dropped %s\n", d)
		}
	}
	if len(r.Records) > 0 {
		fmt.Fprintf(w, "%d dropped records could still be read (unverified):\n", len(r.Records))
		for _, rec := range r.Records {
			id, ok := rec.Header(idHeader)
			if !ok {
				id = string(rec.Key)
			}
			fmt.Fprintf(w, "  %s-%d offset %d id %q\n", rec.Topic, rec.Partition, rec.Offset, id)
		}
	}
	for _, u := range r.Unprocessed {
		n := u.Last - u.First + 1
		switch {
		case u.Group == "":
			fmt.Fprintf(w, "lost: %d records of %s-%d (offsets %d-%d); no group had committed on the partition\n", n, u.Topic, u.Partition, u.First, u.Last)
		case u.Committed < 0:
			fmt.Fprintf(w, "lost: %d records of %s-%d (offsets %d-%d) group %s had not processed (no commit)\n", n, u.Topic, u.Partition, u.First, u.Last, u.Group)
		default:
			fmt.Fprintf(w, "lost: %d records of %s-%d (offsets %d-%d) group %s had not processed (committed %d)\n", n, u.Topic, u.Partition, u.First, u.Last, u.Group, u.Committed)
		}
	}
	for _, c := range r.Commits {
		fmt.Fprintf(w, "commit of group %s for %s-%d set from %d to %d (%s)\n", c.Group, c.Topic, c.Partition, c.Old, c.New, c.Reason)
	}
	for _, e := range r.LostEntries {
		switch {
		case e.Topic == "":
			fmt.Fprintf(w, "dropped an entry of %s: %s\n", e.File, e.Reads)
		case e.Kept >= 0:
			fmt.Fprintf(w, "dropped an entry of %s: %s; another entry keeps the commit at %d\n", e.File, e.Reads, e.Kept)
		default:
			fmt.Fprintf(w, "dropped an entry of %s: %s; the group has no commit for the partition now and reads it from its start again (duplicates)\n", e.File, e.Reads)
		}
	}
}

func (d Damage) restored() bool { return strings.HasPrefix(d.Bounds, "intact") }
