package process

import (
	"context"
	"errors"
	"fmt"

	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// Replace is a rolling replacement of every live replica by one of spec
// (see runtime.Replacer). The new replicas start on standby, unlisted;
// once each answers its /readyz they are listed and the old ones hidden in
// the same step, so a connector's next look at the list (every 500 ms)
// moves all new calls to them. The old ones then go the way of a scale
// down: hidden for DrainDelay while connectors finish their calls on them,
// then SIGTERM, which lets them answer what they accepted. Replace returns
// once they are stopped. A new replica that exits or is not ready within
// ReadyTimeout, or ctx ending first, rolls back: the new replicas are
// stopped, the old ones never left the list and the spec stays the old.
func (r *Runtime) Replace(ctx context.Context, spec runtime.Spec) error {
	if spec.Tier() != r.tier {
		return fmt.Errorf("replace tier %q: the new spec is of tier %q", r.tier, spec.Tier())
	}
	if err := r.change.Lock(ctx, r.tier); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	old, err := r.replace(ctx, spec, false)
	r.change.Unlock()
	if err != nil {
		return err
	}
	awaitGone(old)
	r.log.Info("replicas replaced", "replicas", len(old))
	return nil
}

// ReplaceBeside is Replace but for the old replicas, which stay listed
// beside the new ones (runtime.BesideReplacer): for a tier whose new
// model does not read the forwards the previous tier's old model wrote,
// which only the old replicas read until that backlog is done. Until the
// Beside it returns retires them (or undoes the replacement), the old
// replicas are neither counted nor scaled; Scale acts on the new ones.
// The caller runs one replacement of the tier at a time.
func (r *Runtime) ReplaceBeside(ctx context.Context, spec runtime.Spec) (runtime.Beside, error) {
	if spec.Tier() != r.tier {
		return runtime.Beside{}, fmt.Errorf("replace tier %q: the new spec is of tier %q", r.tier, spec.Tier())
	}
	if err := r.change.Lock(ctx, r.tier); err != nil {
		return runtime.Beside{}, fmt.Errorf("replace: %w", err)
	}
	oldSpec := r.Spec()
	old, err := r.replace(ctx, spec, true)
	r.change.Unlock()
	if err != nil {
		return runtime.Beside{}, err
	}
	r.log.Info("replicas replaced; the old ones serve beside the new until retired", "old", len(old))
	end := func(undo bool) {
		r.mu.Lock()
		leaving := old
		if undo {
			leaving = r.liveLocked()
			r.spec = oldSpec
			for _, rep := range old {
				rep.retiring = false
			}
		}
		for _, rep := range leaving {
			r.drainLocked(rep)
		}
		r.mu.Unlock()
		awaitGone(leaving)
		if undo {
			r.log.Info("replacement undone: the new replicas stopped, the old ones serve", "replicas", len(leaving))
		} else {
			r.log.Info("old replicas retired", "replicas", len(old))
		}
	}
	return runtime.Beside{Retire: func() { end(false) }, Undo: func() { end(true) }}, nil
}

// awaitGone waits until each of reps, draining, is stopped: bounded by
// DrainDelay and StopGrace, or Close.
func awaitGone(reps []*replica) {
	for _, rep := range reps {
		<-rep.gone
	}
}

// replace starts the new replicas, waits for them and switches the list
// to them, returning the old ones, which are draining, or retiring beside
// the new ones when beside is set; or it rolls back. The caller holds the
// change lock.
func (r *Runtime) replace(ctx context.Context, spec runtime.Spec, beside bool) ([]*replica, error) {
	r.mu.Lock()
	old := r.liveLocked()
	r.mu.Unlock()
	r.log.Info("replacing replicas", "replicas", len(old), "timeout", r.cfg.ReadyTimeout)
	fresh, err := runtime.StartReady(ctx, len(old), runtime.Standby[*replica]{
		Start: func() (*replica, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.startLocked(spec, true)
		},
		Ready: func(ctx context.Context, rep *replica) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(r.ctx, cancel)()
			err := rep.child.WaitReady(ctx, r.cfg.ReadyTimeout)
			if err != nil && r.ctx.Err() != nil {
				return errors.New("the runtime was closed while the new replicas started")
			}
			return err
		},
		Stop: r.stop,
	})
	if err != nil {
		return nil, fmt.Errorf("replace tier %q: %w; stopped the new replicas, kept the %d running", r.tier, err, len(old))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.spec = spec
	for _, rep := range fresh {
		rep.standby = false
	}
	for _, rep := range old {
		if beside {
			rep.retiring = true
		} else {
			r.drainLocked(rep)
		}
	}
	return old, nil
}
