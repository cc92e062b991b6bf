package connector

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"
)

// replica is one inference replica as the connector sees it.
type replica struct {
	url string
	// host is url's host:port, what a hop names the replica by
	// (records.Hop).
	host        string
	outstanding int
	// removed replicas get no new calls and leave the pool once their
	// outstanding calls finish.
	removed bool
	// downUntil keeps a failing replica out of rotation for a while.
	downUntil time.Time
	// failing is set by a failed call and cleared by a healthy one.
	failing bool
	// lastSuccess is the pool's successes count right after this
	// replica's last call answered 200 (0: none yet).
	lastSuccess uint64
	// refuses holds the producers (models of the previous tier) whose
	// forwards the replica answered it does not accept, until when the
	// pool believes it (refusalTTL).
	refuses map[string]time.Time
}

// refusalTTL is how long the pool remembers that a replica does not
// accept a producer: a replica's model does not change, but its address
// may come back as another replica's.
const refusalTTL = time.Minute

// errNoneAccepts: every replica taking calls refused the forwards'
// producer (see acquire).
var errNoneAccepts = errors.New("no replica accepts the forwards' model")

// acceptsLocked says whether r may be given forwards of producer: it has
// not refused them lately. p.mu is held.
func (r *replica) acceptsLocked(producer string, now time.Time) bool {
	if producer == "" || r.refuses == nil {
		return true
	}
	until, ok := r.refuses[producer]
	return !ok || now.After(until)
}

func newReplica(u string) *replica {
	host := u
	if pu, err := url.Parse(u); err == nil && pu.Host != "" {
		host = pu.Host
	}
	return &replica{url: u, host: host}
}

// pool spreads invocations over replicas: least outstanding requests first,
// at most limit in flight per replica, failing replicas rested.
type pool struct {
	mu    sync.Mutex
	reps  []*replica
	limit int
	wake  chan struct{} // closed and replaced whenever a slot frees up
	// successes counts calls answered 200: a failure while it does not
	// move is the tier's, not the record's. A healthy answer that
	// delivered nothing (4xx, 429) does not count.
	successes uint64
	// down is set while every replica failed its last call; up is closed
	// and replaced when the tier comes back.
	down bool
	up   chan struct{}
}

func newPool(urls []string, limit int) *pool {
	p := &pool{limit: limit, wake: make(chan struct{}), up: make(chan struct{})}
	for _, u := range urls {
		p.reps = append(p.reps, newReplica(u))
	}
	return p
}

// acquire waits for a replica with a free slot that is not resting and
// accepts forwards of producer (any, for ""), and takes the slot. It
// prefers any such replica over avoid (the one that just failed), and
// takes avoid when it is the only one. When replicas take calls but
// every one refused producer, it returns errNoneAccepts at once.
func (p *pool) acquire(ctx context.Context, avoid *replica, producer string) (*replica, error) {
	for {
		p.mu.Lock()
		now := time.Now()
		var best, second *replica
		var nextUp time.Time // earliest end of a rest, zero if none
		live, accepting := 0, 0
		for _, r := range p.reps {
			if r.removed {
				continue
			}
			live++
			if !r.acceptsLocked(producer, now) {
				continue
			}
			accepting++
			if r.outstanding >= p.limit {
				continue
			}
			if now.Before(r.downUntil) {
				if nextUp.IsZero() || r.downUntil.Before(nextUp) {
					nextUp = r.downUntil
				}
				continue
			}
			if r == avoid {
				second = r
				continue
			}
			if best == nil || r.outstanding < best.outstanding {
				best = r
			}
		}
		if best == nil {
			best = second
		}
		if best != nil {
			best.outstanding++
			p.mu.Unlock()
			return best, nil
		}
		if live > 0 && accepting == 0 {
			p.mu.Unlock()
			return nil, errNoneAccepts
		}
		wake := p.wake
		p.mu.Unlock()
		var (
			timer    *time.Timer
			restOver <-chan time.Time
		)
		if !nextUp.IsZero() {
			timer = time.NewTimer(time.Until(nextUp))
			restOver = timer.C
		}
		select {
		case <-wake:
		case <-restOver:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// released is what a call's end changed.
type released struct {
	// successes is the pool's successes count.
	successes uint64
	// lastSuccess is the released replica's: it answered 200 since a
	// moment when the count was n if lastSuccess > n.
	lastSuccess uint64
	// wentDown and cameUp report a change of the tier's state: every
	// replica failing its last call, or a healthy call after that.
	wentDown, cameUp bool
}

// release gives r's slot back; an unhealthy call rests r for rest. ok
// says the call was answered 200.
func (p *pool) release(r *replica, healthy, ok bool, rest time.Duration) released {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.outstanding--
	r.failing = !healthy
	if ok {
		p.successes++
		r.lastSuccess = p.successes
	}
	if healthy {
		r.downUntil = time.Time{}
	} else {
		r.downUntil = time.Now().Add(rest)
	}
	if r.removed && r.outstanding == 0 {
		p.dropLocked(r)
	}
	p.wakeLocked()
	out := released{successes: p.successes, lastSuccess: r.lastSuccess}
	switch {
	case healthy && p.down:
		p.down, out.cameUp = false, true
		close(p.up)
		p.up = make(chan struct{})
	case !healthy && !p.down && p.allFailingLocked():
		p.down, out.wentDown = true, true
	}
	return out
}

// refuse records that r does not accept forwards of producer.
func (p *pool) refuse(r *replica, producer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.refuses == nil {
		r.refuses = map[string]time.Time{}
	}
	r.refuses[producer] = time.Now().Add(refusalTTL)
}

// giveBack returns r's slot unused: no call was made.
func (p *pool) giveBack(r *replica) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.outstanding--
	if r.removed && r.outstanding == 0 {
		p.dropLocked(r)
	}
	p.wakeLocked()
}

// allFailingLocked reports whether every replica taking calls failed its
// last call (true for none). p.mu is held.
func (p *pool) allFailingLocked() bool {
	for _, r := range p.reps {
		if !r.removed && !r.failing {
			return false
		}
	}
	return true
}

// cameUp returns a channel closed when the tier next comes back from
// being down.
func (p *pool) cameUp() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// successesSoFar is the pool's successes count.
func (p *pool) successesSoFar() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.successes
}

func (p *pool) wakeLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
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
			p.reps = append(p.reps, newReplica(u))
			added++
		}
	}
	if added > 0 {
		p.wakeLocked()
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
