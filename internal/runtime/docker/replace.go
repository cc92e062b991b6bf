package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// readyPoll is how often Replace probes a new container's /readyz.
const readyPoll = 50 * time.Millisecond

// Replace is a rolling replacement of every live container by one of spec
// (see runtime.Replacer), as the process runtime does it: the new
// containers start unlisted, with the mounts spec needs; once each answers
// its /readyz they are listed and the old ones hidden in the same step, so
// a connector's next look at the list moves all new calls to them. The old
// ones are hidden for DrainDelay while connectors finish their calls on
// them, then stopped (SIGTERM, which lets them answer what they accepted)
// and removed; Replace returns once they are. A new container that exits
// or is not ready within ReadyTimeout, or ctx ending first, rolls back:
// the new containers are removed, the old ones never left the list and
// the spec stays the old.
func (r *Runtime) Replace(ctx context.Context, spec runtime.Spec) error {
	if spec.Tier() != r.tier {
		return fmt.Errorf("replace tier %q: the new spec is of tier %q", r.tier, spec.Tier())
	}
	if err := r.change.Lock(ctx, r.tier); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	old, err := r.replace(ctx, spec)
	r.change.Unlock()
	if err != nil {
		return err
	}
	for _, rep := range old {
		<-rep.gone // bounded: DrainDelay and StopGrace, or Close
	}
	r.log.Info("replicas replaced", "replicas", len(old))
	return nil
}

// replace starts the new containers, waits for them and switches the list
// to them, returning the old ones, which are draining; or it rolls back.
// The caller holds the change lock.
func (r *Runtime) replace(ctx context.Context, spec runtime.Spec) ([]*replica, error) {
	run, err := r.cfg.started(spec)
	if err != nil {
		return nil, fmt.Errorf("replace tier %q: %w", r.tier, err)
	}
	r.mu.Lock()
	old := r.liveLocked()
	r.mu.Unlock()
	r.log.Info("replacing replicas", "replicas", len(old), "timeout", r.cfg.ReadyTimeout)
	fresh, err := runtime.StartReady(ctx, len(old), runtime.Standby[*replica]{
		Start: func() (*replica, error) { return r.start(ctx, run, true) },
		Ready: r.waitReady,
		Stop:  r.remove,
	})
	if err != nil {
		return nil, fmt.Errorf("replace tier %q: %w; removed the new replicas, kept the %d running", r.tier, err, len(old))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.run = run
	for _, rep := range fresh {
		rep.standby = false
	}
	for _, rep := range old {
		r.drainLocked(rep)
	}
	return old, nil
}

// waitReady polls rep's /readyz until it answers 200, failing when its
// container is no longer running, after ReadyTimeout, when ctx ends or
// the runtime closes.
func (r *Runtime) waitReady(ctx context.Context, rep *replica) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReadyTimeout)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if r.ready(ctx, rep.url) {
			return nil
		}
		if err := r.running(ctx, rep); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if r.ctx.Err() != nil {
				return errors.New("the runtime was closed while the new replicas started")
			}
			return fmt.Errorf("%s not ready at %s/readyz within %s", rep.name, rep.url, r.cfg.ReadyTimeout)
		case <-tick.C:
		}
	}
}

// running returns an error when rep's container stopped, with its exit
// code; nil while it runs or when the engine cannot say.
func (r *Runtime) running(ctx context.Context, rep *replica) error {
	c, err := r.cli.ContainerInspect(ctx, rep.id)
	if err != nil || c.State == nil || c.State.Running || c.State.Status == "created" {
		return nil
	}
	return fmt.Errorf("%s exited (code %d) before it was ready", rep.name, c.State.ExitCode)
}
