package process

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// edgeSpec is a spec of tier edge whose replicas load file.
func edgeSpec(file string) runtime.Spec {
	return runtime.Spec{Pipeline: "fmnist", Replica: inference.Command{File: file, Tier: "edge"}}
}

// unready keeps the replicas of file unready until the returned func runs.
func unready(t *testing.T, file string) (release func()) {
	t.Helper()
	if err := os.WriteFile(file+proctest.UnreadySuffix, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(file + proctest.UnreadySuffix); err != nil {
			t.Error(err)
		}
	}
}

// replaceRuntime is a runtime of edgeSpec(file) with n ready replicas;
// Close runs when the test ends.
func replaceRuntime(t *testing.T, out *testsupport.Buffer, cfg Config, file string, n int) *Runtime {
	t.Helper()
	cfg.Out = out
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = 50 * time.Millisecond
	}
	r := New(edgeSpec(file), cfg)
	t.Cleanup(func() { r.Close(context.Background()) })
	if err := r.Scale(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "the first replicas ready", func() bool {
		reps := list(t, r)
		return len(reps) == n && !slices.ContainsFunc(reps, func(x runtime.Replica) bool { return !x.Ready })
	})
	return r
}

// files are the --file of each listed replica, from what it printed.
func files(t *testing.T, out *testsupport.Buffer, reps []runtime.Replica) []string {
	t.Helper()
	var got []string
	for _, rep := range reps {
		listen := regexp.QuoteMeta("listen=" + strings.TrimPrefix(rep.URL, "http://") + " ")
		m := regexp.MustCompile(`file=(\S*) tier=\S* ` + listen).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no replica line of %s in:\n%s", rep.ID, out.String())
		}
		got = append(got, m[1])
	}
	return got
}

func ids(reps []runtime.Replica) []string {
	var out []string
	for _, rep := range reps {
		out = append(out, rep.ID)
	}
	return out
}

// replaceAsync runs r.Replace(spec); the channel gets its error.
func replaceAsync(r *Runtime, spec runtime.Spec) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Replace(context.Background(), spec) }()
	return done
}

// TestReplace: the new replicas are listed only once ready, all in one
// step with the old ones, so the list never has fewer replicas, nor a mix;
// the old ones stop; replicas started later run the new spec.
func TestReplace(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "v2.yaml")
	r := replaceRuntime(t, &out, Config{}, v1, 2)
	oldPIDs := pids(r)

	// Watch the list all along: every look is the two old replicas or the
	// two new ones, each ready.
	var seen [][]string
	var bad []string
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			reps, _ := r.List(context.Background())
			got := ids(reps)
			if len(seen) == 0 || !slices.Equal(seen[len(seen)-1], got) {
				seen = append(seen, got)
			}
			if slices.ContainsFunc(reps, func(x runtime.Replica) bool { return !x.Ready }) {
				bad = append(bad, strings.Join(got, ",")+" listed while not all ready")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	release := unready(t, v2)
	done := replaceAsync(r, edgeSpec(v2))
	proctest.WaitFor(t, "the new replicas started", func() bool { return len(r.Children()) == 4 })
	proctest.WaitFor(t, "the new replicas' first answer", func() bool { return strings.Count(out.String(), "file="+v2) == 2 })
	if got := ids(list(t, r)); !slices.Equal(got, []string{"edge-0", "edge-1"}) {
		t.Errorf("unready new replicas: the list is %v, want the old edge-0, edge-1", got)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(stop)
	watch.Wait()

	if want := [][]string{{"edge-0", "edge-1"}, {"edge-2", "edge-3"}}; !slices.EqualFunc(seen, want, slices.Equal) {
		t.Errorf("the list went %v, want %v", seen, want)
	}
	if len(bad) > 0 {
		t.Errorf("%d looks at the list: %s", len(bad), bad[0])
	}
	for _, pid := range oldPIDs {
		if !proctest.Gone(pid) {
			t.Errorf("old replica pid %d still runs after Replace", pid)
		}
	}
	reps := list(t, r)
	if got := files(t, &out, reps); !slices.Equal(got, []string{v2, v2}) {
		t.Errorf("the replicas run %v, want %s", got, v2)
	}
	if got := children(t); !slices.Equal(got, pids(r)) || len(got) != 2 {
		t.Errorf("child processes %v, want the 2 new replicas' %v", got, pids(r))
	}

	// A replica started from now runs the new spec.
	if err := r.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-4 ready", func() bool { return ready(t, r, "edge-2", "edge-3", "edge-4") })
	if got := files(t, &out, list(t, r)); !slices.Equal(got, []string{v2, v2, v2}) {
		t.Errorf("after scaling up the replicas run %v, want %s", got, v2)
	}
}

// TestReplaceDrainsOld: the old replicas leave the list when the new ones
// join it, and run on, hidden, for the drain delay (connectors finish
// their calls on them); Replace returns once they stopped.
func TestReplaceDrainsOld(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	r := replaceRuntime(t, &out, Config{DrainDelay: time.Hour}, filepath.Join(dir, "v1.yaml"), 1)
	old := pids(r)
	done := replaceAsync(r, edgeSpec(filepath.Join(dir, "v2.yaml")))
	proctest.WaitFor(t, "edge-1 listed", func() bool { return ready(t, r, "edge-1") })
	if proctest.Gone(old[0]) {
		t.Fatal("edge-0 stopped before its drain delay")
	}
	select {
	case err := <-done:
		t.Fatalf("Replace returned (%v) while the old replica drains", err)
	default:
	}
	r.Close(context.Background()) // ends the drain
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !proctest.Gone(old[0]) {
		t.Error("edge-0 runs after Replace returned")
	}
}

// TestReplaceRollsBack: a new replica that is not ready in time is
// stopped with the others; the old ones stay listed and later replicas
// run the old spec. The error says why.
func TestReplaceRollsBack(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	v1, broken := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "broken.yaml")
	r := replaceRuntime(t, &out, Config{ReadyTimeout: 300 * time.Millisecond}, v1, 2)
	old := pids(r)
	unready(t, broken) // for good
	err := r.Replace(context.Background(), edgeSpec(broken))
	if err == nil {
		t.Fatal("Replace with replicas that never get ready succeeded")
	}
	for _, want := range []string{`replace tier "edge"`, "not ready", "within 300ms", "kept the 2 running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !ready(t, r, "edge-0", "edge-1") {
		t.Errorf("after the rollback the list is %v, want edge-0, edge-1 ready", list(t, r))
	}
	if got := children(t); !slices.Equal(got, old) {
		t.Errorf("child processes %v after the rollback, want the old replicas' %v", got, old)
	}
	if err := r.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "a third replica ready", func() bool { return len(list(t, r)) == 3 && ready(t, r, ids(list(t, r))...) })
	if got := files(t, &out, list(t, r)); !slices.Equal(got, []string{v1, v1, v1}) {
		t.Errorf("after the rollback the replicas run %v, want %s", got, v1)
	}

	// A caller that gives up also rolls back.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	before := pids(r)
	if err := r.Replace(ctx, edgeSpec(broken)); err == nil || !strings.Contains(err.Error(), "context deadline exceeded") || !strings.Contains(err.Error(), "kept the 3 running") {
		t.Errorf("Replace whose context ends: %v, want the context's error and a rollback", err)
	}
	if got := children(t); !slices.Equal(got, before) {
		t.Errorf("child processes %v after a Replace gave up, want the old replicas' %v", got, before)
	}

	if err := r.Replace(context.Background(), runtime.Spec{Replica: inference.Command{Tier: "fog"}}); err == nil || !strings.Contains(err.Error(), `of tier "fog"`) {
		t.Errorf("replacing edge by fog replicas: %v, want an error naming the tier", err)
	}
}

// TestScaleWaitsForReplace: a Scale during a Replace waits for it (or
// gives up with its context), then scales the new spec's replicas: the
// tier never runs a replica of the old spec started after the Replace
// began.
func TestScaleWaitsForReplace(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "v2.yaml")
	r := replaceRuntime(t, &out, Config{}, v1, 2)
	release := unready(t, v2)
	done := replaceAsync(r, edgeSpec(v2))
	proctest.WaitFor(t, "the new replicas started", func() bool { return len(r.Children()) == 4 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Scale(ctx, 3); err == nil || !strings.Contains(err.Error(), "waiting for a replacement") {
		t.Errorf("Scale during a Replace: %v, want it to wait and give up with its context", err)
	}
	if n := len(r.Children()); n != 4 {
		t.Errorf("%d replicas after a Scale that gave up, want the 4 of the Replace", n)
	}

	scaled := make(chan error, 1)
	go func() { scaled <- r.Scale(context.Background(), 3) }()
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-scaled; err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "three replicas ready", func() bool { return ready(t, r, "edge-2", "edge-3", "edge-4") })
	if got := files(t, &out, list(t, r)); !slices.Equal(got, []string{v2, v2, v2}) {
		t.Errorf("the replicas run %v, want %s", got, v2)
	}
}

// TestReplaceNone: replacing a tier without replicas starts none; those
// scaled up later run the new spec.
func TestReplaceNone(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	v2 := filepath.Join(dir, "v2.yaml")
	r := New(edgeSpec(filepath.Join(dir, "v1.yaml")), Config{Out: &out, DrainDelay: 50 * time.Millisecond})
	t.Cleanup(func() { r.Close(context.Background()) })
	if err := r.Replace(context.Background(), edgeSpec(v2)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Children()); n != 0 {
		t.Errorf("%d replicas after replacing none", n)
	}
	if err := r.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 ready", func() bool { return ready(t, r, "edge-0") })
	if got := files(t, &out, list(t, r)); !slices.Equal(got, []string{v2}) {
		t.Errorf("the replica runs %v, want %s", got, v2)
	}
}

// TestReplaceBeside: the old replicas stay listed beside the new ones,
// and running, until retired; Scale meanwhile counts and scales only the
// new ones; retire drains and stops the old ones.
func TestReplaceBeside(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "v2.yaml")
	r := replaceRuntime(t, &out, Config{}, v1, 1)
	old := pids(r)
	beside, err := r.ReplaceBeside(context.Background(), edgeSpec(v2))
	if err != nil {
		t.Fatal(err)
	}
	if !ready(t, r, "edge-0", "edge-1") {
		t.Fatalf("after ReplaceBeside the list is %v, want the old edge-0 beside the new edge-1, both ready", ids(list(t, r)))
	}
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "a second new replica", func() bool { return ready(t, r, "edge-0", "edge-1", "edge-2") })
	if got := files(t, &out, list(t, r)); !slices.Equal(got, []string{v1, v2, v2}) {
		t.Errorf("the replicas run %v, want the old one %s and two new %s", got, v1, v2)
	}
	if proctest.Gone(old[0]) {
		t.Fatal("the old replica stopped before it was retired")
	}
	beside.Retire()
	if !proctest.Gone(old[0]) {
		t.Error("the old replica runs after retire returned")
	}
	if got := ids(list(t, r)); !slices.Equal(got, []string{"edge-1", "edge-2"}) {
		t.Errorf("after retire the list is %v, want the new edge-1, edge-2", got)
	}
}

// TestReplaceBesideUndone: undoing a ReplaceBeside stops the new
// replicas, those scaled meanwhile included, and makes the old ones and
// their spec current again.
func TestReplaceBesideUndone(t *testing.T) {
	var out testsupport.Buffer
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "v2.yaml")
	r := replaceRuntime(t, &out, Config{}, v1, 1)
	beside, err := r.ReplaceBeside(context.Background(), edgeSpec(v2))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "a second new replica", func() bool { return ready(t, r, "edge-0", "edge-1", "edge-2") })
	beside.Undo()
	if got := ids(list(t, r)); !slices.Equal(got, []string{"edge-0"}) {
		t.Fatalf("after Undo the list is %v, want the old edge-0 alone", got)
	}
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "scaled after the undo", func() bool { return ready(t, r, "edge-0", "edge-3") })
	if got := files(t, &out, list(t, r)); !slices.Equal(got, []string{v1, v1}) {
		t.Errorf("after Undo the replicas run %v, want the old %s", got, v1)
	}
}
