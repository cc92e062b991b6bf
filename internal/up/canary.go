package up

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
)

// canaryReplicas is how many replicas a tier's canary runs: one, of fixed
// size; the scaler sizes only the tier's current replicas.
const canaryReplicas = 1

// canaries are the runtimes of the site's tiers' canaries
// (tiers[].canary): a second runtime per tier whose replicas serve the
// candidate model (inference --canary), listed at
// httpapi.CanaryReplicasPath, which the tier's connector follows.
type canaries struct {
	mu  sync.Mutex
	run map[string]*canaryRun // by tier
}

// canaryRun is one tier's canary runtime and the candidate it serves.
type canaryRun struct {
	rt runtime.Runtime
	// model is the candidate's file, sha is its sha256 prefix, version its
	// label: a change of sha or version is a new candidate (the file moved
	// is the same one, as apply plans it).
	model, sha, version string
}

// canaryRuntime returns tier's canary runtime, nil without one.
func (s *Supervisor) canaryRuntime(tier string) runtime.Runtime {
	s.canaries.mu.Lock()
	defer s.canaries.mu.Unlock()
	if r := s.canaries.run[tier]; r != nil {
		return r.rt
	}
	return nil // not a typed nil inside the interface
}

// canaryChildren are the canary replicas' processes.
func (s *Supervisor) canaryChildren() []*proc.Child {
	s.canaries.mu.Lock()
	defer s.canaries.mu.Unlock()
	var cs []*proc.Child
	for _, r := range s.canaries.run {
		cs = append(cs, childrenOf(r.rt)...)
	}
	return cs
}

// applyCanaries makes the site's canary runtimes those p asks for: a
// tier's canary added, or its candidate changed (its model file's sha256,
// its version label), gets a runtime of its own with canaryReplicas replicas,
// ready before this returns (the old candidate's stopped after); one
// removed is drained and stopped. A share or shadow ratio change is the
// connector's (it reloads it). The caller checked the chain, candidates
// included, as models check does (ddnn up before Run, a reload in
// readModels): a candidate that does not fit, or forwards what the next
// tier's current model does not read, was refused before anything
// changed.
func (s *Supervisor) applyCanaries(ctx context.Context, p *pipeline.Pipeline) error {
	type change struct {
		tier  *pipeline.Tier
		sha   string
		start bool // a new candidate (else: remove)
	}
	var changes []change
	for _, t := range s.tiers {
		tier, _, err := p.Tier(t.Name)
		if err != nil {
			return err
		}
		s.canaries.mu.Lock()
		cur := s.canaries.run[t.Name]
		s.canaries.mu.Unlock()
		switch c := tier.Canary; {
		case c == nil && cur != nil:
			changes = append(changes, change{tier: tier})
		case c != nil:
			sha, err := onnx.FileSHA256(p.Path(c.Model))
			if err != nil {
				return fmt.Errorf("tier %q: canary: %w", t.Name, err)
			}
			if cur == nil || cur.sha != sha || cur.version != c.Version {
				changes = append(changes, change{tier: tier, sha: sha, start: true})
			}
		}
	}
	var errs []error
	for _, ch := range changes {
		if err := s.swapCanary(ctx, p, ch.tier, ch.sha, ch.start); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// swapCanary starts a runtime of t's canary when start (t.Canary, whose
// model file has sha), waits until it is ready and lists it in place of
// the tier's old canary, if any, which it then stops.
func (s *Supervisor) swapCanary(ctx context.Context, p *pipeline.Pipeline, t *pipeline.Tier, sha string, start bool) error {
	var next *canaryRun
	if start {
		o := s.replicaOptions()
		o.Canary = true
		rt, err := replicas.New(ctx, p, t, o)
		if err != nil {
			return fmt.Errorf("tier %q: canary: %w", t.Name, err)
		}
		next = &canaryRun{rt: rt, model: t.Canary.Model, sha: sha, version: t.Canary.Version}
		err = rt.Scale(ctx, canaryReplicas)
		if err == nil {
			err = s.waitRuntime(ctx, rt, t.Name+" canary", canaryReplicas)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("tier %q: canary: %w", t.Name, err), rt.Close(context.WithoutCancel(ctx)))
		}
	}
	s.canaries.mu.Lock()
	if s.canaries.run == nil {
		s.canaries.run = map[string]*canaryRun{}
	}
	old := s.canaries.run[t.Name]
	if next != nil {
		s.canaries.run[t.Name] = next
	} else {
		delete(s.canaries.run, t.Name)
	}
	s.canaries.mu.Unlock()
	if next != nil {
		s.log.Info("canary started", "tier", t.Name, "model", t.Canary.Model, "sha256", sha, "version", t.Canary.Version, "share", t.Canary.Share)
	}
	if old == nil {
		return nil
	}
	// Unlisted first, so that the connector stops calling it; its calls
	// under way finish (and one that fails goes to the current replicas).
	if err := old.rt.Scale(ctx, 0); err != nil {
		s.log.Warn("canary not drained", "tier", t.Name, "err", err)
	}
	if err := old.rt.Close(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("tier %q: stop canary: %w", t.Name, err)
	}
	s.log.Info("canary stopped", "tier", t.Name, "model", old.model, "sha256", old.sha)
	return nil
}

// closeCanaries stops every canary runtime.
func (s *Supervisor) closeCanaries(ctx context.Context) error {
	s.canaries.mu.Lock()
	run := s.canaries.run
	s.canaries.run = nil
	s.canaries.mu.Unlock()
	var errs []error
	for tier, r := range run {
		if err := r.rt.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tier %q: stop canary: %w", tier, err))
		}
	}
	return errors.Join(errs...)
}
