package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// Annotations Replace sets on the pod template of the tier's Deployment.
// Changing the template is what makes Kubernetes roll the pods; deploy/k8s
// lets the scaler change nothing else of it.
const (
	// AnnotationSpec is the sha256 of the replicas' command line and of
	// the pipeline file as the runtime read it at the Replace: pods of
	// one value read the same pipeline.
	AnnotationSpec = "ddnn.io/spec-sha256"
	// AnnotationReplacedAt is when the Replace began (RFC 3339): it
	// changes the template even when the file did not (a model replaced
	// at the same path), as `kubectl rollout restart` does.
	AnnotationReplacedAt = "ddnn.io/replaced-at"
)

// defaultRolloutTimeout bounds a Replace when Config sets no timeout.
const defaultRolloutTimeout = 5 * time.Minute

// tier is the replicas' tier, from their Spec.
func (r *Runtime) tier() string {
	s := r.Spec()
	return s.Tier()
}

// Spec is the spec of the replicas (the last Replace's).
func (r *Runtime) Spec() runtime.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spec
}

// Replace is a rolling update of the tier's Deployment (see
// runtime.Replacer): it patches the pod template's annotations (spec
// hash, time), so the Deployment controller starts pods that read the
// pipeline anew, one more than wanted at a time and removing an old one
// only once a new one is available (deploy/k8s sets maxSurge 1,
// maxUnavailable 0), while the Service and the replica list keep the
// ready ones. Replace waits as `kubectl rollout status` does: the
// controller saw the new template, every replica is updated, none of the
// old is left and all are available. When that does not happen within
// RolloutTimeout, the Deployment reports its progress deadline exceeded,
// or ctx ends, it rolls back as `kubectl rollout undo` does, restoring the
// template's previous annotations, which brings the old pods back to the
// full count and removes the new ones, and returns why.
//
// The pods' arguments stay the Deployment's: in a cluster they read the
// pipeline from its ConfigMap, not from the spec's path on this machine.
func (r *Runtime) Replace(ctx context.Context, spec runtime.Spec) error {
	if tier := r.tier(); spec.Tier() != tier {
		return fmt.Errorf("replace deployment %s of tier %q: the new spec is of tier %q", r.name(), tier, spec.Tier())
	}
	if err := r.change.Lock(ctx, spec.Tier()); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	defer r.change.Unlock()
	d, err := r.getDeployment(ctx)
	if err != nil {
		return err
	}
	if why := surgeFree(&d.Spec.Strategy); why != "" {
		r.log.Warn("the deployment's rollout may make pods unavailable", "why", why, "fix", "strategy rollingUpdate maxUnavailable 0, maxSurge 1, as deploy/k8s has")
	}
	hash, err := specHash(spec)
	if err != nil {
		return fmt.Errorf("replace deployment %s: %w", r.name(), err)
	}
	previous := d.Spec.Template.Annotations
	patched, err := r.patchTemplate(ctx, map[string]*string{
		AnnotationSpec:       &hash,
		AnnotationReplacedAt: ptr(time.Now().UTC().Format(time.RFC3339Nano)),
	})
	if err != nil {
		return err
	}
	r.log.Info("rolling out", "spec_sha256", hash[:12], "generation", patched.Generation, "timeout", r.cfg.RolloutTimeout)
	if err := r.waitRollout(ctx, patched.Generation); err != nil {
		undo := map[string]*string{AnnotationSpec: nil, AnnotationReplacedAt: nil}
		for k := range undo {
			if v, ok := previous[k]; ok {
				undo[k] = &v
			}
		}
		// ctx may have ended: the undo gets a request's time of its own.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
		defer cancel()
		if _, uerr := r.patchTemplate(uctx, undo); uerr != nil {
			return fmt.Errorf("replace deployment %s: %w; rolling back failed too: %w", r.name(), err, uerr)
		}
		r.log.Warn("rollout rolled back", "err", err)
		return fmt.Errorf("replace deployment %s: %w; rolled back to the previous pod template, which keeps the old pods", r.name(), err)
	}
	r.mu.Lock()
	r.spec = spec
	r.mu.Unlock()
	r.log.Info("rolled out", "spec_sha256", hash[:12])
	return nil
}

func ptr[T any](v T) *T { return &v }

// deployment is a request on the tier's Deployment.
func (r *Runtime) deployment(req *rest.Request) *rest.Request {
	return req.Namespace(r.cfg.Namespace).Resource("deployments").Name(r.cfg.Deployment)
}

func (r *Runtime) getDeployment(ctx context.Context) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	if err := r.deployment(r.apps.Get()).Do(ctx).Into(d); err != nil {
		return nil, fmt.Errorf("kubernetes: deployment %s: get: %w", r.name(), err)
	}
	return d, nil
}

// patchTemplate sets (or, for nil, removes) annotations of the pod
// template with a JSON merge patch, which touches nothing else.
func (r *Runtime) patchTemplate(ctx context.Context, annotations map[string]*string) (*appsv1.Deployment, error) {
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": annotations}}}})
	if err != nil {
		return nil, err
	}
	d := &appsv1.Deployment{}
	if err := r.deployment(r.apps.Patch(types.MergePatchType)).Body(body).Do(ctx).Into(d); err != nil {
		return nil, fmt.Errorf("kubernetes: deployment %s: patch the pod template: %w", r.name(), err)
	}
	return d, nil
}

// waitRollout polls the Deployment until the rollout of generation is
// complete (rolloutDone), within RolloutTimeout and ctx.
func (r *Runtime) waitRollout(ctx context.Context, generation int64) error {
	timedOut := fmt.Errorf("rollout not complete within %s", r.cfg.RolloutTimeout)
	ctx, cancel := context.WithTimeoutCause(ctx, r.cfg.RolloutTimeout, timedOut)
	defer cancel()
	tick := time.NewTicker(r.poll)
	defer tick.Stop()
	progress := "no status read yet"
	for {
		d, err := r.getDeployment(ctx)
		switch {
		case err == nil:
			var done bool
			if done, progress, err = rolloutDone(d, generation); err != nil {
				return err
			} else if done {
				return nil
			}
		case ctx.Err() == nil:
			r.log.Warn("rollout status", "err", err) // read again at the next tick
		}
		select {
		case <-ctx.Done():
			if context.Cause(ctx) == timedOut {
				return fmt.Errorf("%w: %s", timedOut, progress)
			}
			return fmt.Errorf("waiting for the rollout (%s): %w", progress, ctx.Err())
		case <-tick.C:
		}
	}
}

// rolloutDone is `kubectl rollout status`'s test of a Deployment after a
// template change of generation: whether the rollout is complete, how far
// it is, and an error once the controller gave up on it.
func rolloutDone(d *appsv1.Deployment, generation int64) (bool, string, error) {
	if d.Status.ObservedGeneration < generation {
		return false, fmt.Sprintf("the controller has not seen generation %d yet", generation), nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("the deployment exceeded its progress deadline: %s", c.Message)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	progress := fmt.Sprintf("%d of %d pods updated, %d available, %d old left", s.UpdatedReplicas, want, s.AvailableReplicas, max(0, s.Replicas-s.UpdatedReplicas))
	done := s.UpdatedReplicas >= want && s.Replicas <= s.UpdatedReplicas && s.AvailableReplicas >= s.UpdatedReplicas
	return done, progress, nil
}

// surgeFree says why a rollout by strategy s may leave fewer pods
// available than wanted, or "" when it cannot.
func surgeFree(s *appsv1.DeploymentStrategy) string {
	if s.Type == appsv1.RecreateDeploymentStrategyType {
		return "strategy Recreate stops every pod before starting new ones"
	}
	if s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil {
		return "maxUnavailable is not set (Kubernetes defaults it to 25%)"
	}
	if u := *s.RollingUpdate.MaxUnavailable; u != intstr.FromInt32(0) && u != intstr.FromString("0%") {
		return "maxUnavailable is " + u.String()
	}
	return ""
}

// specHash is AnnotationSpec's value for spec: its command line and the
// pipeline file it names, when this machine can read it.
func specHash(spec runtime.Spec) (string, error) {
	h := sha256.New()
	h.Write([]byte(strings.Join(spec.Args(""), "\x00")))
	if spec.Replica.File != "" {
		b, err := os.ReadFile(spec.Replica.File)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("pipeline file: %w", err)
		}
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
