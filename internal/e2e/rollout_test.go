package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestApplyPairOfAnotherForwardWidth runs `ddnn up` on the shipped chain
// (edge and fog labeled v1) under 300 msg/s from HTTP and CoAP devices
// and applies the edge and fog
// of a chain whose forward is 48 wide, not 32 (models/testdata/rollout,
// labeled w48). The new fog does not read the old edge's forwards, so up
// rolls the fog out first, keeping the old fog replica beside the new
// one, then the edge, and retires the old fog replica once the old
// edge's forwards are processed. Asserted from the records' hops: no
// forward was read by a fog model that does not accept its edge model
// (every fog hop follows an edge hop of the same chain), the old fog
// replica stopped, nothing was refused, lost or dead-lettered. A second
// apply while the first rolls out is refused with the reason. It runs with
// one replica per tier, and with two edge replicas and the fog connector
// killed (SIGKILL) while the old and new fog replicas serve side by side.
func TestApplyPairOfAnotherForwardWidth(t *testing.T) {
	t.Run("one replica per tier", func(t *testing.T) { applyPair(t, 1, false) })
	t.Run("two edge replicas, fog connector killed", func(t *testing.T) { applyPair(t, 2, true) })
}

func applyPair(t *testing.T, edgeReplicas int, kill bool) {
	tp := writePipeline(t, "pair", edgeReplicas, "")
	labelTier(t, tp.file, "edge", "v1")
	labelTier(t, tp.file, "fog", "v1")
	models := filepath.Join(root(t), "models")
	chain := func(dir, edge, fog, label string) map[string]wire.ModelVersion {
		vs := map[string]wire.ModelVersion{}
		for tier, file := range map[string]string{"edge": edge, "fog": fog} {
			sha, err := onnx.FileSHA256(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			vs[tier] = wire.ModelVersion{SHA: sha, Version: label}
		}
		return vs
	}
	old := chain(models, "edge.onnx", "fog.onnx", "v1")
	w48 := chain(filepath.Join(models, "testdata", "rollout"), "edge-w48.onnx", "fog-w48.onnx", "w48")

	upProc := up(t, tp)
	upPID := upProc.cmd.Process.Pid
	oldFog := childPIDs(t, upPID, "inference", "--tier=fog")
	if len(oldFog) != 1 {
		t.Fatalf("fog replicas %v, want 1", oldFog)
	}
	results := countResults(t, tp.broker, tp.name+".results")
	ml := startMixedLoad(t, tp, results, 15*time.Second)

	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	next := string(y)
	for _, tier := range []string{"edge", "fog"} {
		next = strings.Replace(next, filepath.Join(models, tier+".onnx"), filepath.Join(models, "testdata", "rollout", tier+"-w48.onnx"), 1)
		next = strings.Replace(next, "  - name: "+tier+"\n    version: v1\n", "  - name: "+tier+"\n    version: w48\n", 1)
	}
	if err := os.WriteFile(tp.file, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := len(upProc.out.String())
	applyAt := time.Now()
	apply := func() ([]byte, error) {
		cmd := exec.Command(ddnn, "apply", "-f", tp.file, "--apply-timeout", "3m")
		cmd.Dir = workDir(t) // where up keeps the service token
		return cmd.CombinedOutput()
	}
	type result struct {
		out []byte
		err error
	}
	first := make(chan result, 1)
	go func() {
		out, err := apply()
		first <- result{out, err}
	}()
	// A second apply while the first rolls out is refused, and says so.
	testsupport.WaitFor(t, 30*time.Second, "the first apply rolling out", func() bool {
		return strings.Contains(upProc.out.String()[mark:], "reload: rolling out")
	})
	if out, err := apply(); err == nil || !strings.Contains(string(out), "another apply or reload is under way") {
		t.Errorf("a second apply during the first: %v\n%s", err, out)
	}
	if kill {
		testsupport.WaitFor(t, 30*time.Second, "the old and new fog replicas side by side", func() bool {
			return len(childPIDs(t, upPID, "inference", "--tier=fog")) == 2
		})
		conn := childPIDs(t, upPID, "connector", "--tier=fog")
		if len(conn) != 1 {
			t.Fatalf("fog connectors %v, want 1", conn)
		}
		if err := syscall.Kill(conn[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the fog connector (pid %d) while the old and new fog replicas served side by side", conn[0])
	}
	r := <-first
	if r.err != nil {
		t.Fatalf("ddnn apply: %v\n%s", r.err, r.out)
	}
	applied := time.Since(applyAt)
	t.Logf("ddnn apply (%s):\n%s", applied.Round(time.Millisecond), r.out)
	// up logged these before it answered; its output reaches the test
	// through a pipe.
	testsupport.WaitFor(t, 5*time.Second, "up logging the old fog replicas retired", func() bool {
		return strings.Contains(upProc.out.String()[mark:], `msg="reload: old replicas retired, their forwards done" component=up tier=fog`)
	})
	logged := upProc.out.String()[mark:]
	fogAt := strings.Index(logged, `msg="reload: rolling out, the old replicas serving beside the new until the old forwards are done" component=up tier=fog`)
	if edgeAt := strings.Index(logged, `msg="reload: rolling out" component=up tier=edge`); fogAt < 0 || edgeAt < fogAt {
		t.Errorf("up did not roll the fog out beside its old replicas (at %d), then the edge (at %d):\n%s", fogAt, edgeAt, logged)
	}
	for _, pid := range oldFog {
		if !proctest.Gone(pid) {
			t.Errorf("the old fog replica (pid %d) runs after the apply", pid)
		}
	}
	bench := ml.finish(t)
	got := ml.results(t, results)

	// Every result record's hops: each fog hop follows an edge hop of its
	// own chain; count the results per chain.
	pairs := readPairs(t, tp, got, old, w48)
	for _, tier := range []string{"fog", "cloud"} {
		if n := topicLen(t, tp.broker, tp.name+"."+tier+".dlq"); n > 0 {
			t.Errorf("%d dead letters on the %s tier across the apply", n, tier)
		}
	}
	if pairs.mixed > 0 {
		t.Errorf("%d forwards read by a fog model that does not accept their edge model", pairs.mixed)
	}
	if pairs.byChain["v1"] == 0 || pairs.byChain["w48"] == 0 {
		t.Errorf("results per chain %v: want some of each (the test did not cross the apply)", pairs.byChain)
	}
	t.Logf("edge+fog v1 -> w48 applied in %s: results by chain %v (past the edge: %d v1, %d w48); %d fog hops following another chain's edge; old fog replica stopped; %s",
		applied.Round(time.Millisecond), pairs.byChain, pairs.pastEdge["v1"], pairs.pastEdge["w48"], pairs.mixed, ml.summary(bench, got))
}

// chainPairs counts results by the chain (version label) of their edge
// hop, those past the edge, and the fog hops that follow an edge hop of
// another chain.
type chainPairs struct {
	byChain, pastEdge map[string]int
	mixed             int
}

// readPairs reads the first result record of each message of want and
// checks its hops against the two chains' models.
func readPairs(t *testing.T, tp testPipeline, want map[string][]wire.Result, chains ...map[string]wire.ModelVersion) chainPairs {
	t.Helper()
	out := chainPairs{byChain: map[string]int{}, pastEdge: map[string]int{}}
	for id, hs := range resultHops(t, tp, func(id string) bool { _, ok := want[id]; return ok }, len(want)) {
		if len(hs) == 0 || hs[0].Tier != "edge" {
			t.Fatalf("result %s: hops %+v", id, hs)
		}
		var chain map[string]wire.ModelVersion
		for _, c := range chains {
			if hs[0].Model == c["edge"] {
				chain = c
			}
		}
		if chain == nil {
			t.Fatalf("result %s: edge hop by model %s, of neither chain", id, hs[0].Model)
		}
		label := chain["edge"].Version
		out.byChain[label]++
		if len(hs) > 1 {
			out.pastEdge[label]++
			if hs[1].Tier != "fog" || hs[1].Model != chain["fog"] {
				out.mixed++
				if out.mixed <= 5 {
					t.Errorf("result %s: edge %s forwarded to fog %s", id, hs[0].Model, hs[1].Model)
				}
			}
		}
	}
	return out
}
