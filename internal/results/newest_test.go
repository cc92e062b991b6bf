package results

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestNewest: --last N holds at most N results while it reads, and ends
// with the N newest by timestamp, oldest first; of equal timestamps the
// one read later is the newer.
func TestNewest(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	type in struct {
		at time.Time
		id string
	}
	var all []in
	for i := range 5000 {
		all = append(all, in{t0.Add(time.Duration(rng.IntN(800)) * time.Second), strconv.Itoa(i)})
	}
	for _, n := range []int{1, 7, 100, 4999, 5000, 6000} {
		k := newNewest(n)
		for _, x := range all {
			k.add(x.at, wire.Result{ID: x.id})
			if len(k.heap) > n {
				t.Fatalf("--last %d holds %d results", n, len(k.heap))
			}
		}
		want := slices.Clone(all)
		slices.SortStableFunc(want, func(a, b in) int { return a.at.Compare(b.at) })
		want = want[max(0, len(want)-n):]
		got := k.oldestFirst()
		if len(got) != len(want) {
			t.Fatalf("--last %d: %d results, want %d", n, len(got), len(want))
		}
		for i := range want {
			if got[i].ID != want[i].id {
				t.Fatalf("--last %d: result %d is %s, want %s", n, i, got[i].ID, want[i].id)
			}
		}
	}
}
