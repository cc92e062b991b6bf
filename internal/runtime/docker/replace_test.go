package docker

// These tests run containers of the ddnn image on a real Docker engine:
// DOCKER_HOST names it, as scripts/with-dockerd.sh (which make test runs)
// sets it after building the image. Without one they skip and say so.

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// engine skips the test without a Docker engine and the ddnn image.
func engine(t *testing.T) {
	t.Helper()
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST not set: run under scripts/with-dockerd.sh (make test does) to get a Docker engine and the ddnn image")
	}
}

// pipelineFile writes the sample pipeline to dir/name, readable by the
// containers' user, with the edge model replaced by model if set.
func pipelineFile(t *testing.T, dir, name, model string) string {
	t.Helper()
	y := testsupport.Shipped(t, "deploy/pipeline.yaml")
	if model != "" {
		edge := filepath.Join(testsupport.Root(t), "models", "edge.onnx")
		if !strings.Contains(y, "model: "+edge) {
			t.Fatalf("the sample pipeline names no %s", edge)
		}
		y = strings.Replace(y, "model: "+edge, "model: "+model, 1)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// mounts are the pipeline file, the checkout's models and the test's
// directory (where a broken model lives).
func mounts(t *testing.T, dir string) func(runtime.Spec) ([]string, error) {
	models := filepath.Join(testsupport.Root(t), "models")
	return func(spec runtime.Spec) ([]string, error) {
		return []string{spec.Replica.File, models, dir}, nil
	}
}

func edgeSpec(file string) runtime.Spec {
	return runtime.Spec{Pipeline: "dockertest", Replica: inference.Command{File: file, Tier: "edge"}}
}

// newRuntime is a docker runtime of file's edge tier with n ready
// replicas; it is closed (every container removed) when the test ends.
func newRuntime(t *testing.T, dir, file string, n int, cfg Config) *Runtime {
	t.Helper()
	cfg.Mounts = mounts(t, dir)
	r, err := New(context.Background(), edgeSpec(file), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := r.Scale(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, time.Minute, "the first replicas ready", func() bool {
		reps := list(t, r)
		return len(reps) == n && !slices.ContainsFunc(reps, func(x runtime.Replica) bool { return !x.Ready })
	})
	return r
}

func list(t *testing.T, r *Runtime) []runtime.Replica {
	t.Helper()
	reps, err := r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return reps
}

func names(reps []runtime.Replica) []string {
	var out []string
	for _, rep := range reps {
		out = append(out, rep.ID)
	}
	return out
}

// containerFiles are the -f of each container of the tier, running or
// not, from the engine.
func containerFiles(t *testing.T, r *Runtime) []string {
	t.Helper()
	cs, err := r.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, c := range cs {
		args := strings.Fields(c.Command)
		i := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "--f=") })
		if i < 0 {
			t.Fatalf("container %s runs %q: no --f", c.Names, c.Command)
		}
		files = append(files, strings.TrimPrefix(args[i], "--f="))
	}
	slices.Sort(files)
	return files
}

// load calls the listed ready replicas as a connector does, round robin
// over the list it re-reads every 100 ms, until stop closes (at most a
// minute). It counts the calls per replica URL and the failures: a
// refused connection, an error status, a list without a ready replica.
type load struct {
	mu     sync.Mutex
	calls  map[string]int
	failed []string
}

func (l *load) run(t *testing.T, r *Runtime, stop <-chan struct{}) {
	body, err := os.ReadFile(filepath.Join(testsupport.Root(t), "deploy", "examples", "edge-request.json"))
	if err != nil {
		t.Error(err)
		return
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var reps []runtime.Replica
	var read time.Time
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		select {
		case <-stop:
			return
		default:
		}
		if time.Since(read) > 100*time.Millisecond {
			all, err := r.List(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			reps = slices.DeleteFunc(all, func(x runtime.Replica) bool { return !x.Ready })
			read = time.Now()
		}
		if len(reps) == 0 {
			l.fail("no ready replica listed")
			read = time.Time{} // look again at once: List's probes pace the loop
			continue
		}
		url := reps[i%len(reps)].URL
		resp, err := client.Post(url+"/v1/infer", wire.ContentTypeJSON, bytes.NewReader(body))
		l.mu.Lock()
		l.calls[url]++
		l.mu.Unlock()
		if err != nil {
			l.fail(err.Error())
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			l.fail(url + ": " + resp.Status)
		}
	}
}

func (l *load) fail(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, why)
}

// TestReplaceUnderLoad: containers of the new spec take the place of the
// old ones while a caller keeps calling the listed replicas: no call is
// refused or fails, the calls move to the new containers, the old ones are
// removed, and a container started later runs the new spec.
func TestReplaceUnderLoad(t *testing.T) {
	engine(t)
	dir := t.TempDir()
	v1, v2 := pipelineFile(t, dir, "v1.yaml", ""), pipelineFile(t, dir, "v2.yaml", "")
	r := newRuntime(t, dir, v1, 2, Config{DrainDelay: time.Second})
	before := list(t, r)

	l := &load{calls: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { l.run(t, r, stop) })
	testsupport.WaitFor(t, 10*time.Second, "calls to both old replicas", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.calls[before[0].URL] > 0 && l.calls[before[1].URL] > 0
	})
	took := time.Now()
	err := r.Replace(context.Background(), edgeSpec(v2))
	replaced := time.Since(took)
	after := list(t, r)
	testsupport.WaitFor(t, 10*time.Second, "calls to both new replicas", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(after) == 2 && l.calls[after[0].URL] > 0 && l.calls[after[1].URL] > 0
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	var calls int
	for _, n := range l.calls {
		calls += n
	}
	t.Logf("replaced %v by %v in %s; %d calls, %d failed", names(before), names(after), replaced.Round(time.Millisecond), calls, len(l.failed))
	if len(l.failed) > 0 {
		t.Errorf("%d failures in %d calls during the replacement, the first: %s", len(l.failed), calls, l.failed[0])
	}
	if len(after) != 2 || slices.ContainsFunc(after, func(x runtime.Replica) bool { return slices.Contains(names(before), x.ID) }) {
		t.Errorf("listed %v after Replace, were %v: want 2 new ones", names(after), names(before))
	}
	if got := containerFiles(t, r); !slices.Equal(got, []string{v2, v2}) {
		t.Errorf("the tier's containers run %v after Replace, want 2 of %s (the old ones removed)", got, v2)
	}
	if got := r.Spec().Replica.File; got != v2 {
		t.Errorf("Spec is of %s, want %s", got, v2)
	}

	// A container started from now runs the new spec.
	if err := r.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if got := containerFiles(t, r); !slices.Equal(got, []string{v2, v2, v2}) {
		t.Errorf("after scaling up the containers run %v, want %s", got, v2)
	}
}

// TestReplaceRollsBack: a new container that never gets ready (its model
// does not load: it exits) is removed with the others; the old ones stay
// listed and answer, later containers run the old spec, and the error
// says why. A caller that gives up rolls back the same way.
func TestReplaceRollsBack(t *testing.T) {
	engine(t)
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.onnx")
	if err := os.WriteFile(broken, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	v1, bad := pipelineFile(t, dir, "v1.yaml", ""), pipelineFile(t, dir, "broken.yaml", broken)
	r := newRuntime(t, dir, v1, 2, Config{DrainDelay: 200 * time.Millisecond, ReadyTimeout: 20 * time.Second})
	before := names(list(t, r))

	err := r.Replace(context.Background(), edgeSpec(bad))
	if err == nil {
		t.Fatal("Replace by replicas whose model does not load succeeded")
	}
	for _, want := range []string{`replace tier "edge"`, "before it was ready", "removed the new replicas, kept the 2 running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("rollback: %v", err)
	reps := list(t, r)
	if !slices.Equal(names(reps), before) || slices.ContainsFunc(reps, func(x runtime.Replica) bool { return !x.Ready }) {
		t.Errorf("after the rollback %v are listed (%+v), want the old %v, ready", names(reps), reps, before)
	}
	if got := containerFiles(t, r); !slices.Equal(got, []string{v1, v1}) {
		t.Errorf("after the rollback the containers run %v, want the 2 old of %s", got, v1)
	}
	if got := r.Spec().Replica.File; got != v1 {
		t.Errorf("Spec is of %s after the rollback, want %s", got, v1)
	}

	// A caller that gives up before the new ones are ready.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Replace(ctx, edgeSpec(pipelineFile(t, dir, "v2.yaml", ""))); err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Errorf("Replace whose context ends: %v, want the context's error and a rollback", err)
	}
	if got := containerFiles(t, r); !slices.Equal(got, []string{v1, v1}) {
		t.Errorf("after a Replace gave up the containers run %v, want the 2 old of %s", got, v1)
	}

	if err := r.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if got := containerFiles(t, r); !slices.Equal(got, []string{v1, v1, v1}) {
		t.Errorf("after the rollback a new container runs %v, want %s", got, v1)
	}
	if err := r.Replace(context.Background(), runtime.Spec{Replica: inference.Command{Tier: "fog"}}); err == nil || !strings.Contains(err.Error(), `of tier "fog"`) {
		t.Errorf("replacing edge by fog replicas: %v, want an error naming the tier", err)
	}
}
