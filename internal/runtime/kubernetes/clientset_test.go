package kubernetes

// These tests run the runtime on client-go's fake clientset, whose reactors
// can inject what a checking server cannot easily stage: a write that loses
// a race with another writer, a Deployment that does not exist.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var deploymentsGVR = appsv1.SchemeGroupVersion.WithResource("deployments")

// fakeCluster is a fake clientset holding the tier's Deployment with
// replicas and the given pods. The fake does not serve the scale
// subresource, so reactors map it onto the Deployment, as the API server
// does; scaleWrites counts the scale writes that reached the Deployment.
type fakeCluster struct {
	*fake.Clientset
	scaleWrites int
}

func newFakeCluster(t *testing.T, replicas int32, pods ...*corev1.Pod) *fakeCluster {
	t.Helper()
	labels := map[string]string{"app.kubernetes.io/name": "ddnn", "ddnn.tier": "edge"}
	objs := []k8sruntime.Object{&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: deploy, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
		},
	}}
	for _, p := range pods {
		p.Namespace = ns
		p.Labels = labels
		objs = append(objs, p)
	}
	c := &fakeCluster{Clientset: fake.NewClientset(objs...)}
	c.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		d, err := c.deployment(a.GetNamespace(), a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		return true, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, ResourceVersion: d.ResourceVersion},
			Spec:       autoscalingv1.ScaleSpec{Replicas: *d.Spec.Replicas},
			Status:     autoscalingv1.ScaleStatus{Replicas: *d.Spec.Replicas, Selector: metav1.FormatLabelSelector(d.Spec.Selector)},
		}, nil
	})
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		s := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		d, err := c.deployment(a.GetNamespace(), s.Name)
		if err != nil {
			return true, nil, err
		}
		d.Spec.Replicas = &s.Spec.Replicas
		if err := c.Tracker().Update(deploymentsGVR, d, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		c.scaleWrites++
		return true, s, nil
	})
	return c
}

func (c *fakeCluster) deployment(namespace, name string) (*appsv1.Deployment, error) {
	obj, err := c.Tracker().Get(deploymentsGVR, namespace, name)
	if err != nil {
		return nil, err
	}
	return obj.(*appsv1.Deployment).DeepCopy(), nil
}

func (c *fakeCluster) replicas(t *testing.T) int32 {
	t.Helper()
	d, err := c.deployment(ns, deploy)
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

// conflictOnce answers the next scale write with 409 Conflict, after
// letting another writer set the Deployment to othersReplicas (-1: leave
// it). Later writes go through.
func (c *fakeCluster) conflictOnce(othersReplicas int32) {
	done := false
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if a.GetSubresource() != "scale" || done {
			return false, nil, nil
		}
		done = true
		if othersReplicas >= 0 {
			d, err := c.deployment(a.GetNamespace(), deploy)
			if err != nil {
				return true, nil, err
			}
			d.Spec.Replicas = &othersReplicas
			if err := c.Tracker().Update(deploymentsGVR, d, a.GetNamespace()); err != nil {
				return true, nil, err
			}
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, deploy,
			fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	})
}

func fakePod(name, ip string, ready bool, started time.Time) *corev1.Pod {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.PodStatus{
			PodIP:      ip,
			StartTime:  &metav1.Time{Time: started},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
		},
	}
}

func fakeRuntime(c *fakeCluster) *Runtime {
	return newRuntime(Config{Namespace: ns, Deployment: deploy}, c, nil)
}

func TestScaleRetriesAfterConflict(t *testing.T) {
	c := newFakeCluster(t, 2)
	c.conflictOnce(-1)
	if err := fakeRuntime(c).Scale(context.Background(), 5); err != nil {
		t.Fatalf("Scale after one conflict: %v", err)
	}
	if got := c.replicas(t); got != 5 || c.scaleWrites != 1 {
		t.Errorf("replicas %d after %d writes, want 5 after 1", got, c.scaleWrites)
	}
}

// TestStopAfterConflictScalesDownFromTheNewCount: another writer scaled
// the Deployment between Stop's read and its write; the retry must read
// again and remove one from that writer's count, not from the stale one.
func TestStopAfterConflictScalesDownFromTheNewCount(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := newFakeCluster(t, 3, fakePod("edge-a", "10.1.0.5", true, t0))
	c.conflictOnce(6)
	if err := fakeRuntime(c).Stop(context.Background(), "edge-a"); err != nil {
		t.Fatal(err)
	}
	if got := c.replicas(t); got != 5 {
		t.Errorf("replicas %d, want 5 (6 set by the other writer, minus the stopped pod)", got)
	}
	p, err := c.CoreV1().Pods(ns).Get(context.Background(), "edge-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cost := p.Annotations["controller.kubernetes.io/pod-deletion-cost"]; cost != "-1000" {
		t.Errorf("pod-deletion-cost %q", cost)
	}
}

func TestScaleGivesUpOnEndlessConflicts(t *testing.T) {
	c := newFakeCluster(t, 2)
	for range 10 {
		c.conflictOnce(-1)
	}
	err := fakeRuntime(c).Scale(context.Background(), 5)
	if !apierrors.IsConflict(err) {
		t.Errorf("error = %v, want a conflict", err)
	}
	if got := c.replicas(t); got != 2 {
		t.Errorf("replicas %d, want 2 unchanged", got)
	}
}

func TestNotFound(t *testing.T) {
	c := newFakeCluster(t, 2)
	rt := fakeRuntime(c)
	ctx := context.Background()
	// A pod that is gone: nothing to do, and no scale-down.
	if err := rt.Stop(ctx, "edge-gone"); err != nil {
		t.Errorf("Stop of an unknown pod: %v", err)
	}
	if got := c.replicas(t); got != 2 || c.scaleWrites != 0 {
		t.Errorf("replicas %d after %d writes, want 2 after 0", got, c.scaleWrites)
	}
	// A Deployment that is gone is an error naming it.
	missing := newRuntime(Config{Namespace: ns, Deployment: "ddnn-inference-nope"}, c, nil)
	for name, err := range map[string]error{
		"Scale": missing.Scale(ctx, 1),
		"List":  func() error { _, err := missing.List(ctx); return err }(),
	} {
		if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "deployment "+ns+"/ddnn-inference-nope") {
			t.Errorf("%s of a missing deployment: %v", name, err)
		}
	}
}

func TestListOrdersByStartAndSkipsDeleting(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	deleting := fakePod("edge-c", "10.1.0.7", true, t0.Add(-time.Hour))
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	deleting.Finalizers = []string{"test"} // a pod being deleted has its finalizers still to run
	c := newFakeCluster(t, 3,
		fakePod("edge-b", "10.1.0.6", true, t0.Add(5*time.Second)),
		fakePod("edge-a", "10.1.0.5", true, t0),
		fakePod("edge-d", "", true, t0.Add(10*time.Second)), // ready but no address yet
		deleting,
	)
	reps, err := fakeRuntime(c).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, url string
		ready   bool
	}{{"edge-a", "http://10.1.0.5:8090", true}, {"edge-b", "http://10.1.0.6:8090", true}, {"edge-d", "", false}}
	if len(reps) != len(want) {
		t.Fatalf("List = %+v, want %d replicas", reps, len(want))
	}
	for i, w := range want {
		if reps[i].ID != w.id || reps[i].URL != w.url || reps[i].Ready != w.ready {
			t.Errorf("replica %d = %+v, want %+v", i, reps[i], w)
		}
	}
}
