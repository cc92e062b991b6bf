package connector

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	tpA0 = TopicPartition{Topic: "tier-a", Partition: 0}
	tpA1 = TopicPartition{Topic: "tier-a", Partition: 1}
	tpB0 = TopicPartition{Topic: "tier-b", Partition: 0}
)

// step is one line of an Offsets script. Build steps with the helpers below.
type step struct {
	op   string // add, done, commit, mark, revoke, pending, pendingIn
	tp   TopicPartition
	tps  []TopicPartition
	off  int64
	err  error                    // add, done: want errors.Is(err, this); nil wants success
	msg  []string                 // add, done: substrings the error must contain
	want map[TopicPartition]int64 // commit: Committable result; mark: the offsets to mark
	n    int                      // revoke, pending, pendingIn: wanted count
}

// steps is one step op per offset of tp.
func steps(op string, tp TopicPartition, offs []int64) []step {
	s := make([]step, len(offs))
	for i, off := range offs {
		s[i] = step{op: op, tp: tp, off: off}
	}
	return s
}

func add(tp TopicPartition, offs ...int64) []step { return steps("add", tp, offs) }

func addErr(tp TopicPartition, off int64, err error, msg ...string) step {
	return step{op: "add", tp: tp, off: off, err: err, msg: msg}
}

func done(tp TopicPartition, offs ...int64) []step { return steps("done", tp, offs) }

func doneErr(tp TopicPartition, off int64, err error, msg ...string) step {
	return step{op: "done", tp: tp, off: off, err: err, msg: msg}
}

// commit wants Committable to return exactly want (nil or empty: nothing).
func commit(want map[TopicPartition]int64) step { return step{op: "commit", want: want} }

func mark(c map[TopicPartition]int64) step { return step{op: "mark", want: c} }

func revoke(wantPending int, tps ...TopicPartition) step {
	return step{op: "revoke", tps: tps, n: wantPending}
}

func pending(n int) step { return step{op: "pending", n: n} }

func pendingIn(tp TopicPartition, n int) step { return step{op: "pendingIn", tp: tp, n: n} }

// script flattens steps and step slices into one script.
func script(parts ...any) []step {
	var s []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			s = append(s, p)
		case []step:
			s = append(s, p...)
		default:
			panic(fmt.Sprintf("script: %T", p))
		}
	}
	return s
}

type m = map[TopicPartition]int64

func TestOffsetsScript(t *testing.T) {
	cases := []struct {
		name  string
		steps []step
	}{
		{"empty", script(
			commit(nil), pending(0), pendingIn(tpA0, 0),
		)},
		{"in order", script(
			add(tpA0, 0, 1, 2),
			commit(nil),
			done(tpA0, 0), commit(m{tpA0: 1}),
			done(tpA0, 1), commit(m{tpA0: 2}),
			done(tpA0, 2), commit(m{tpA0: 3}),
			pending(0),
		)},
		{"out of order", script(
			add(tpA0, 1, 2, 3),
			done(tpA0, 3), commit(nil),
			done(tpA0, 2), commit(nil), pendingIn(tpA0, 1),
			done(tpA0, 1), commit(m{tpA0: 4}), pendingIn(tpA0, 0),
		)},
		{"out of order middle first", script(
			add(tpA0, 5, 6, 7, 8),
			done(tpA0, 7, 5), commit(m{tpA0: 6}),
			done(tpA0, 6), commit(m{tpA0: 8}),
			done(tpA0, 8), commit(m{tpA0: 9}),
		)},
		{"gaps", script(
			add(tpA0, 10, 12, 15),
			done(tpA0, 15), commit(nil),
			done(tpA0, 10), commit(m{tpA0: 11}),
			done(tpA0, 12), commit(m{tpA0: 16}),
		)},
		{"gap offsets are not records", script(
			add(tpA0, 10, 12),
			doneErr(tpA0, 11, errNotPending, "tier-a[0]", "offset 11", "never added"),
			doneErr(tpA0, 13, errNotPending, "never added"),
			doneErr(tpA0, 9, errNotPending),
			pendingIn(tpA0, 2),
		)},
		{"first offset not zero", script(
			add(tpA0, 1000),
			commit(nil),
			done(tpA0, 1000), commit(m{tpA0: 1001}),
		)},
		{"only advanced partitions", script(
			add(tpA0, 0, 1), add(tpA1, 0, 1),
			done(tpA0, 0), done(tpA1, 0),
			commit(m{tpA0: 1, tpA1: 1}),
			mark(m{tpA0: 1, tpA1: 1}),
			commit(nil),
			done(tpA1, 1),
			commit(m{tpA1: 2}),
			commit(m{tpA1: 2}), // unchanged until marked
			mark(m{tpA1: 2}),
			commit(nil),
			done(tpA0, 1),
			commit(m{tpA0: 2}),
		)},
		{"mark partial", script(
			add(tpA0, 0, 1, 2),
			done(tpA0, 0, 1), commit(m{tpA0: 2}),
			mark(m{tpA0: 1}), // committed an earlier Committable result
			commit(m{tpA0: 2}),
			mark(m{tpA0: 2}), commit(nil),
		)},
		{"mark older ignored", script(
			add(tpA0, 0, 1, 2, 3),
			done(tpA0, 0, 1, 2),
			mark(m{tpA0: 3}), commit(nil),
			mark(m{tpA0: 1}), commit(nil),
			done(tpA0, 3), commit(m{tpA0: 4}),
			mark(m{tpA0: 2}), commit(m{tpA0: 4}),
		)},
		{"mark ahead of commit point", script(
			add(tpA0, 0, 1, 2),
			mark(m{tpA0: 2}),
			done(tpA0, 0), commit(nil),
			done(tpA0, 1), commit(nil),
			done(tpA0, 2), commit(m{tpA0: 3}),
		)},
		{"mark unknown partition ignored", script(
			mark(m{tpB0: 7}),
			add(tpB0, 3), done(tpB0, 3), commit(m{tpB0: 4}),
		)},
		{"partitions and topics independent", script(
			add(tpA0, 0, 1), add(tpA1, 0, 1), add(tpB0, 0, 1),
			done(tpA1, 1), done(tpB0, 0),
			commit(m{tpB0: 1}),
			done(tpA0, 0),
			commit(m{tpA0: 1, tpB0: 1}),
			done(tpA1, 0),
			commit(m{tpA0: 1, tpA1: 2, tpB0: 1}),
			pending(2), pendingIn(tpA0, 1), pendingIn(tpA1, 0), pendingIn(tpB0, 1),
			doneErr(tpB0, 5, errNotPending),
			// Same offsets across partitions don't collide.
			done(tpB0, 1), doneErr(tpB0, 1, errNotPending), done(tpA0, 1),
			commit(m{tpA0: 2, tpA1: 2, tpB0: 2}),
		)},
		{"done unknown partition", script(
			doneErr(tpA0, 0, errNotPending, "tier-a[0]", "not assigned"),
			add(tpA0, 0),
			doneErr(tpA1, 0, errNotPending, "tier-a[1]"),
		)},
		{"done unknown offset", script(
			add(tpA0, 4, 5),
			doneErr(tpA0, 6, errNotPending, "offset 6"),
			doneErr(tpA0, 3, errNotPending, "offset 3"),
			doneErr(tpA0, -1, errNotPending),
			pending(2), commit(nil),
		)},
		{"done twice pending", script(
			add(tpA0, 0, 1),
			done(tpA0, 1),
			doneErr(tpA0, 1, errNotPending, "already done"),
			pendingIn(tpA0, 1),
		)},
		{"done twice popped", script(
			add(tpA0, 0, 1),
			done(tpA0, 0),
			doneErr(tpA0, 0, errNotPending, "already done"),
			done(tpA0, 1),
			doneErr(tpA0, 1, errNotPending, "already done"),
			doneErr(tpA0, 0, errNotPending),
			commit(m{tpA0: 2}), pending(0),
		)},
		{"add not increasing", script(
			add(tpA0, 5),
			addErr(tpA0, 5, errOrder, "tier-a[0]", "offset 5", "last added offset is 5"),
			addErr(tpA0, 3, errOrder, "offset 3", "last added offset is 5"),
			add(tpA0, 6),
			done(tpA0, 5, 6),
			addErr(tpA0, 6, errOrder, "offset 6", "last added offset is 6"), // after all popped
			add(tpA0, 9),
			add(tpA1, 0), // other partitions unaffected
			pending(2),
		)},
		{"add negative", script(
			addErr(tpA0, -1, errOrder, "negative"),
			pending(0), commit(nil),
		)},
		{"revoke", script(
			add(tpA0, 0, 1, 2, 3), add(tpA1, 0, 1),
			done(tpA0, 0, 2), done(tpA1, 0),
			commit(m{tpA0: 1, tpA1: 1}),
			revoke(2, tpA0), // 1 and 3 pending
			pending(1), pendingIn(tpA0, 0), pendingIn(tpA1, 1),
			commit(m{tpA1: 1}),
			doneErr(tpA0, 1, ErrRevoked, "tier-a[0]"),
			doneErr(tpA0, 3, ErrRevoked),
			doneErr(tpA0, 2, ErrRevoked), // even when not pending
			mark(m{tpA0: 1}),             // commit racing the revoke: ignored
			commit(m{tpA1: 1}),
			revoke(0, tpA0),             // again
			revoke(1, tpA1, tpB0, tpA0), // unknown and revoked count 0
			pending(0), commit(nil),
			doneErr(tpA1, 1, ErrRevoked),
		)},
		{"revoke nothing pending", script(
			add(tpA0, 0), done(tpA0, 0),
			revoke(0, tpA0),
			commit(nil),
		)},
		{"re-add after revoke starts fresh", script(
			add(tpA0, 10, 11, 12, 13),
			done(tpA0, 10), mark(m{tpA0: 11}),
			done(tpA0, 12),
			revoke(2, tpA0),
			doneErr(tpA0, 11, ErrRevoked),
			// Re-assigned, consumption resumes at the committed offset 11:
			// lower than the last added, and not an ordering error.
			add(tpA0, 11, 12, 13),
			pendingIn(tpA0, 3), pending(3),
			commit(nil),
			done(tpA0, 11), commit(m{tpA0: 12}), // fresh mark: 12 > nothing marked
			done(tpA0, 13), done(tpA0, 12), commit(m{tpA0: 14}),
			addErr(tpA0, 13, errOrder),
		)},
		{"re-add from lower offset", script(
			add(tpA0, 50, 51), done(tpA0, 50),
			mark(m{tpA0: 51}),
			revoke(1, tpA0),
			add(tpA0, 20), // e.g. offset reset
			commit(nil),
			done(tpA0, 20), commit(m{tpA0: 21}),
			mark(m{tpA0: 21}), commit(nil),
		)},
		{"late done of old generation after re-add", script(
			add(tpA0, 5, 6, 7, 8),
			revoke(4, tpA0),
			add(tpA0, 7, 8),
			doneErr(tpA0, 5, ErrRevoked, "re-assigned from offset 7"), // below the new generation
			doneErr(tpA0, 6, ErrRevoked),
			done(tpA0, 8),                   // same offset re-added: ambiguous, taken as done
			doneErr(tpA0, 9, errNotPending), // never added in either generation
			doneErr(tpA0, 8, errNotPending), // second Done for 8
			pendingIn(tpA0, 1), commit(nil),
			done(tpA0, 7), commit(m{tpA0: 9}),
		)},
		{"re-add does not affect other partitions", script(
			add(tpA0, 0, 1), add(tpA1, 0, 1),
			done(tpA1, 0), mark(m{tpA1: 1}),
			revoke(2, tpA0),
			add(tpA0, 0),
			pending(2), pendingIn(tpA1, 1),
			commit(nil),
			done(tpA1, 1), commit(m{tpA1: 2}),
		)},
		{"pending counts", script(
			pending(0),
			add(tpA0, 0, 1, 2), add(tpB0, 7),
			pending(4), pendingIn(tpA0, 3), pendingIn(tpB0, 1), pendingIn(tpA1, 0),
			done(tpA0, 2), pending(3), pendingIn(tpA0, 2),
			doneErr(tpA0, 2, errNotPending), pending(3),
			done(tpA0, 0), pending(2), pendingIn(tpA0, 1),
			done(tpB0, 7), pending(1), pendingIn(tpB0, 0),
			done(tpA0, 1), pending(0), pendingIn(tpA0, 0),
		)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, NewOffsets(), tc.steps)
		})
	}
}

func runScript(t *testing.T, o *Offsets, steps []step) {
	t.Helper()
	for i, s := range steps {
		where := fmt.Sprintf("step %d (%s %s %d)", i, s.op, tpString(s.tp), s.off)
		switch s.op {
		case "add":
			checkErr(t, where, o.Add(s.tp, s.off, 0), s.err, s.msg)
		case "done":
			checkErr(t, where, o.Done(s.tp, s.off), s.err, s.msg)
		case "commit":
			if got := commitPoints(o.Committable()); !maps.Equal(got, s.want) {
				t.Fatalf("%s: Committable() = %v, want %v", where, got, s.want)
			}
		case "mark":
			o.MarkCommitted(atEpoch0(s.want))
		case "revoke":
			if got := o.Revoke(s.tps...); got != s.n {
				t.Fatalf("%s: Revoke(%v) = %d, want %d", where, s.tps, got, s.n)
			}
		case "pending":
			if got := o.Pending(); got != s.n {
				t.Fatalf("%s: Pending() = %d, want %d", where, got, s.n)
			}
		case "pendingIn":
			if got := o.PendingIn(s.tp); got != s.n {
				t.Fatalf("%s: PendingIn(%s) = %d, want %d", where, tpString(s.tp), got, s.n)
			}
		default:
			t.Fatalf("%s: unknown op", where)
		}
	}
}

func checkErr(t *testing.T, where string, err, want error, msg []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error: %v", where, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want one wrapping %q", where, err, want)
	}
	if want != ErrRevoked && errors.Is(err, ErrRevoked) {
		t.Fatalf("%s: error %v wraps ErrRevoked", where, err)
	}
	for _, sub := range msg {
		if !strings.Contains(err.Error(), sub) {
			t.Fatalf("%s: error %q does not mention %q", where, err, sub)
		}
	}
}

// refPart is the brute-force model of one partition for the property test.
type refPart struct {
	added  []int64 // this generation, in order
	isDone []bool
	marked int64   // -1: none
	left   []int64 // added, not done, in no particular order
}

// commitPoint is the reference commit point: with k the largest index such
// that added[0..k] are all done, added[k]+1; -1 when added[0] is not done (or
// nothing was added).
func (r *refPart) commitPoint() int64 {
	cp := int64(-1)
	for i, d := range r.isDone {
		if !d {
			break
		}
		cp = r.added[i] + 1
	}
	return cp
}

func (r *refPart) done(off int64) {
	for i, a := range r.added {
		if a == off {
			r.isDone[i] = true
			return
		}
	}
	panic("refPart: done of unknown offset")
}

// TestOffsetsProperty drives Offsets with random interleavings of Add, Done
// (random completion order), MarkCommitted and Revoke/re-Add over a few
// partitions and compares everything observable with a brute-force model
// after every step.
func TestOffsetsProperty(t *testing.T) {
	tps := []TopicPartition{tpA0, tpA1, tpB0, {Topic: "tier-c", Partition: 3}}
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xdd))
			o := NewOffsets()
			ref := make(map[TopicPartition]*refPart)
			next := make(map[TopicPartition]int64) // next offset to add
			nparts := 1 + rng.IntN(len(tps))
			maxWindow := 1 + rng.IntN(200) // in-flight limit per partition

			check := func(what string) {
				t.Helper()
				want := make(map[TopicPartition]int64)
				total := 0
				for tp, r := range ref {
					if cp := r.commitPoint(); cp > r.marked {
						want[tp] = cp
					}
					total += len(r.left)
					if got := o.PendingIn(tp); got != len(r.left) {
						t.Fatalf("after %s: PendingIn(%s) = %d, want %d", what, tpString(tp), got, len(r.left))
					}
				}
				if got := commitPoints(o.Committable()); !maps.Equal(got, want) {
					t.Fatalf("after %s: Committable() = %v, want %v", what, got, want)
				}
				if got := o.Pending(); got != total {
					t.Fatalf("after %s: Pending() = %d, want %d", what, got, total)
				}
			}

			for range 3000 {
				tp := tps[rng.IntN(nparts)]
				r := ref[tp]
				switch k := rng.IntN(100); {
				case k < 45 && (r == nil || len(r.left) < maxWindow): // add
					if r == nil {
						r = &refPart{marked: -1}
						ref[tp] = r
						next[tp] = rng.Int64N(1000)
					}
					off := next[tp]
					if err := o.Add(tp, off, 0); err != nil {
						t.Fatalf("Add(%s, %d): %v", tpString(tp), off, err)
					}
					r.added = append(r.added, off)
					r.isDone = append(r.isDone, false)
					r.left = append(r.left, off)
					gap := int64(1)
					if rng.IntN(4) == 0 {
						gap += rng.Int64N(5)
					}
					next[tp] = off + gap
					check(fmt.Sprintf("Add(%s, %d)", tpString(tp), off))
				case k < 90 && r != nil && len(r.left) > 0: // done
					i := rng.IntN(len(r.left))
					off := r.left[i]
					r.left[i] = r.left[len(r.left)-1]
					r.left = r.left[:len(r.left)-1]
					if err := o.Done(tp, off); err != nil {
						t.Fatalf("Done(%s, %d): %v", tpString(tp), off, err)
					}
					r.done(off)
					check(fmt.Sprintf("Done(%s, %d)", tpString(tp), off))
					if rng.IntN(10) == 0 { // and a duplicate
						if err := o.Done(tp, off); !errors.Is(err, errNotPending) {
							t.Fatalf("second Done(%s, %d) = %v, want not pending", tpString(tp), off, err)
						}
					}
				case k < 97: // commit
					c := o.Committable()
					if rng.IntN(3) == 0 {
						// Commit an older snapshot: must be ignored where
						// it is behind the mark.
						for tp, eo := range c {
							eo.Offset -= rng.Int64N(3)
							c[tp] = eo
						}
					}
					o.MarkCommitted(c)
					for tp, eo := range c {
						ref[tp].marked = max(ref[tp].marked, eo.Offset)
					}
					check("MarkCommitted")
				case r != nil: // revoke, then re-assign from the commit point
					stale := r.left
					if got := o.Revoke(tp); got != len(stale) {
						t.Fatalf("Revoke(%s) = %d, want %d", tpString(tp), got, len(stale))
					}
					resume := r.commitPoint()
					if resume < 0 && len(r.added) > 0 {
						resume = r.added[0]
					} else if resume < 0 {
						resume = next[tp] // revoked twice in a row
					}
					*r = refPart{marked: -1}
					check(fmt.Sprintf("Revoke(%s)", tpString(tp)))
					for _, off := range stale {
						if err := o.Done(tp, off); !errors.Is(err, ErrRevoked) {
							t.Fatalf("Done(%s, %d) after Revoke = %v, want ErrRevoked", tpString(tp), off, err)
						}
					}
					next[tp] = resume // redelivery starts at the commit point
				}
			}
			// Drain: everything completes, commit points land one past
			// the last added offset.
			for tp, r := range ref {
				for _, off := range r.left {
					if err := o.Done(tp, off); err != nil {
						t.Fatalf("Done(%s, %d): %v", tpString(tp), off, err)
					}
					r.done(off)
				}
				r.left = nil
			}
			check("drain")
			c := commitPoints(o.Committable())
			for tp, r := range ref {
				if len(r.added) == 0 {
					continue
				}
				want := r.added[len(r.added)-1] + 1
				got, ok := c[tp]
				if !ok {
					got = r.marked
				}
				if got != want {
					t.Fatalf("%s: final commit point %d, want %d", tpString(tp), got, want)
				}
			}
		})
	}
}

// TestSearch compares search with slices.BinarySearchFunc on windows with
// and without gaps, for every offset around the window.
func TestSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for n := range 40 {
		for _, maxGap := range []int64{1, 2, 5} {
			win := make([]offsetEntry, n)
			off := rng.Int64N(10)
			for i := range win {
				win[i].off = off
				off += 1 + rng.Int64N(maxGap)
			}
			for q := int64(-2); q < off+2; q++ {
				gi, gf := search(win, q)
				wi, wf := slices.BinarySearchFunc(win, q, func(e offsetEntry, q int64) int { return cmp.Compare(e.off, q) })
				if gf != wf || (gf && gi != wi) {
					t.Fatalf("n=%d gap<=%d: search(%d) = %d, %v; want %d, %v", n, maxGap, q, gi, gf, wi, wf)
				}
			}
		}
	}
}

// TestOffsetsConcurrent runs a producer adding records of several
// partitions, workers completing them out of order, and a committer
// polling Committable/MarkCommitted, all at once (meant for -race).
func TestOffsetsConcurrent(t *testing.T) {
	const (
		nparts   = 4
		nworkers = 8
		perPart  = 5000
	)
	o := NewOffsets()
	tps := make([]TopicPartition, nparts)
	last := make([]int64, nparts)
	for i := range tps {
		tps[i] = TopicPartition{Topic: fmt.Sprintf("tier-%d", i%2), Partition: int32(i)}
	}

	type rec struct {
		tp  TopicPartition
		off int64
	}
	work := make(chan rec, 256)
	var workers sync.WaitGroup
	for w := range nworkers {
		workers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var held []rec // hold a few back to complete out of order
			for r := range work {
				held = append(held, r)
				if len(held) < 4 {
					continue
				}
				i := rng.IntN(len(held))
				if err := o.Done(held[i].tp, held[i].off); err != nil {
					t.Errorf("Done(%s, %d): %v", tpString(held[i].tp), held[i].off, err)
				}
				held = append(held[:i], held[i+1:]...)
				if rng.IntN(8) == 0 {
					runtime.Gosched()
				}
			}
			for _, r := range held {
				if err := o.Done(r.tp, r.off); err != nil {
					t.Errorf("Done(%s, %d): %v", tpString(r.tp), r.off, err)
				}
			}
		})
	}

	stop := make(chan struct{})
	committed := make(map[TopicPartition]int64)
	var committer sync.WaitGroup
	committer.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := o.Committable()
			for tp, eo := range c {
				if eo.Offset <= committed[tp] {
					t.Errorf("Committable %s = %d, not after committed %d", tpString(tp), eo.Offset, committed[tp])
				}
				committed[tp] = eo.Offset
			}
			o.MarkCommitted(c)
			runtime.Gosched()
		}
	})

	rng := rand.New(rand.NewPCG(1, 1))
	offs := make([]int64, nparts)
	for range perPart * nparts {
		i := rng.IntN(nparts)
		if err := o.Add(tps[i], offs[i], 0); err != nil {
			t.Fatal(err)
		}
		work <- rec{tps[i], offs[i]}
		last[i] = offs[i]
		offs[i] += 1 + rng.Int64N(2)
	}
	close(work)
	workers.Wait()
	close(stop)
	committer.Wait()

	if n := o.Pending(); n != 0 {
		t.Errorf("Pending() = %d after all done", n)
	}
	final := commitPoints(o.Committable())
	for i, tp := range tps {
		got, ok := final[tp]
		if !ok {
			got = committed[tp]
		}
		if got != last[i]+1 {
			t.Errorf("%s: commit point %d, want %d", tpString(tp), got, last[i]+1)
		}
	}
}

// TestOffsetsSteadyStateAllocs checks that Add and Done don't allocate per
// record once the window's slice has grown: neither with windows that drain
// completely nor with a sliding window that never drains (compaction).
func TestOffsetsSteadyStateAllocs(t *testing.T) {
	perm := rand.New(rand.NewPCG(3, 3)).Perm(64)
	t.Run("draining windows", func(t *testing.T) {
		o := NewOffsets()
		var next int64
		window := func() {
			for i := range int64(64) {
				if err := o.Add(tpA0, next+i, 0); err != nil {
					t.Fatal(err)
				}
			}
			for _, j := range perm {
				if err := o.Done(tpA0, next+int64(j)); err != nil {
					t.Fatal(err)
				}
			}
			next += 64
		}
		window()
		if a := testing.AllocsPerRun(100, window); a != 0 {
			t.Errorf("%v allocations per window of 64, want 0", a)
		}
	})
	t.Run("sliding window", func(t *testing.T) {
		// 100 records always in flight; each round adds one and completes
		// the oldest, so the window never drains and Add must compact.
		o := NewOffsets()
		var next, oldest int64
		for ; next < 100; next++ {
			if err := o.Add(tpA0, next, 0); err != nil {
				t.Fatal(err)
			}
		}
		round := func() {
			if err := o.Add(tpA0, next, 0); err != nil {
				t.Fatal(err)
			}
			next++
			if err := o.Done(tpA0, oldest); err != nil {
				t.Fatal(err)
			}
			oldest++
		}
		for range 1000 {
			round()
		}
		if a := testing.AllocsPerRun(10000, round); a != 0 {
			t.Errorf("%v allocations per record, want 0", a)
		}
		if got, want := o.Committable()[tpA0].Offset, oldest; got != want {
			t.Errorf("commit point %d, want %d", got, want)
		}
		if n := o.PendingIn(tpA0); n != 100 {
			t.Errorf("PendingIn = %d, want 100", n)
		}
	})
}

// BenchmarkOffsets adds windows of 64 records and completes each window in a
// shuffled order. ns/op is per window; ns/record is the figure to read.
func BenchmarkOffsets(b *testing.B) {
	const window = 64
	rng := rand.New(rand.NewPCG(1, 2))
	perms := make([][]int, 16)
	for i := range perms {
		perms[i] = rng.Perm(window)
	}
	run := func(o *Offsets, tp TopicPartition, next *int64, w int, commit bool) error {
		base := *next
		for i := range int64(window) {
			if err := o.Add(tp, base+i, 0); err != nil {
				return err
			}
		}
		for _, j := range perms[w%len(perms)] {
			if err := o.Done(tp, base+int64(j)); err != nil {
				return err
			}
		}
		*next = base + window
		if commit {
			o.MarkCommitted(o.Committable())
		}
		return nil
	}
	for _, bc := range []struct {
		name   string
		commit bool
	}{{"add+done", false}, {"add+done+commit", true}} {
		b.Run(bc.name, func(b *testing.B) {
			o := NewOffsets()
			var next int64
			windows := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := run(o, tpA0, &next, windows, bc.commit); err != nil {
					b.Fatal(err)
				}
				windows++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(windows*window), "ns/record")
		})
	}
	// 16 partitions (2 topics) with their records interleaved one by one:
	// no run of one partition.
	b.Run("interleaved16", func(b *testing.B) {
		const nparts = 16
		o := NewOffsets()
		var tps [nparts]TopicPartition
		for i := range tps {
			tps[i] = TopicPartition{Topic: fmt.Sprintf("tier-%d", i%2), Partition: int32(i)}
		}
		var next int64
		windows := 0
		b.ReportAllocs()
		for b.Loop() {
			for i := range int64(window) {
				for _, tp := range tps {
					if err := o.Add(tp, next+i, 0); err != nil {
						b.Fatal(err)
					}
				}
			}
			for _, j := range perms[windows%len(perms)] {
				for _, tp := range tps {
					if err := o.Done(tp, next+int64(j)); err != nil {
						b.Fatal(err)
					}
				}
			}
			next += window
			windows++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(windows*window*nparts), "ns/record")
	})
	// One partition per goroutine, one shared Offsets: lock contention.
	b.Run("parallel", func(b *testing.B) {
		o := NewOffsets()
		var mu sync.Mutex
		var part int32
		windows := 0
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			tp := TopicPartition{Topic: "bench", Partition: part}
			part++
			mu.Unlock()
			var next int64
			w := 0
			for pb.Next() {
				if err := run(o, tp, &next, w, false); err != nil {
					b.Error(err)
					return
				}
				w++
			}
			mu.Lock()
			windows += w
			mu.Unlock()
		})
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(windows*window), "ns/record")
	})
}

// commitPoints are the offsets of c, without their epochs.
func commitPoints(c map[TopicPartition]kgo.EpochOffset) map[TopicPartition]int64 {
	if c == nil {
		return nil
	}
	m := make(map[TopicPartition]int64, len(c))
	for tp, eo := range c {
		m[tp] = eo.Offset
	}
	return m
}

// atEpoch0 are offsets m of records of leader epoch 0.
func atEpoch0(m map[TopicPartition]int64) map[TopicPartition]kgo.EpochOffset {
	c := make(map[TopicPartition]kgo.EpochOffset, len(m))
	for tp, off := range m {
		c[tp] = kgo.EpochOffset{Offset: off}
	}
	return c
}

// The commit point carries the leader epoch of the last record of the
// done prefix, not of the records after it.
func TestOffsetsCommitEpoch(t *testing.T) {
	o := NewOffsets()
	tp := TopicPartition{"t", 0}
	for off, epoch := range []int32{3, 3, 4} {
		if err := o.Add(tp, int64(off), epoch); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		done int64
		want kgo.EpochOffset
	}{
		{2, kgo.EpochOffset{}}, // nothing committable: 0 and 1 are pending
		{0, kgo.EpochOffset{Epoch: 3, Offset: 1}},
		{1, kgo.EpochOffset{Epoch: 4, Offset: 3}},
	} {
		if err := o.Done(tp, step.done); err != nil {
			t.Fatal(err)
		}
		if got := o.Committable()[tp]; got != step.want {
			t.Errorf("after %d done: Committable = %+v, want %+v", step.done, got, step.want)
		}
	}
}
