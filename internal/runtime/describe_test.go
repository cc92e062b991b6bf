package runtime

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestDescribe: the replicas are described at once (each waits for all
// the others here) and come oldest first.
func TestDescribe(t *testing.T) {
	type rep struct {
		name string
		age  time.Duration
	}
	now := time.Now()
	reps := []*rep{{"b", 2 * time.Second}, {"c", time.Second}, {"a", 3 * time.Second}}
	var started atomic.Int32
	all := make(chan struct{})
	got := Describe(reps, func(r *rep) Replica {
		if started.Add(1) == 3 {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			t.Errorf("%s described alone: not in parallel", r.name)
		}
		return Replica{ID: r.name, Started: now.Add(-r.age), Ready: r.name != "c"}
	})
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(ids, want) {
		t.Errorf("replicas %v, want %v", ids, want)
	}
	if got[2].Ready {
		t.Error("c is described ready")
	}
	if len(Describe(nil, func(*rep) Replica { return Replica{} })) != 0 {
		t.Error("replicas out of none")
	}
}
