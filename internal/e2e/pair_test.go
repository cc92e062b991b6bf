package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestApplyPairOfAnotherForwardWidth runs `ddnn up` on the shipped chain
// (edge and fog labeled v1) under 300 msg/s and applies the edge and fog
// of a chain whose forward is 48 wide, not 32 (models/testdata/rollout,
// labeled w48). The new fog does not read the old edge's forwards, so up
// rolls the fog out first, keeping the old fog replica beside the new
// one, then the edge, and retires the old fog replica once the old
// edge's forwards are processed. Asserted from the records' hops: no
// forward was read by a fog model that does not accept its edge model
// (every fog hop follows an edge hop of the same chain), the old fog
// replica stopped, nothing was refused, lost or dead-lettered. A second
// apply while the first rolls out is refused with the reason.
func TestApplyPairOfAnotherForwardWidth(t *testing.T) {
	tp := writePipeline(t, "pair", 1, "")
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
	live := startLoad(t, tp.funnel, testSet(t).Samples, "pair-", 0, 300)
	defer live.stop()
	testsupport.WaitFor(t, 10*time.Second, "the load under way", func() bool { return len(live.ids()) >= 300 })

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
	after := len(live.ids())
	testsupport.WaitFor(t, 10*time.Second, "the load going on after the apply", func() bool { return len(live.ids()) >= after+600 })
	live.stop()
	if len(live.refused) > 0 {
		t.Errorf("%d sends refused across the apply: %v", len(live.refused), live.reasons)
	}
	dups := checkAtLeastOnce(t, tp.broker, tp.name+".results", "pair-", live.ids())

	// Every result record's hops: each fog hop follows an edge hop of its
	// own chain; count the results per chain.
	pairs := readPairs(t, tp.broker, tp.name+".results", "pair-", len(live.ids()), old, w48)
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
	t.Logf("edge+fog v1 -> w48 applied in %s under 300 msg/s: %d sends accepted, %d refused, %d duplicates; results by chain %v (past the edge: %d v1, %d w48); %d fog hops following another chain's edge; old fog replica stopped",
		applied.Round(time.Millisecond), len(live.ids()), len(live.refused), dups, pairs.byChain, pairs.pastEdge["v1"], pairs.pastEdge["w48"], pairs.mixed)
}

// chainPairs counts results by the chain (version label) of their edge
// hop, those past the edge, and the fog hops that follow an edge hop of
// another chain.
type chainPairs struct {
	byChain, pastEdge map[string]int
	mixed             int
}

// readPairs reads the first result of each of n messages with prefix
// and checks its hops against the two chains' models.
func readPairs(t *testing.T, brokers, topic, prefix string, n int, chains ...map[string]wire.ModelVersion) chainPairs {
	t.Helper()
	cl := readFromStart(t, brokers, topic)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := chainPairs{byChain: map[string]int{}, pastEdge: map[string]int{}}
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d results within 60s", len(seen), n)
		}
		for _, rec := range fs.Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(r.ID, prefix) || seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			hs, err := records.ReadHops(rec)
			if err != nil || len(hs) == 0 || hs[0].Tier != "edge" {
				t.Fatalf("result %s: hops %+v (%v)", r.ID, hs, err)
			}
			var chain map[string]wire.ModelVersion
			for _, c := range chains {
				if hs[0].Model == c["edge"] {
					chain = c
				}
			}
			if chain == nil {
				t.Fatalf("result %s: edge hop by model %s, of neither chain", r.ID, hs[0].Model)
			}
			label := chain["edge"].Version
			out.byChain[label]++
			if len(hs) > 1 {
				out.pastEdge[label]++
				if hs[1].Tier != "fog" || hs[1].Model != chain["fog"] {
					out.mixed++
					if out.mixed <= 5 {
						t.Errorf("result %s: edge %s forwarded to fog %s", r.ID, hs[0].Model, hs[1].Model)
					}
				}
			}
		}
	}
	return out
}
