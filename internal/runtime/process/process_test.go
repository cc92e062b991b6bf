package process

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// replicaEnv makes the test binary act as a replica: the runtime starts
// replicas from its own executable, which under test is this binary, and
// proctest.Main makes it play proctest.FakeInference.
const replicaEnv = "DDNN_PROCESS_TEST_REPLICA"

func TestMain(m *testing.M) { proctest.Main(m, replicaEnv, proctest.FakeInference) }

// newRuntime is a runtime of tier (proctest.StubbornTier: replicas that
// ignore SIGTERM) whose replicas log at level; Close runs when the test
// ends.
func newRuntime(t *testing.T, out *testsupport.Buffer, cfg Config, tier, level string) *Runtime {
	t.Helper()
	cfg.Out = out
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = 50 * time.Millisecond
	}
	r := New(runtime.Spec{Pipeline: "fmnist", Replica: inference.Command{
		File: "/etc/ddnn/pipeline.yaml", Tier: tier, ORTLib: "/opt/ort/libonnxruntime.so",
		Log: command.Log{Level: level},
	}}, cfg)
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// list is r.List, failing the test on an error.
func list(t *testing.T, r *Runtime) []runtime.Replica {
	t.Helper()
	reps, err := r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return reps
}

// ready reports whether r lists exactly the replicas ids, all ready.
func ready(t *testing.T, r *Runtime, ids ...string) bool {
	reps := list(t, r)
	if len(reps) != len(ids) {
		return false
	}
	for i, rep := range reps {
		if rep.ID != ids[i] || !rep.Ready {
			return false
		}
	}
	return true
}

// children are the pids of this process' child processes.
func children(t *testing.T) []int {
	t.Helper()
	pids, err := proctest.Children()
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func pids(r *Runtime) []int {
	var out []int
	for _, c := range r.Children() {
		out = append(out, c.PID())
	}
	slices.Sort(out)
	return out
}

func TestScaleUpAndDown(t *testing.T) {
	var out testsupport.Buffer
	r := newRuntime(t, &out, Config{}, "edge", "debug")
	if reps := list(t, r); len(reps) != 0 {
		t.Fatalf("a new runtime lists %v", reps)
	}
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 and edge-1 ready", func() bool { return ready(t, r, "edge-0", "edge-1") })
	reps := list(t, r)
	for _, rep := range reps {
		if !strings.HasPrefix(rep.URL, "http://127.0.0.1:") || rep.Started.IsZero() {
			t.Errorf("replica %+v: want a loopback URL and a start time", rep)
		}
		resp, err := http.Get(rep.URL + "/readyz")
		if err != nil {
			t.Fatalf("replica %s at %s: %v", rep.ID, rep.URL, err)
		}
		resp.Body.Close()
	}
	if reps[0].URL == reps[1].URL {
		t.Errorf("both replicas at %s", reps[0].URL)
	}
	addr := strings.TrimPrefix(reps[0].URL, "http://")
	want := proctest.ReplicaLine(inference.Command{File: "/etc/ddnn/pipeline.yaml", Tier: "edge", Listen: addr,
		ORTLib: "/opt/ort/libonnxruntime.so", Log: command.Log{Level: "debug"}})
	if !strings.Contains(out.String(), want) {
		t.Errorf("replica output lacks %q:\n%s", want, out.String())
	}
	if got := children(t); !slices.Equal(got, pids(r)) {
		t.Fatalf("child processes %v, want the replicas' %v", got, pids(r))
	}

	// Scaling to the count that exists changes nothing.
	before := pids(r)
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if got := pids(r); !slices.Equal(got, before) {
		t.Errorf("scaling to 2 again: replicas %v, were %v", got, before)
	}

	// Down to one: the newest is hidden at once, stopped after the drain.
	newest := r.Children()[1].PID()
	if err := r.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if reps := list(t, r); len(reps) != 1 || reps[0].ID != "edge-0" {
		t.Errorf("after scaling to 1 the list is %v, want edge-0 alone", reps)
	}
	proctest.WaitFor(t, "the drained replica stopped", func() bool { return len(r.Children()) == 1 && proctest.Gone(newest) })
	if got := children(t); !slices.Equal(got, pids(r)) {
		t.Errorf("child processes %v, want edge-0's %v", got, pids(r))
	}

	// Up again: the new replica gets a new name.
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 and edge-2 ready", func() bool { return ready(t, r, "edge-0", "edge-2") })

	all := pids(r)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range all {
		if !proctest.Gone(pid) {
			t.Errorf("replica pid %d still exists after Close", pid)
		}
	}
	if got := children(t); len(got) != 0 {
		t.Errorf("child processes %v left after Close", got)
	}
}

func TestReplicaRestartedWhenItDies(t *testing.T) {
	var out testsupport.Buffer
	r := newRuntime(t, &out, Config{}, "edge", "")
	if err := r.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 ready", func() bool { return ready(t, r, "edge-0") })
	url := list(t, r)[0].URL
	c := r.Children()[0]
	old := c.PID()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 restarted", func() bool { return c.Restarts() == 1 && c.PID() != old })
	proctest.WaitFor(t, "edge-0 ready again", func() bool { return ready(t, r, "edge-0") })
	if got := list(t, r)[0].URL; got != url {
		t.Errorf("restarted at %s, want its own %s", got, url)
	}
	if !proctest.Gone(old) {
		t.Errorf("the killed process %d still exists", old)
	}
	if got := children(t); !slices.Equal(got, []int{c.PID()}) {
		t.Errorf("child processes %v, want the restarted replica's %d", got, c.PID())
	}
}

func TestScaleDownKillsAfterGrace(t *testing.T) {
	var out testsupport.Buffer
	// A replica that ignores SIGTERM is killed after its grace.
	r := newRuntime(t, &out, Config{StopGrace: 200 * time.Millisecond}, proctest.StubbornTier, "")
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "stubborn-0 and stubborn-1 ready", func() bool { return ready(t, r, "stubborn-0", "stubborn-1") })
	newest := r.Children()[1].PID()
	if err := r.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if reps := list(t, r); len(reps) != 1 || reps[0].ID != "stubborn-0" {
		t.Errorf("after scaling to 1 the list is %v, want stubborn-0 alone (the newest goes first)", reps)
	}
	proctest.WaitFor(t, "stubborn-1 killed", func() bool { return proctest.Gone(newest) && len(r.Children()) == 1 })
	if !strings.Contains(out.String(), "ignoring SIGTERM") {
		t.Errorf("stubborn-1 was not asked with SIGTERM first:\n%s", out.String())
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := children(t); len(got) != 0 {
		t.Errorf("child processes %v left after Close", got)
	}
}

func TestCloseStopsDrainingReplicas(t *testing.T) {
	var out testsupport.Buffer
	r := newRuntime(t, &out, Config{DrainDelay: time.Hour}, "edge", "")
	if err := r.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 and edge-1 ready", func() bool { return ready(t, r, "edge-0", "edge-1") })
	if err := r.Scale(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if reps := list(t, r); len(reps) != 0 {
		t.Errorf("after scaling to 0 the list is %v", reps)
	}
	if n := len(r.Children()); n != 2 {
		t.Errorf("%d processes while draining, want both until the drain delay", n)
	}
	done := make(chan struct{})
	go func() {
		r.Close(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waits for the drain delay of draining replicas")
	}
	if got := children(t); len(got) != 0 {
		t.Errorf("child processes %v left after Close", got)
	}
}

// TestReplicaOOMScoreAboveRuntime: a replica, restarted or not, is what
// the kernel kills first under memory pressure, not the process that runs
// the runtime (ddnn up, with the broker): its oom_score_adj is higher.
func TestReplicaOOMScoreAboveRuntime(t *testing.T) {
	own := oomScoreAdj(t, "self")
	if own >= 1000 {
		t.Skipf("this process' oom_score_adj is %d already: no replica can score higher", own)
	}
	var out testsupport.Buffer
	r := newRuntime(t, &out, Config{}, "edge", "")
	if err := r.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 ready", func() bool { return ready(t, r, "edge-0") })
	c := r.Children()[0]
	first := c.PID()
	if got := oomScoreAdj(t, strconv.Itoa(first)); got <= own {
		t.Errorf("replica: oom_score_adj %d, not above the runtime's %d", got, own)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "edge-0 restarted and ready", func() bool {
		return c.PID() != first && ready(t, r, "edge-0")
	})
	if got := oomScoreAdj(t, strconv.Itoa(c.PID())); got <= own {
		t.Errorf("restarted replica: oom_score_adj %d, not above the runtime's %d", got, own)
	}
}

// oomScoreAdj reads the oom_score_adj of a pid, or of "self".
func oomScoreAdj(t *testing.T, pid string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
