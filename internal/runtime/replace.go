package runtime

import (
	"context"
	"fmt"
	"sync"
)

// Replacer is a Runtime that can replace its replicas with ones of a new
// Spec without refusing or losing a call: a rolling replacement.
type Replacer interface {
	Runtime
	// Replace starts as many replicas of spec as are live, waits until
	// each is ready, then lists them in place of the old ones at once (so
	// connectors move their traffic) and drains and stops the old ones.
	// Replicas it starts from then on run spec. When a new replica is not
	// ready in time, or ctx ends first, it stops the new ones, keeps the
	// old ones and the old spec, and returns why. Scale calls wait for a
	// Replace, so a tier never runs two specs at once but for the drain.
	Replace(ctx context.Context, spec Spec) error
}

// ChangeLock is held by a Replacer's Scale and Replace, one at a time, so
// that a Scale never starts a replica of a spec being replaced. The zero
// value is unlocked.
type ChangeLock struct {
	once sync.Once
	ch   chan struct{}
}

// Lock takes the lock for tier's replicas, or returns ctx's error.
func (l *ChangeLock) Lock(ctx context.Context, tier string) error {
	l.once.Do(func() { l.ch = make(chan struct{}, 1) })
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tier %q: waiting for a replacement to finish: %w", tier, ctx.Err())
	}
}

// Unlock releases the lock Lock took.
func (l *ChangeLock) Unlock() { <-l.ch }

// Standby is how a runtime that keeps its replicas in memory starts the
// replicas of a Replace: unlisted, each waited for, stopped on a rollback.
type Standby[R any] struct {
	// Start starts one replica of the new spec, not listed.
	Start func() (R, error)
	// Ready waits until rep is ready, at most the runtime's ready
	// timeout; it fails at once when rep exits, and when ctx ends.
	Ready func(ctx context.Context, rep R) error
	// Stop stops rep, never listed, now.
	Stop func(rep R)
}

// StartReady is the first half of a rolling replacement of n replicas: it
// starts n with s.Start and waits until every one is ready. At the first
// that does not start, is not ready in time, or when ctx ends, it stops
// those it started (all at once) and returns why; then nothing of the new
// spec runs. The caller lists the replicas it returns in place of the old
// ones and drains those.
func StartReady[R any](ctx context.Context, n int, s Standby[R]) ([]R, error) {
	var fresh []R
	for range n {
		rep, err := s.Start()
		if err != nil {
			stopAll(fresh, s.Stop)
			return nil, fmt.Errorf("starting a new replica: %w", err)
		}
		fresh = append(fresh, rep)
	}
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for _, rep := range fresh {
		wg.Go(func() {
			if err := s.Ready(wait, rep); err != nil {
				once.Do(func() { first = err })
				cancel() // the others need not wait any longer
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		first = fmt.Errorf("waiting for the new replicas: %w", ctx.Err())
	}
	if first != nil {
		stopAll(fresh, s.Stop)
		return nil, first
	}
	return fresh, nil
}

// stopAll runs stop on each of reps at once and waits.
func stopAll[R any](reps []R, stop func(R)) {
	var wg sync.WaitGroup
	for _, rep := range reps {
		wg.Go(func() { stop(rep) })
	}
	wg.Wait()
}

// BesideReplacer is a Replacer that can keep the old replicas serving
// beside the new ones after a replacement, until told to retire them.
type BesideReplacer interface {
	Replacer
	// ReplaceBeside replaces as Replace does, but the old replicas stay
	// listed beside the new ones (neither counted nor scaled) until the
	// Beside it returns retires them, or undoes the replacement.
	ReplaceBeside(ctx context.Context, spec Spec) (Beside, error)
}

// Beside ends a ReplaceBeside. Each returns once the replicas it drains
// are stopped; call one of them once.
type Beside struct {
	// Retire drains and stops the old replicas.
	Retire func()
	// Undo drains and stops the new replicas instead, and makes the old
	// ones and their spec current again.
	Undo func()
}
