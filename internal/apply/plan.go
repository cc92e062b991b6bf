// Package apply plans the change of a running pipeline to the one a YAML
// file describes (`ddnn apply`). It compares two Specs, the running one
// (served by `ddnn up` on its admin address, see Describe) and the file's,
// and sorts every difference into one of three kinds:
//
//   - Live: a setting the running parts change in place (a tier's exit
//     policy and threshold, its replica bounds and scaling rules, its
//     connector's batching and timeouts, its canary, a funnel's device
//     rate limit);
//   - Rollout: a tier whose model file (by its sha256) or inference
//     settings changed, whose replicas are replaced; a plan that changes
//     a model has the new chain checked as `ddnn models check` does, and
//     a model that does not fit it is refused;
//   - Refused: everything else, each with the reason it cannot change
//     while the pipeline runs. A plan with anything refused is refused as
//     a whole.
//
// The Live and Rollout settings are listed one by one in Plan; every
// setting not listed there is found by a walk of the whole pipeline and
// refused, so a setting added to package pipeline is refused until it is
// classified here. The package plans only: it changes nothing (it reads
// the models' files, and with ONNX Runtime their inputs and outputs).
package apply

import (
	"fmt"
	"reflect"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Change is one setting that differs, by its YAML path.
type Change struct {
	Path     string
	Old, New string
	// Reason says why the change is refused (Refused only).
	Reason string
}

// Rollout is a tier whose replicas are replaced, with why.
type Rollout struct {
	Tier    string
	Changes []Change
}

// Plan is what applying a pipeline would do.
type Plan struct {
	Live     []Change
	Rollouts []Rollout
	Refused  []Change
}

// OK reports whether the plan may be applied: nothing refused.
func (p *Plan) OK() bool { return len(p.Refused) == 0 }

// Empty reports whether nothing differs.
func (p *Plan) Empty() bool { return len(p.Live)+len(p.Rollouts)+len(p.Refused) == 0 }

// Compute plans the change from running to next. Neither is modified.
// When a tier's model changes, next's chain is checked (models.Check) and
// each model change refused with the check's problems if it fails.
func Compute(running, next *Spec) Plan {
	var plan Plan
	// The settings Live and Rollout take are copied from next onto a
	// copy of running as they are recorded; what still differs after is
	// refused.
	old, nu := clonePipeline(running.Pipeline), clonePipeline(next.Pipeline)
	sameTiers := len(old.Tiers) == len(nu.Tiers)
	for i := 0; sameTiers && i < len(old.Tiers); i++ {
		sameTiers = old.Tiers[i].Name == nu.Tiers[i].Name
	}
	if sameTiers {
		for i := range old.Tiers {
			o, n := &old.Tiers[i], &nu.Tiers[i]
			f := fmt.Sprintf("tiers[%d] (%s)", i, o.Name)
			liveTier(&plan, f, o, n)
			liveCanary(&plan, f, o, n, running.ModelSHA256[CanaryKey(o.Name)], next.ModelSHA256[CanaryKey(n.Name)])
			if r := rolloutTier(f, o, n, running.ModelSHA256[o.Name], next.ModelSHA256[n.Name]); len(r.Changes) > 0 {
				plan.Rollouts = append(plan.Rollouts, r)
			}
		}
	}
	// A device rate limit on the top-level funnel (the one site of a
	// pipeline without sites:, else what the sites inherit) and on each
	// site's.
	liveFunnel(&plan, "funnel", &old.Funnel, &nu.Funnel)
	if len(old.SiteList) == len(nu.SiteList) {
		for i := range old.SiteList {
			if old.SiteList[i].Name == nu.SiteList[i].Name {
				liveFunnel(&plan, fmt.Sprintf("sites[%d] (%s).funnel", i, old.SiteList[i].Name), &old.SiteList[i].Funnel.Funnel, &nu.SiteList[i].Funnel.Funnel)
			}
		}
	}
	plan.Refused = refused(old, nu)
	refuseBrokenChain(&plan, next.Pipeline)
	return plan
}

// liveTier records the tier settings its running parts change in place:
// the exit policy and threshold (the tier's replicas decide exits), the
// replica bounds and scaling rules (the scaler), and the connector's
// batching and timeouts; the tier's canary is liveCanary's.
func liveTier(plan *Plan, f string, o, n *pipeline.Tier) {
	live(plan, f+".exit.policy", &o.Exit.Policy, &n.Exit.Policy)
	live(plan, f+".exit.threshold", &o.Exit.Threshold, &n.Exit.Threshold)
	live(plan, f+".replicas.min", &o.Replicas.Min, &n.Replicas.Min)
	live(plan, f+".replicas.max", &o.Replicas.Max, &n.Replicas.Max)
	s, ns := &o.Scaling, &n.Scaling
	live(plan, f+".scaling.poll_interval", &s.PollInterval, &ns.PollInterval)
	live(plan, f+".scaling.target_drain", &s.TargetDrain, &ns.TargetDrain)
	live(plan, f+".scaling.lag_per_replica", &s.LagPerReplica, &ns.LagPerReplica)
	live(plan, f+".scaling.activation_lag", &s.ActivationLag, &ns.ActivationLag)
	live(plan, f+".scaling.stabilization_window", &s.StabilizationWindow, &ns.StabilizationWindow)
	live(plan, f+".scaling.cooldown_to_zero", &s.CooldownToZero, &ns.CooldownToZero)
	c, nc := &o.Connector, &n.Connector
	live(plan, f+".connector.max_batch", &c.MaxBatch, &nc.MaxBatch)
	live(plan, f+".connector.max_wait", &c.MaxWait, &nc.MaxWait)
	live(plan, f+".connector.max_attempts", &c.MaxAttempts, &nc.MaxAttempts)
	live(plan, f+".connector.request_timeout", &c.RequestTimeout, &nc.RequestTimeout)
	live(plan, f+".connector.backoff", &c.Backoff, &nc.Backoff)
	live(plan, f+".connector.max_backoff", &c.MaxBackoff, &nc.MaxBackoff)
}

// liveFunnel records a funnel's device rate limit, which the funnel
// changes in place.
func liveFunnel(plan *Plan, f string, o, n *pipeline.Funnel) {
	r, nr := &o.DeviceRateLimit, &n.DeviceRateLimit
	live(plan, f+".device_rate_limit.rate", &r.Rate, &nr.Rate)
	live(plan, f+".device_rate_limit.burst", &r.Burst, &nr.Burst)
	live(plan, f+".device_rate_limit.max_devices", &r.MaxDevices, &nr.MaxDevices)
}

// rolloutTier is the tier's rollout: its model (by sha256; the path it is
// read from is not compared), its version label, which its replicas name
// in every answer, the previous tier's models it accepts, and its inference settings, which its replicas load at
// start.
func rolloutTier(f string, o, n *pipeline.Tier, oldSHA, newSHA string) Rollout {
	r := Rollout{Tier: o.Name}
	if oldSHA != newSHA {
		r.Changes = append(r.Changes, Change{Path: f + ".model", Old: "sha256 " + oldSHA, New: "sha256 " + newSHA + " (" + n.Model + ")"})
	}
	o.Model = n.Model
	change(&r.Changes, f+".version", &o.Version, &n.Version)
	change(&r.Changes, f+".accepts", &o.Accepts, &n.Accepts)
	in, nin := &o.Inference, &n.Inference
	change(&r.Changes, f+".inference.intra_op_threads", &in.IntraOpThreads, &nin.IntraOpThreads)
	change(&r.Changes, f+".inference.max_batch", &in.MaxBatch, &nin.MaxBatch)
	change(&r.Changes, f+".inference.max_request_bytes", &in.MaxRequestBytes, &nin.MaxRequestBytes)
	change(&r.Changes, f+".inference.emulate.service_time_per_sample", &in.Emulate.ServiceTimePerSample, &nin.Emulate.ServiceTimePerSample)
	change(&r.Changes, f+".inference.emulate.max_concurrency", &in.Emulate.MaxConcurrency, &nin.Emulate.MaxConcurrency)
	return r
}

// live records a Live change of the setting at path when it differs.
func live[T any](plan *Plan, path string, old, new *T) { change(&plan.Live, path, old, new) }

// change appends the setting at path to changes when *old and *new
// differ, and sets *old to *new: the difference is accounted for.
func change[T any](changes *[]Change, path string, old, new *T) {
	if reflect.DeepEqual(*old, *new) {
		return
	}
	*changes = append(*changes, Change{Path: path, Old: pipeline.FormatSetting(*old), New: pipeline.FormatSetting(*new)})
	*old = *new
}

// clonePipeline copies p deep enough that Compute may set its settings:
// the tiers and sites (the slices it writes into) are copied.
func clonePipeline(p *pipeline.Pipeline) *pipeline.Pipeline {
	c := *p
	c.Tiers = append([]pipeline.Tier(nil), p.Tiers...)
	c.SiteList = append([]pipeline.Site(nil), p.SiteList...)
	return &c
}
