package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/ddnn-continuum/ddnn/scaler"
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
		Load: func() (*pipeline.Pipeline, error) { return command.LoadPipeline(s.cfg.File) },
		Apply: func(p *pipeline.Pipeline) error {
			if !s.reloadMu.TryLock() {
				s.log.Info("reload: waiting for the reload under way to finish", "since", s.reloadingSince().Format(time.RFC3339))
				s.reloadMu.Lock()
			}
			defer s.reloadMu.Unlock()
			return s.reload(ctx, p)
		},
		Log: s.log,
	}.OnSIGHUP(ctx)
	return func() {
		cancel()
		stopSignals()
	}
}

// reload plans p against the running pipeline and applies the plan. The
// caller holds reloadMu: one reload at a time (a SIGHUP waits for the one
// under way, an apply is refused while one is).
func (s *Supervisor) reload(ctx context.Context, p *pipeline.Pipeline) error {
	s.mu.Lock()
	s.reloading = time.Now()
	s.mu.Unlock()
	next, err := apply.Load(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	running, runningModels, modelsErr := s.applied, s.models, s.modelsErr
	s.mu.Unlock()
	plan := apply.Compute(running, next)
	var b strings.Builder
	apply.Print(&b, &plan)
	for line := range strings.Lines(b.String()) {
		s.log.Info("reload: plan", "line", strings.TrimRight(line, "\n"))
	}
	if !plan.OK() {
		return fmt.Errorf("%d settings cannot change while the pipeline runs, or not to what the file says (see the plan above)", len(plan.Refused))
	}
	nextModels, err := s.readModels(next)
	if err != nil {
		return fmt.Errorf("refused, nothing changed: the file's models: %w", err)
	}
	var beside []string
	if len(plan.Rollouts) > 0 {
		if modelsErr != nil {
			return fmt.Errorf("refused, nothing changed: the running models could not be read at start (%v), so a rollout cannot tell which forwards they read", modelsErr)
		}
		if beside, err = s.planForwards(&plan, next, runningModels, nextModels); err != nil {
			return fmt.Errorf("refused, nothing changed: %w", err)
		}
	}
	// New candidates ready before the connectors route to them.
	if err := s.applyCanaries(ctx, p); err != nil {
		return err
	}
	s.forwardSIGHUP()
	errs := []error{s.resize(ctx, running.Pipeline, p)}
	errs = append(errs, s.rollOutAll(ctx, &plan, next, beside))
	s.mu.Lock()
	s.applied, s.models = next, nextModels
	s.mu.Unlock()
	return errors.Join(errs...)
}

// rollOut replaces tier's replicas by ones that read the pipeline file
// anew, where its runtime can (runtime.Replacer); the replicas of a
// runtime that cannot keep running as they are, and the log says so.
func (s *Supervisor) rollOut(ctx context.Context, tier, modelSHA string) error {
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
	if err := rep.Replace(ctx, rolledSpec(rep.Spec(), modelSHA)); err != nil {
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

// applyRequest is the body of POST httpapi.PathApply: the file ddnn apply
// planned, as a Description.
type applyRequest struct {
	File        string             `json:"file"`
	Description *apply.Description `json:"description"`
}

// serveApply applies the file ddnn up runs, as a SIGHUP does, on behalf
// of `ddnn apply`: only when that file is what ddnn apply planned (the
// file it read, described), so that what is applied is what was shown.
// It answers once the plan is applied (the rollouts done) or refused.
func (s *Supervisor) serveApply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.Description == nil {
		applyError(w, http.StatusBadRequest, fmt.Sprintf("want {\"file\", \"description\"} (ddnn apply sends it): %v", err))
		return
	}
	planned, err := req.Description.Spec()
	if err != nil {
		applyError(w, http.StatusBadRequest, "the planned pipeline: "+err.Error())
		return
	}
	p, err := command.LoadPipeline(s.cfg.File)
	if err != nil {
		applyError(w, http.StatusConflict, "the file ddnn up runs does not load: "+err.Error())
		return
	}
	ours, err := apply.Load(p)
	if err != nil {
		applyError(w, http.StatusConflict, "the file ddnn up runs: "+err.Error())
		return
	}
	if d := apply.Compute(planned, ours); !d.Empty() {
		var b strings.Builder
		apply.Print(&b, &d)
		applyError(w, http.StatusConflict, fmt.Sprintf("ddnn up runs %s, which is not %s as planned; apply changes the file ddnn up runs: edit it and apply it. It differs in:\n%s", s.cfg.File, req.File, b.String()))
		return
	}
	if !s.reloadMu.TryLock() {
		applyError(w, http.StatusConflict, fmt.Sprintf("another apply or reload is under way (since %s): nothing changed; apply again once it is done", s.reloadingSince().Format(time.RFC3339)))
		return
	}
	defer s.reloadMu.Unlock()
	s.log.Info("reload: applying on behalf of ddnn apply", "file", s.cfg.File, "remote", r.RemoteAddr)
	if err := s.reload(s.supervise, p); err != nil {
		applyError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{\"applied\":true}\n")
}

// reloadingSince is when the last reload began.
func (s *Supervisor) reloadingSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloading
}

// applyError answers an apply with code and why, as JSON.
func applyError(w http.ResponseWriter, code int, why string) {
	httpapi.WriteError(w, code, &wire.ErrorBody{Error: why})
}

// resize applies the tiers' replica bounds and scaling settings that
// changed from old to p: the scaler decides with them from its next poll
// (scaler.Update); a tier of fixed size is scaled to its new size. A tier
// that was fixed at start cannot be handed to the scaler live.
func (s *Supervisor) resize(ctx context.Context, old, p *pipeline.Pipeline) error {
	s.mu.Lock()
	sc := s.scaler
	s.mu.Unlock()
	var errs []error
	for i := range p.Tiers {
		t, was := &p.Tiers[i], &old.Tiers[i]
		rt := s.runtime(t.Name)
		if rt == nil || (t.Replicas.Min == was.Replicas.Min && t.Replicas.Max == was.Replicas.Max && t.Scaling == was.Scaling) {
			continue // not on this site, or unchanged
		}
		b := scaler.Bounds{Min: t.Replicas.Min, Max: t.Replicas.Max, Settings: t.Scaling}
		switch {
		case was.Replicas.Scaled():
			if err := sc.Update(t.Name, b); err != nil {
				errs = append(errs, err)
				continue
			}
			s.log.Info("reload: scaling bounds applied", "tier", t.Name, "min", b.Min, "max", b.Max)
		case !t.Replicas.Scaled():
			if err := rt.Scale(ctx, t.Replicas.Min); err != nil {
				errs = append(errs, fmt.Errorf("tier %q: scale to %d: %w", t.Name, t.Replicas.Min, err))
				continue
			}
			s.log.Info("reload: replicas set", "tier", t.Name, "replicas", t.Replicas.Min)
		default:
			errs = append(errs, fmt.Errorf("tier %q: replicas %d..%d: the tier was of fixed size at start, so no scaler sizes it: restart ddnn up to scale it", t.Name, b.Min, b.Max))
		}
	}
	return errors.Join(errs...)
}
