package up

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/ddnn-continuum/ddnn/models"
)

// tierModel is what a rollout needs to know of a tier's model to keep
// every forward readable: which forwards it reads, which it writes.
type tierModel struct {
	version wire.ModelVersion
	accepts []string
	// input and forward are the elements per sample of the model's input
	// and forward output (0 for the last tier, which has none).
	input, forward int
}

// reads says whether m reads the forwards producer writes, as its
// replicas decide (inference.Accepts).
func (m tierModel) reads(producer tierModel) bool {
	return inference.Accepts(m.accepts, producer.version, m.input == producer.forward)
}

// readModels opens the models of spec's tiers and checks their chain
// (models.Check: each forward fits the next tier's input), with the ONNX
// Runtime the replicas use.
func (s *Supervisor) readModels(spec *apply.Spec) (map[string]tierModel, error) {
	if _, err := onnx.Init(s.cfg.ORTLib); err != nil {
		return nil, err
	}
	rep, err := models.Check(spec.Pipeline)
	if err != nil {
		return nil, err
	}
	out := make(map[string]tierModel, len(rep.Tiers))
	for i, tr := range rep.Tiers {
		t := &spec.Pipeline.Tiers[i]
		m := tierModel{
			version: wire.ModelVersion{SHA: spec.ModelSHA256[t.Name], Version: t.Version},
			accepts: t.Accepts,
			input:   inference.Elements(inference.PerSample(tr.Heads.Input.Shape)),
		}
		if f := tr.Heads.Forward; f != nil {
			m.forward = inference.Elements(inference.PerSample(f.Shape))
		}
		out[t.Name] = m
	}
	return out, nil
}

// planForwards decides how the plan's rollouts keep every forward
// readable, before anything changes. A rolled-out tier whose new model
// does not read the forwards of the previous tier's running model keeps
// its old replicas beside the new ones (the tiers it returns) until the
// old forwards are done: the previous tier must be rolled out with it,
// on the same site, to a model the new one reads. Anything else that
// would leave forwards no model reads is an error naming the tiers.
func (s *Supervisor) planForwards(plan *apply.Plan, next *apply.Spec, running, nextModels map[string]tierModel) (beside []string, err error) {
	rolled := map[string]bool{}
	for _, r := range plan.Rollouts {
		rolled[r.Tier] = true
	}
	p := next.Pipeline
	var errs []error
	for i := 1; i < len(p.Tiers); i++ {
		t, q := p.Tiers[i].Name, p.Tiers[i-1].Name
		if !rolled[t] && !rolled[q] {
			continue
		}
		if n, prev := nextModels[t], nextModels[q]; !n.reads(prev) {
			errs = append(errs, fmt.Errorf("tier %q: model %s would not read the forwards of tier %q's model %s (%s)", t, n.version, q, prev.version, mismatch(n, prev)))
			continue
		}
		if !rolled[t] || nextModels[t].reads(running[q]) {
			continue
		}
		here := s.runtime(t) != nil
		switch {
		case !rolled[q]:
			errs = append(errs, fmt.Errorf("tier %q: the new model %s does not read the forwards of tier %q's running model %s (%s): roll out %q with a model it reads", t, nextModels[t].version, q, running[q].version, mismatch(nextModels[t], running[q]), q))
		case here != (s.runtime(q) != nil):
			errs = append(errs, fmt.Errorf("tier %q: the new model %s does not read the forwards of tier %q's running model %s, and the two tiers run on different sites: a live rollout keeps the old %q replicas until %q's old forwards are done only when both run on one site", t, nextModels[t].version, q, running[q].version, t, q))
		case here && !canReplaceBeside(s.runtime(t)):
			errs = append(errs, fmt.Errorf("tier %q: the new model %s does not read the forwards of tier %q's running model %s, and the tier's runtime cannot keep its old replicas beside the new ones until they are done (the process runtime can)", t, nextModels[t].version, q, running[q].version))
		case here:
			beside = append(beside, t)
		}
	}
	return beside, errors.Join(errs...)
}

// canReplaceBeside says whether rt can keep a tier's old replicas beside
// the new ones (rollOutBeside).
func canReplaceBeside(rt runtime.Runtime) bool {
	_, ok := rt.(interface {
		runtime.BesideReplacer
		Spec() runtime.Spec
	})
	return ok
}

// mismatch says why m does not read producer's forwards.
func mismatch(m, producer tierModel) string {
	if len(m.accepts) > 0 {
		return fmt.Sprintf("its accepts lists %v", m.accepts)
	}
	return fmt.Sprintf("it takes %d elements per sample, the forward has %d", m.input, producer.forward)
}

// rollOutAll rolls out the plan's tiers that run on this site, the last
// tier first, so that a tier's new model runs before the previous tier's
// new model writes forwards for it. A tier in beside keeps its old
// replicas serving until the forwards the previous tier's old model
// wrote are processed (awaitOldForwards); if the previous tier's rollout
// fails, the new replicas of the tier are stopped and the old ones serve
// on, as before the apply.
func (s *Supervisor) rollOutAll(ctx context.Context, plan *apply.Plan, next *apply.Spec, beside []string) error {
	tiers := s.p.Tiers
	besides := map[string]runtime.Beside{}
	var errs []error
	undoBesides := func() {
		for t, b := range besides {
			s.log.Warn("reload: undoing the rollout of a tier whose previous tier's rollout failed; its old replicas serve on", "tier", t)
			b.Undo()
		}
	}
	for i := len(tiers) - 1; i >= 0; i-- {
		t := tiers[i].Name
		if !slices.ContainsFunc(plan.Rollouts, func(r apply.Rollout) bool { return r.Tier == t }) {
			continue
		}
		if slices.Contains(beside, t) {
			b, err := s.rollOutBeside(ctx, t, next.ModelSHA256[t])
			if err != nil {
				undoBesides()
				return errors.Join(append(errs, err)...)
			}
			besides[t] = b
			continue
		}
		if err := s.rollOut(ctx, t, next.ModelSHA256[t]); err != nil {
			if _, nextBeside := besides[tiers[min(i+1, len(tiers)-1)].Name]; nextBeside {
				undoBesides()
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
		}
	}
	var wg sync.WaitGroup
	for i, tr := range tiers {
		b, ok := besides[tr.Name]
		if !ok {
			continue
		}
		wg.Go(func() {
			err := s.awaitOldForwards(ctx, tiers[i-1].Name, tr.Name)
			if err != nil {
				s.log.Warn("reload: retiring the old replicas before their forwards are done; those left wait for a replica that reads them", "tier", tr.Name, "err", err)
			}
			b.Retire()
			if err == nil {
				s.log.Info("reload: old replicas retired, their forwards done", "tier", tr.Name)
			}
		})
	}
	retired := make(chan struct{})
	go func() { wg.Wait(); close(retired) }()
	select {
	case <-retired:
	case <-time.After(oldForwardsWait):
		s.log.Warn("reload: the old forwards are not done yet; the old replicas serve on and retire once they are", "waited", oldForwardsWait)
	}
	return errors.Join(errs...)
}

// oldForwardsWait bounds how long a reload waits for the old replicas of
// a tier rolled out beside them to retire; past it they retire later, on
// their own, once their forwards are done.
const oldForwardsWait = 2 * time.Minute

// rolledSpec is spec rolled out to the model of sha256 prefix modelSHA:
// its replicas read the pipeline file anew and refuse to serve another
// model (inference.Command.ModelSHA).
func rolledSpec(spec runtime.Spec, modelSHA string) runtime.Spec {
	spec.Replica.ModelSHA = modelSHA
	return spec
}

// rollOutBeside replaces tier's replicas keeping the old ones beside the
// new, where its runtime can (runtime.BesideReplacer).
func (s *Supervisor) rollOutBeside(ctx context.Context, tier, modelSHA string) (runtime.Beside, error) {
	rep, ok := s.runtime(tier).(interface {
		runtime.BesideReplacer
		Spec() runtime.Spec
	})
	if !ok { // planForwards refused it
		return runtime.Beside{}, fmt.Errorf("tier %q: rollout: its runtime cannot keep the old replicas beside the new ones", tier)
	}
	s.log.Info("reload: rolling out, the old replicas serving beside the new until the old forwards are done", "tier", tier)
	b, err := rep.ReplaceBeside(ctx, rolledSpec(rep.Spec(), modelSHA))
	if err != nil {
		return runtime.Beside{}, fmt.Errorf("tier %q: rollout: %w", tier, err)
	}
	return b, nil
}

// awaitOldForwards waits until the forwards prev's old model wrote for
// tier are processed: prev is rolled out already, so every record its
// connector read before now may have gone to an old replica; once its
// group is past them, their forwards are written, and once tier's group
// is past those, they are processed. ctx bounds it (the apply's
// timeout).
func (s *Supervisor) awaitOldForwards(ctx context.Context, prev, tier string) error {
	cl, err := s.kafkaClient("up", nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range []string{prev, tier} {
		if err := kafka.AwaitPassed(ctx, adm, s.p.ConsumerGroup(t), s.p.InputTopic(t), 100*time.Millisecond); err != nil {
			return fmt.Errorf("tier %q: %w", t, err)
		}
	}
	return nil
}
