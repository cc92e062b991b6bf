package results

import (
	"cmp"
	"container/heap"
	"slices"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// newest keeps the n newest results added, by timestamp, and no more:
// --last N holds N results whatever the size of the topic. Of results with
// one timestamp, the later added counts as newer.
type newest struct {
	n    int
	seq  int
	heap stampedHeap // the oldest kept on top
}

type stamped struct {
	at  time.Time
	seq int
	r   wire.Result
}

func newNewest(n int) *newest { return &newest{n: n} }

// add keeps r if it is among the n newest so far.
func (k *newest) add(at time.Time, r wire.Result) {
	k.seq++
	s := stamped{at: at, seq: k.seq, r: r}
	if len(k.heap) < k.n {
		heap.Push(&k.heap, s)
		return
	}
	if k.n == 0 || !older(k.heap[0], s) {
		return
	}
	k.heap[0] = s
	heap.Fix(&k.heap, 0)
}

// oldestFirst returns the results kept, oldest first.
func (k *newest) oldestFirst() []wire.Result {
	s := slices.Clone(k.heap)
	slices.SortFunc(s, compareStamped)
	out := make([]wire.Result, len(s))
	for i, x := range s {
		out[i] = x.r
	}
	return out
}

// compareStamped orders by timestamp, then by the order added.
func compareStamped(a, b stamped) int {
	return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.seq, b.seq))
}

func older(a, b stamped) bool { return compareStamped(a, b) < 0 }

// stampedHeap is a min-heap of results, the oldest on top.
type stampedHeap []stamped

func (h stampedHeap) Len() int           { return len(h) }
func (h stampedHeap) Less(i, j int) bool { return older(h[i], h[j]) }
func (h stampedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *stampedHeap) Push(x any)        { *h = append(*h, x.(stamped)) }
func (h *stampedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
