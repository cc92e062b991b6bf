package runtime

import (
	"sort"
	"sync"
)

// Describe is the List of a runtime that keeps its replicas in memory:
// the Replica of each of live, made by describe, all at once (describe
// probes readiness, which may take a request's time), and sorted by start
// time, oldest first.
func Describe[R any](live []R, describe func(R) Replica) []Replica {
	out := make([]Replica, len(live))
	var wg sync.WaitGroup
	for i, rep := range live {
		wg.Go(func() { out[i] = describe(rep) })
	}
	wg.Wait()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}
