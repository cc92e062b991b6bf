package kubernetes

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// fakeDeployment is the tier's Deployment in fakeAPI, with a Deployment
// controller played by step: each read of the Deployment first runs it.
// A PATCH must be a JSON merge patch of pod template annotations and
// nothing else (what the scaler's admission policy allows).
type fakeDeployment struct {
	d       appsv1.Deployment
	step    func(d *appsv1.Deployment)
	patches int
}

func (f *fakeDeployment) serve(t *testing.T, w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		if f.step != nil {
			f.step(&f.d)
		}
	case http.MethodPatch:
		if ct := r.Header.Get("Content-Type"); ct != "application/merge-patch+json" {
			t.Errorf("PATCH deployment Content-Type %q, want a JSON merge patch", ct)
		}
		var patch struct {
			Spec struct {
				Template struct {
					Metadata struct {
						Annotations map[string]*string `json:"annotations"`
					} `json:"metadata"`
				} `json:"template"`
			} `json:"spec"`
		}
		b, _ := io.ReadAll(r.Body)
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&patch); err != nil {
			t.Errorf("PATCH deployment %s: %v: it may change pod template annotations only", b, err)
			status(w, http.StatusForbidden, "Forbidden", "the scaler may only change the pod template's annotations")
			return
		}
		ann := maps.Clone(f.d.Spec.Template.Annotations)
		if ann == nil {
			ann = map[string]string{}
		}
		for k, v := range patch.Spec.Template.Metadata.Annotations {
			if !strings.HasPrefix(k, "ddnn.io/") {
				t.Errorf("PATCH deployment: annotation %q outside ddnn.io/", k)
			}
			if v == nil {
				delete(ann, k)
			} else {
				ann[k] = *v
			}
		}
		if !maps.Equal(ann, f.d.Spec.Template.Annotations) {
			f.d.Spec.Template.Annotations = ann
			f.d.Generation++
		}
		f.patches++
	default:
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		status(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "unexpected request")
		return
	}
	d := f.d
	d.APIVersion, d.Kind = "apps/v1", "Deployment"
	json.NewEncoder(w).Encode(&d)
}

// deploymentOf is a Deployment of n pods, rolled out, as deploy/k8s makes
// it: maxSurge 1, maxUnavailable 0; its template has the annotations ann.
func deploymentOf(n int32, ann map[string]string) appsv1.Deployment {
	var d appsv1.Deployment
	d.Name, d.Namespace, d.Generation = deploy, ns, 3
	d.Spec.Replicas = &n
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one}}
	d.Spec.Template.Annotations = ann
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	return d
}

// healthy is a controller whose new pods get ready: after a template
// change its status stays the old one (complete, of the old generation)
// for lag reads, then it swaps one pod per read, never fewer than wanted
// available.
func healthy(lag int) func(d *appsv1.Deployment) {
	var gen int64
	reads := 0
	return func(d *appsv1.Deployment) {
		if d.Generation != gen {
			gen, reads = d.Generation, 0
		}
		if reads++; reads <= lag {
			return
		}
		want, s := *d.Spec.Replicas, &d.Status
		switch {
		case s.ObservedGeneration != d.Generation:
			s.ObservedGeneration, s.UpdatedReplicas, s.Replicas = d.Generation, 0, want+1 // one surge pod starting
		case s.UpdatedReplicas < want:
			s.UpdatedReplicas++ // ready: an old one goes, the next surge pod starts
			if s.UpdatedReplicas == want {
				s.Replicas = want
			}
		}
		s.AvailableReplicas = want
	}
}

// stuck is a controller whose new pod never gets ready: one surge pod,
// the old ones all available.
func stuck(d *appsv1.Deployment) {
	want := *d.Spec.Replicas
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: want + 1, UpdatedReplicas: 1, AvailableReplicas: want}
}

// rolledOut reports whether d's status is a complete rollout of its
// current template.
func rolledOut(d *appsv1.Deployment) bool {
	s, want := d.Status, *d.Spec.Replicas
	return s.ObservedGeneration == d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// replaceRuntime is a runtime of the edge tier whose spec reads file,
// against f with dep.
func replaceRuntime(t *testing.T, dep *fakeDeployment, file string, timeout time.Duration) (*Runtime, *fakeAPI) {
	t.Helper()
	f, srv := newFake(t, false)
	f.dep = dep
	rt, err := New(Config{REST: &rest.Config{Host: srv.URL, BearerToken: token}, Namespace: ns, Deployment: deploy,
		Spec: edgeSpec(file), RolloutTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	rt.poll = time.Millisecond
	return rt, f
}

func edgeSpec(file string) runtime.Spec {
	return runtime.Spec{Pipeline: "fmnist", Replica: inference.Command{File: file, Tier: "edge"}}
}

// pipelineFile writes text to a pipeline file of the test's.
func pipelineFile(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestReplaceRollsTheDeployment: Replace patches the pod template's
// annotations only (the spec's hash, when it began) and returns once the
// rollout is complete as `kubectl rollout status` judges it, not on the
// status of the old generation the controller still reports at first;
// Spec is then the new one.
func TestReplaceRollsTheDeployment(t *testing.T) {
	v1, v2 := pipelineFile(t, "name: v1\n"), pipelineFile(t, "name: v2\n")
	dep := &fakeDeployment{d: deploymentOf(3, map[string]string{"example.com/owner": "ops"}), step: healthy(5)}
	rt, f := replaceRuntime(t, dep, v1, time.Minute)
	began := time.Now().UTC()
	if err := rt.Replace(context.Background(), edgeSpec(v2)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &dep.d
	if !rolledOut(d) || d.Generation != 4 {
		t.Errorf("Replace returned at generation %d, status %+v: want the rollout of generation 4 complete", d.Generation, d.Status)
	}
	ann := d.Spec.Template.Annotations
	want, err := specHash(edgeSpec(v2))
	if err != nil {
		t.Fatal(err)
	}
	if ann[AnnotationSpec] != want || ann["example.com/owner"] != "ops" || len(ann) != 3 {
		t.Errorf("template annotations %v, want the operator's kept and %s %s", ann, AnnotationSpec, want)
	}
	if at, err := time.Parse(time.RFC3339Nano, ann[AnnotationReplacedAt]); err != nil || at.Before(began.Add(-time.Second)) {
		t.Errorf("%s %q (%v), want the time of the Replace", AnnotationReplacedAt, ann[AnnotationReplacedAt], err)
	}
	if got := rt.Spec().Replica.File; got != v2 {
		t.Errorf("Spec is of %s, want %s", got, v2)
	}
	if old, _ := specHash(edgeSpec(v1)); old == want {
		t.Error("two pipeline files hash alike")
	}
}

// TestReplaceRollsBack: a rollout whose new pod never gets ready within
// the timeout, one the controller reports past its progress deadline, and
// one whose caller gives up are each undone: the template gets its
// previous annotations back (so the old pods return to the full count),
// Spec stays the old, and the error says why and how far it got.
func TestReplaceRollsBack(t *testing.T) {
	v1, v2 := pipelineFile(t, "name: v1\n"), pipelineFile(t, "name: v2\n")
	before := map[string]string{AnnotationSpec: "before", "example.com/owner": "ops"}
	cases := []struct {
		name    string
		step    func(d *appsv1.Deployment)
		ctx     time.Duration
		timeout time.Duration
		want    []string
	}{
		{"never ready", stuck, 0, 300 * time.Millisecond, []string{"rollout not complete within 300ms", "1 of 2 pods updated, 2 available, 2 old left"}},
		{"progress deadline", func(d *appsv1.Deployment) {
			stuck(d)
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False",
				Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "edge-7f9" has timed out progressing.`}}
		}, 0, time.Hour, []string{"exceeded its progress deadline", "timed out progressing"}},
		{"caller gives up", stuck, 200 * time.Millisecond, time.Hour, []string{"context deadline exceeded", "1 of 2 pods updated"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dep := &fakeDeployment{d: deploymentOf(2, maps.Clone(before)), step: c.step}
			rt, f := replaceRuntime(t, dep, v1, c.timeout)
			ctx := context.Background()
			if c.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.ctx)
				defer cancel()
			}
			err := rt.Replace(ctx, edgeSpec(v2))
			if err == nil {
				t.Fatal("Replace whose new pod never gets ready succeeded")
			}
			for _, want := range append(c.want, "replace deployment ddnn/ddnn-inference-edge", "rolled back to the previous pod template") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := dep.d.Spec.Template.Annotations; !maps.Equal(got, before) || dep.patches != 2 {
				t.Errorf("after %d patches the template's annotations are %v, want the previous %v back", dep.patches, got, before)
			}
			if got := rt.Spec().Replica.File; got != v1 {
				t.Errorf("Spec is of %s after the rollback, want %s", got, v1)
			}
		})
	}
}

// TestScaleWaitsForReplace: a Scale during a rollout waits for it (or
// gives up with its context), so the scaler never resizes a Deployment
// mid-rollout; Replace refuses a spec of another tier.
func TestScaleWaitsForReplace(t *testing.T) {
	release := make(chan struct{})
	roll := healthy(0)
	dep := &fakeDeployment{d: deploymentOf(2, nil), step: func(d *appsv1.Deployment) {
		select {
		case <-release:
			roll(d)
		default:
			stuck(d)
		}
	}}
	rt, f := replaceRuntime(t, dep, pipelineFile(t, "name: v1\n"), time.Minute)
	done := make(chan error, 1)
	go func() { done <- rt.Replace(context.Background(), edgeSpec(pipelineFile(t, "name: v2\n"))) }()
	testsupport.WaitFor(t, 10*time.Second, "Replace's patch of the Deployment", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return dep.patches > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := rt.Scale(ctx, 4); err == nil || !strings.Contains(err.Error(), "waiting for a replacement") {
		t.Errorf("Scale during a Replace: %v, want it to wait and give up with its context", err)
	}
	scaled := make(chan error, 1)
	go func() { scaled <- rt.Scale(context.Background(), 4) }()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-scaled; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	if f.replicas != 4 || f.puts != 1 {
		t.Errorf("replicas %d after %d scale writes, want 4 after 1", f.replicas, f.puts)
	}
	f.mu.Unlock()

	if err := rt.Replace(context.Background(), runtime.Spec{Replica: inference.Command{Tier: "fog"}}); err == nil || !strings.Contains(err.Error(), `of tier "fog"`) {
		t.Errorf("replacing edge by fog replicas: %v, want an error naming the tier", err)
	}
}

// TestSurgeFree: Replace warns of a strategy that may leave fewer pods
// available than wanted during the rollout.
func TestSurgeFree(t *testing.T) {
	zero, pct, one := intstr.FromInt32(0), intstr.FromString("25%"), intstr.FromInt32(1)
	for _, c := range []struct {
		name string
		s    appsv1.DeploymentStrategy
		want string
	}{
		{"deploy/k8s", appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one}}, ""},
		{"recreate", appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}, "Recreate"},
		{"default", appsv1.DeploymentStrategy{}, "25%"},
		{"a share", appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &pct}}, "maxUnavailable is 25%"},
	} {
		if got := surgeFree(&c.s); (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
