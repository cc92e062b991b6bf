package connector

import (
	"context"
	"sync"
	"time"
)

// replica is one inference replica as the connector sees it.
type replica struct {
	url         string
	outstanding int
	// removed replicas get no new calls and leave the pool once their
	// outstanding calls finish.
	removed bool
	// downUntil keeps a failing replica out of rotation for a while.
	downUntil time.Time
}

// pool spreads invocations over replicas: least outstanding requests first,
// at most limit in flight per replica, failing replicas rested.
type pool struct {
	mu    sync.Mutex
	reps  []*replica
	limit int
	wake  chan struct{} // closed and replaced whenever a slot frees up
}

func newPool(urls []string, limit int) *pool {
	p := &pool{limit: limit, wake: make(chan struct{})}
	for _, u := range urls {
		p.reps = append(p.reps, &replica{url: u})
	}
	return p
}

// acquire waits for a replica with a free slot and takes the slot. It
// prefers any replica over avoid (the one that just failed), but takes avoid
// when it is the only choice.
func (p *pool) acquire(ctx context.Context, avoid *replica) (*replica, error) {
	for {
		p.mu.Lock()
		now := time.Now()
		var best, fallback *replica
		for _, r := range p.reps {
			if r.removed || r.outstanding >= p.limit {
				continue
			}
			if r == avoid || now.Before(r.downUntil) {
				if fallback == nil || r.outstanding < fallback.outstanding {
					fallback = r
				}
				continue
			}
			if best == nil || r.outstanding < best.outstanding {
				best = r
			}
		}
		if best == nil && fallback != nil && !p.anyUpLocked(now) {
			best = fallback // every replica is resting: try one anyway
		}
		if best != nil {
			best.outstanding++
			p.mu.Unlock()
			return best, nil
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-time.After(20 * time.Millisecond): // a resting replica may be back
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// anyUpLocked reports whether some replica is not resting. p.mu is held.
func (p *pool) anyUpLocked(now time.Time) bool {
	for _, r := range p.reps {
		if !r.removed && !now.Before(r.downUntil) {
			return true
		}
	}
	return false
}

// release gives r's slot back; an unhealthy call rests r for rest.
func (p *pool) release(r *replica, healthy bool, rest time.Duration) {
	p.mu.Lock()
	r.outstanding--
	if healthy {
		r.downUntil = time.Time{}
	} else {
		r.downUntil = time.Now().Add(rest)
	}
	if r.removed && r.outstanding == 0 {
		p.dropLocked(r)
	}
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// update makes urls the pool's replicas: new ones join at once, missing
// ones get no new calls and leave when their in-flight calls are done.
func (p *pool) update(urls []string) (added, removed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := make(map[string]bool, len(urls))
	for _, u := range urls {
		want[u] = true
	}
	have := map[string]*replica{}
	for _, r := range p.reps {
		have[r.url] = r
	}
	for _, r := range append([]*replica(nil), p.reps...) {
		switch {
		case !want[r.url] && !r.removed:
			r.removed = true
			removed++
			if r.outstanding == 0 {
				p.dropLocked(r)
			}
		case want[r.url] && r.removed:
			r.removed = false
			added++
		}
	}
	for _, u := range urls {
		if have[u] == nil {
			p.reps = append(p.reps, &replica{url: u})
			added++
		}
	}
	if added > 0 {
		close(p.wake)
		p.wake = make(chan struct{})
	}
	return added, removed
}

func (p *pool) dropLocked(r *replica) {
	for i, x := range p.reps {
		if x == r {
			p.reps = append(p.reps[:i], p.reps[i+1:]...)
			return
		}
	}
}

// live lists the URLs of the replicas taking new calls.
func (p *pool) live() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, r := range p.reps {
		if !r.removed {
			out = append(out, r.url)
		}
	}
	return out
}

// size counts the replicas taking new calls.
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.reps {
		if !r.removed {
			n++
		}
	}
	return n
}
