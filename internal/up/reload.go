package up

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// reloadOnSIGHUP makes each SIGHUP until ctx ends re-read the pipeline
// file and plan it against what runs (apply.Compute), logging the plan. A
// plan with anything refused changes nothing. Otherwise the site's
// children that reload (the funnel, connectors, uplinks and the process
// runtime's replicas) get SIGHUP, each applying what it can change live,
// and each tier to roll out (its model's sha256, version label or
// inference settings changed) has its replicas replaced, one tier after
// another, by ones that read the file anew. A file that does not load is
// logged and changes nothing. stop ends it, waiting for a reload under
// way.
func (s *Supervisor) reloadOnSIGHUP(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx) // ends a rollout under way at stop
	stopSignals := command.Reloader{
		Load:  func() (*pipeline.Pipeline, error) { return command.LoadPipeline(s.cfg.File) },
		Apply: func(p *pipeline.Pipeline) error { return s.reload(ctx, p) },
		Log:   s.log,
	}.OnSIGHUP(ctx)
	return func() {
		cancel()
		stopSignals()
	}
}

// reload plans p against the running pipeline and applies the plan.
func (s *Supervisor) reload(ctx context.Context, p *pipeline.Pipeline) error {
	next, err := apply.Load(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	running := s.applied
	s.mu.Unlock()
	plan := apply.Compute(running, next)
	var b strings.Builder
	apply.Print(&b, &plan)
	for line := range strings.Lines(b.String()) {
		s.log.Info("reload: plan", "line", strings.TrimRight(line, "\n"))
	}
	if !plan.OK() {
		return fmt.Errorf("%d settings cannot change while the pipeline runs (see the plan above)", len(plan.Refused))
	}
	s.forwardSIGHUP()
	var errs []error
	for _, r := range plan.Rollouts {
		if err := s.rollOut(ctx, r.Tier); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	s.applied = next
	s.mu.Unlock()
	return errors.Join(errs...)
}

// rollOut replaces tier's replicas by ones that read the pipeline file
// anew, where its runtime can (runtime.Replacer); the replicas of a
// runtime that cannot keep running as they are, and the log says so.
func (s *Supervisor) rollOut(ctx context.Context, tier string) error {
	rt := s.runtime(tier)
	if rt == nil {
		return nil // not on this site
	}
	rep, ok := rt.(interface {
		runtime.Replacer
		Spec() runtime.Spec
	})
	if !ok {
		s.log.Warn("reload: tier not rolled out: its runtime cannot replace its replicas yet; restart ddnn up to apply it", "tier", tier)
		return nil
	}
	s.log.Info("reload: rolling out", "tier", tier)
	if err := rep.Replace(ctx, rep.Spec()); err != nil {
		return fmt.Errorf("tier %q: rollout: %w", tier, err)
	}
	s.log.Info("reload: rolled out", "tier", tier)
	return nil
}

// forwardSIGHUP sends SIGHUP to every running child that reloads on it,
// logging each. The monolith does not reload: it is left out, and said
// so. So is a child not ready yet: until then it may not handle SIGHUP
// (which would stop it), and it read the file as it started.
func (s *Supervisor) forwardSIGHUP() {
	s.mu.Lock()
	monolith := s.monolith
	s.mu.Unlock()
	for _, c := range s.children() {
		if c == monolith {
			s.log.Warn("reload: SIGHUP not forwarded: the monolith applies a changed file at a restart", "child", c.Name())
			continue
		}
		if !c.Ready() {
			s.log.Warn("reload: SIGHUP not forwarded: the child is not ready", "child", c.Name(), "pid", c.PID())
			continue
		}
		if err := c.Signal(syscall.SIGHUP); err != nil {
			s.log.Warn("reload: SIGHUP not forwarded", "child", c.Name(), "err", err)
			continue
		}
		s.log.Info("reload: SIGHUP forwarded", "child", c.Name(), "pid", c.PID())
	}
}
