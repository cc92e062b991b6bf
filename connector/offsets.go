package connector

import (
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrRevoked is returned (wrapped) by Offsets.Done for a record of a
// partition that was revoked after the record was handed out. Callers can
// ignore it quietly: the record will be redelivered to whoever owns the
// partition now.
var ErrRevoked = errors.New("partition revoked")

// errNotPending is wrapped by Offsets.Done when the record is not pending:
// never added, already done, or of a partition that was never assigned.
var errNotPending = errors.New("record not pending")

// errOrder is wrapped by Offsets.Add for a negative offset or one that is not
// after the last offset added for the partition.
var errOrder = errors.New("offset out of order")

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// tpString formats tp for error messages as topic[partition].
func tpString(tp TopicPartition) string {
	return fmt.Sprintf("%s[%d]", tp.Topic, tp.Partition)
}

// Offsets tracks, per topic partition, the records handed out for
// processing and which of them are done, and computes the offset that may be
// committed: one past the last record of the longest done prefix, with that
// record's leader epoch (so that the broker fences a commit from a stale
// leader's log). It is safe for concurrent use.
//
// Offsets of a partition are the offsets passed to Add, in order; gaps
// between them (compacted topics, transaction markers) are not records. The
// done prefix is the longest prefix of those offsets whose records are all
// done, so with offsets 10, 12, 15 added and 10 and 15 done the commit point
// is 11, and once 12 is done it is 16.
type Offsets struct {
	mu      sync.Mutex
	parts   map[TopicPartition]*partOffsets
	pending int // records added and not done, over all live partitions
	window  int // records added and not yet behind a commit point

	// lastTP and lastP cache the last partition looked up: records come
	// in runs of one partition. Entries are never deleted from parts, so
	// the cache can't go stale.
	lastTP TopicPartition
	lastP  *partOffsets
}

// part returns tp's state, nil if tp was never added. o.mu must be held.
func (o *Offsets) part(tp TopicPartition) *partOffsets {
	if o.lastP != nil && tp == o.lastTP {
		return o.lastP
	}
	p := o.parts[tp]
	if p != nil {
		o.lastTP, o.lastP = tp, p
	}
	return p
}

// partOffsets is one partition's state. The pending window is
// ents[head:]: offsets in increasing order, the first one not done (when the
// window is not empty). Entries before head were popped and are garbage
// until the slice is reset or compacted.
type partOffsets struct {
	ents    []offsetEntry
	head    int
	pending int // entries in the window not done

	last        int64 // last offset added in this generation
	commit      int64 // commit point (next offset to consume); -1: none yet
	commitEpoch int32 // leader epoch of the record before commit
	marked      int64 // highest offset passed to MarkCommitted; -1: none
	revoked     bool  // revoked and not re-added since

	// genStart is the first offset added since the partition was (re)added;
	// staleBelow is one past the last offset added in any earlier, revoked
	// generation (0 if none). A Done below both can only be a late Done of
	// a revoked generation.
	genStart   int64
	staleBelow int64
}

type offsetEntry struct {
	off   int64
	epoch int32 // the record's leader epoch
	done  bool
}

// NewOffsets returns an empty tracker.
func NewOffsets() *Offsets {
	return &Offsets{parts: make(map[TopicPartition]*partOffsets)}
}

// Add records that offset, of a record with leader epoch epoch, was fetched
// and handed out. Offsets must be added
// in increasing order per partition (gaps are allowed: compacted topics and
// transaction markers skip offsets); adding an offset <= the last added one for
// that partition returns an error naming both. Negative offsets are refused
// too.
//
// Adding to a partition that was revoked starts tracking afresh from offset
// (the partition was re-assigned), whatever was added before the revocation:
// the new generation's commit point, committed mark and ordering start over.
func (o *Offsets) Add(tp TopicPartition, offset int64, epoch int32) error {
	if offset < 0 {
		return fmt.Errorf("connector: offsets: add %s offset %d: %w: negative", tpString(tp), offset, errOrder)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.part(tp)
	switch {
	case p == nil:
		p = &partOffsets{commit: -1, marked: -1, genStart: offset}
		o.parts[tp] = p
	case p.revoked:
		*p = partOffsets{
			ents:       p.ents[:0],
			commit:     -1,
			marked:     -1,
			genStart:   offset,
			staleBelow: max(p.staleBelow, p.last+1),
		}
	case offset <= p.last:
		return fmt.Errorf("connector: offsets: add %s offset %d: %w: last added offset is %d",
			tpString(tp), offset, errOrder, p.last)
	}
	p.last = offset
	if p.head > 0 && len(p.ents) == cap(p.ents) && p.head >= len(p.ents)/2 {
		// Full and at least half garbage: slide the window down instead
		// of growing. The copy moves at most head entries, each popped
		// since the last reset, so Add stays amortized O(1).
		n := copy(p.ents, p.ents[p.head:])
		p.ents = p.ents[:n]
		p.head = 0
	}
	p.ents = append(p.ents, offsetEntry{off: offset, epoch: epoch})
	p.pending++
	o.pending++
	o.window++
	return nil
}

// Done marks a handed-out record as finished. Marking an offset that was never
// added (or already done, or belonging to a revoked partition) returns an
// error; callers log it, they don't crash. For revoked partitions the error
// wraps ErrRevoked (test with errors.Is) so callers can ignore it quietly.
//
// There are no generations in the API, so once a revoked partition was
// re-added, a late Done from the old generation cannot always be told from
// one of the new generation: below the new generation's first offset it
// still yields ErrRevoked; at or above it, it marks the re-added record of
// the same offset done if that is pending (harmless: the record was
// processed, which is all Done claims) and otherwise is an ordinary error.
func (o *Offsets) Done(tp TopicPartition, offset int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.part(tp)
	switch {
	case p == nil:
		return fmt.Errorf("connector: offsets: done %s offset %d: %w: partition not assigned", tpString(tp), offset, errNotPending)
	case p.revoked:
		return fmt.Errorf("connector: offsets: done %s offset %d: %w", tpString(tp), offset, ErrRevoked)
	case offset >= 0 && offset < p.genStart && offset < p.staleBelow:
		return fmt.Errorf("connector: offsets: done %s offset %d: %w (partition re-assigned from offset %d)",
			tpString(tp), offset, ErrRevoked, p.genStart)
	}
	win := p.ents[p.head:]
	i, found := search(win, offset)
	if !found {
		why := "never added"
		if offset < p.commit {
			why = "already done or never added"
		}
		return fmt.Errorf("connector: offsets: done %s offset %d: %w: %s", tpString(tp), offset, errNotPending, why)
	}
	if win[i].done {
		return fmt.Errorf("connector: offsets: done %s offset %d: %w: already done", tpString(tp), offset, errNotPending)
	}
	win[i].done = true
	p.pending--
	o.pending--
	if i == 0 {
		o.window -= p.pop()
	}
	return nil
}

// search returns the index of offset in win, whose offsets are strictly
// increasing, or where it would be and false. Since offsets increase by at
// least one per entry, offset can only be at index offset-win[0].off or
// before; without gaps it is exactly there, which is checked first.
func search(win []offsetEntry, offset int64) (int, bool) {
	if len(win) == 0 || offset < win[0].off {
		return 0, false
	}
	hi := len(win)
	if d := offset - win[0].off; d < int64(hi) {
		if win[d].off == offset {
			return int(d), true
		}
		hi = int(d)
	}
	lo := 0 // win[lo-1].off < offset <= win[hi].off, with imaginary ends
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if win[mid].off < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(win) && win[lo].off == offset
}

// pop drops the done entries at the head of the window, advances the
// commit point past the last of them (taking its epoch) and returns how
// many it dropped.
func (p *partOffsets) pop() int {
	from := p.head
	for p.head < len(p.ents) && p.ents[p.head].done {
		p.commit, p.commitEpoch = p.ents[p.head].off+1, p.ents[p.head].epoch
		p.head++
	}
	n := p.head - from
	if p.head == len(p.ents) {
		// Window empty: reuse the slice from the start.
		p.ents = p.ents[:0]
		p.head = 0
	}
	return n
}

// Committable returns, for each partition whose commit point advanced since
// the last MarkCommitted, the offset to commit (Kafka semantics: the NEXT
// offset to consume, i.e. last done-prefix offset + 1) with the leader
// epoch of that last done record. It returns nil when no partition
// advanced. Revoked partitions are never returned.
func (o *Offsets) Committable() map[TopicPartition]kgo.EpochOffset {
	o.mu.Lock()
	defer o.mu.Unlock()
	var c map[TopicPartition]kgo.EpochOffset
	for tp, p := range o.parts {
		if p.revoked || p.commit <= p.marked {
			continue
		}
		if c == nil {
			c = make(map[TopicPartition]kgo.EpochOffset)
		}
		c[tp] = kgo.EpochOffset{Epoch: p.commitEpoch, Offset: p.commit}
	}
	return c
}

// MarkCommitted records that these offsets were committed, so Committable
// stops returning them until they advance again. Offsets older than what is
// already marked are ignored, and so are partitions that are not tracked or
// were revoked (a commit racing a rebalance).
func (o *Offsets) MarkCommitted(c map[TopicPartition]kgo.EpochOffset) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for tp, eo := range c {
		if p := o.parts[tp]; p != nil && !p.revoked && eo.Offset > p.marked {
			p.marked = eo.Offset
		}
	}
}

// Revoke forgets partitions (on rebalance); their in-flight records' later
// Done calls return ErrRevoked. Returns how many records were still pending.
// Unknown and already revoked partitions count 0.
func (o *Offsets) Revoke(tps ...TopicPartition) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, tp := range tps {
		p := o.parts[tp]
		if p == nil || p.revoked {
			continue
		}
		n += p.pending
		o.pending -= p.pending
		o.window -= len(p.ents) - p.head
		// Keep only what a later Done or re-Add needs; let the window go.
		*p = partOffsets{
			last:       p.last,
			commit:     -1,
			marked:     -1,
			revoked:    true,
			genStart:   p.genStart,
			staleBelow: p.staleBelow,
		}
	}
	return n
}

// Pending returns how many added records are not yet done, in total.
func (o *Offsets) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending
}

// Window returns how many added records are not yet behind their
// partition's commit point: the pending ones and the done ones after an
// unfinished one. It is what the tracker holds in memory.
func (o *Offsets) Window() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.window
}

// Windows returns, for each live partition with records in its window,
// how many (Window is their sum).
func (o *Offsets) Windows() map[TopicPartition]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := make(map[TopicPartition]int)
	for tp, p := range o.parts {
		if n := len(p.ents) - p.head; !p.revoked && n > 0 {
			w[tp] = n
		}
	}
	return w
}

// PendingIn returns how many records of tp are not done (0 for unknown tp).
func (o *Offsets) PendingIn(tp TopicPartition) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p := o.parts[tp]; p != nil {
		return p.pending
	}
	return 0
}
