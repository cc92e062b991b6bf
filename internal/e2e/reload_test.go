package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestUpSIGHUPChangesEdgeThreshold runs `ddnn up`, rewrites the edge
// threshold of its file and sends it SIGHUP while devices send 100 msg/s:
// none of them is refused or lost, within 2 s the edge replica says it
// applied the new threshold, and every image of the test set sent
// afterwards gets one result, with the tier and class `ddnn models eval
// --per-sample` gives for the new file; no child process was restarted. A
// file that then fails to load is logged and changes nothing.
func TestUpSIGHUPChangesEdgeThreshold(t *testing.T) {
	tp := writePipeline(t, "reload", 1, "")
	before, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	n := len(testSet(t).Samples)
	old := evalPerSample(t, tp.file, n)
	upProc := up(t, tp)
	upPID := upProc.cmd.Process.Pid
	children := childPIDs(t, upPID)
	replicas := childPIDs(t, upPID, "inference", "--tier=edge")
	if len(replicas) != 1 {
		t.Fatalf("edge replicas %v, want 1", replicas)
	}

	changed := strings.Replace(string(before), "threshold: 0.9", "threshold: 0.5", 1)
	if err := os.WriteFile(tp.file, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	want := evalPerSample(t, tp.file, n)
	if slices.Equal(old, want) {
		t.Fatal("threshold 0.5 decides the test set as 0.9 does: the test cannot tell a reload")
	}
	// Devices keep sending across the reload, 100 msg/s.
	images := testSet(t).Samples
	live := startLoad(t, tp.funnel, images, "live-", 0, 100)
	defer live.stop()
	testsupport.WaitFor(t, 10*time.Second, "the load under way", func() bool { return len(live.ids()) >= 50 })
	mark := len(upProc.out.String())
	hupAt := time.Now()
	if err := syscall.Kill(upPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 2*time.Second, "the edge replica applying threshold 0.5", func() bool {
		return strings.Contains(upProc.out.String()[mark:], "setting=exit.threshold old=0.9 new=0.5")
	})
	t.Logf("edge threshold 0.9 -> 0.5 applied %s after SIGHUP", time.Since(hupAt).Round(time.Millisecond))

	sentAt := len(live.ids())
	testsupport.WaitFor(t, 10*time.Second, "the load going on after the reload", func() bool { return len(live.ids()) >= sentAt+50 })
	live.stop()
	if len(live.refused) > 0 {
		t.Errorf("%d of %d sends refused across the reload: %v", len(live.refused), len(live.refused)+len(live.accepted), live.reasons)
	}
	dups := checkAtLeastOnce(t, tp.broker, tp.name+".results", "live-", live.ids())
	t.Logf("load across the reload: %d accepted, each with a result; %d refused; %d duplicates", len(live.accepted), len(live.refused), dups)

	got := sendTestSet(t, tp.funnel, tp.broker, tp.name+".results", tp.file, " after the reload")
	checkDecidedAsEval(t, got, want)
	if now := childPIDs(t, upPID); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after the reload, were %v: one was restarted", now, children)
	}

	// A file that does not load: logged by up, nothing forwarded.
	if err := os.WriteFile(tp.file, []byte(strings.Replace(changed, "threshold: 0.5", "threshold: 1.5", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	mark = len(upProc.out.String())
	if err := syscall.Kill(upPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "up logging the failed reload", func() bool {
		return strings.Contains(upProc.out.String()[mark:], `reload: nothing changed`)
	})
	if out := upProc.out.String()[mark:]; strings.Contains(out, "SIGHUP forwarded") || !strings.Contains(out, "threshold") {
		t.Errorf("a file that fails to load: up logged\n%s", out)
	}
	if now := childPIDs(t, upPID); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after a failed reload, were %v", now, children)
	}
}

// checkFogRolledOut stops live, a load across a rollout of the fog tier
// from model oldSHA to newSHA whose messages' ids start with prefix, and
// checks it: no send refused, every accepted one with a result, every fog
// exit of those sent after the first after (once the rollout was done)
// by the new model, none dead-lettered. It returns those fog exits.
func checkFogRolledOut(t *testing.T, tp testPipeline, live *load, prefix string, after int, oldSHA, newSHA string) int {
	t.Helper()
	live.stop()
	if len(live.refused) > 0 {
		t.Errorf("%d sends refused across the rollout: %v", len(live.refused), live.reasons)
	}
	checkAtLeastOnce(t, tp.broker, tp.name+".results", prefix, live.ids())
	results := collectResults(t, tp.broker, tp.name+".results", prefix, len(live.ids()), 30*time.Second)
	var fogOld, fogNew int
	for _, id := range live.ids()[after:] {
		for _, r := range results[id] {
			if r.Tier != "fog" {
				continue
			}
			switch r.Model.SHA {
			case newSHA:
				fogNew++
			case oldSHA:
				fogOld++
			}
		}
	}
	if fogNew == 0 || fogOld > 0 {
		t.Errorf("fog exits sent after the rollout: %d by the new model, %d by the old, want all new", fogNew, fogOld)
	}
	if n := topicLen(t, tp.broker, tp.name+".fog.dlq"); n > 0 {
		t.Errorf("%d dead letters on the fog tier across the rollout", n)
	}
	return fogNew
}

// checkDecidedAsEval: each test image sent (img-N) got the exit tier and
// class `ddnn models eval --per-sample` gives it (want).
func checkDecidedAsEval(t *testing.T, got map[string][]wire.Result, want []sampleDecision) {
	t.Helper()
	mismatches := 0
	for i, w := range want {
		rs := got["img-"+strconv.Itoa(i)]
		if len(rs) == 1 && (rs[0].Tier != w.Tier || rs[0].Class != w.Class) {
			if mismatches++; mismatches <= 5 {
				t.Errorf("img-%d: %s class %d, models eval of the new file: %s class %d", i, rs[0].Tier, rs[0].Class, w.Tier, w.Class)
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d of %d images decided otherwise than models eval of the new file", mismatches, len(want))
	}
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestUpSIGHUPRollsOutFog runs `ddnn up` with the fog model in a file of
// its own, replaces that file by a retrained fog of the same forward
// shape (models/testdata/rollout/fog-retrained.onnx) and sends up SIGHUP
// while devices send 300 msg/s: up logs the plan (the fog tier rolls
// out), replaces the fog replica, and from then on fog exits name the new
// sha; none is refused, lost or dead-lettered. The test images sent after
// the rollout are decided, sample for sample (so with the same accuracy),
// as `ddnn models eval` decides them with the new chain. A file whose
// input changed is refused with the reason and changes nothing.
func TestUpSIGHUPRollsOutFog(t *testing.T) {
	tp := writePipeline(t, "rollout", 1, "")
	fog, _ := modelBeside(t, tp.file, "fog")
	withFog, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	oldSHA, err := onnx.FileSHA256(fog)
	if err != nil {
		t.Fatal(err)
	}
	upProc := up(t, tp)
	upPID := upProc.cmd.Process.Pid
	oldFog := childPIDs(t, upPID, "inference", "--tier=fog")
	if len(oldFog) != 1 {
		t.Fatalf("fog replicas %v, want 1", oldFog)
	}

	live := startLoad(t, tp.funnel, testSet(t).Samples, "roll-", 0, 300)
	defer live.stop()
	testsupport.WaitFor(t, 10*time.Second, "the load under way", func() bool { return len(live.ids()) >= 150 })
	retrained, err := os.ReadFile(filepath.Join(root(t), "models", "testdata", "rollout", "fog-retrained.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fog, retrained, 0o644); err != nil {
		t.Fatal(err)
	}
	want := evalPerSample(t, tp.file, len(testSet(t).Samples))
	newSHA, err := onnx.FileSHA256(fog)
	if err != nil || newSHA == oldSHA {
		t.Fatalf("new fog sha %s (%v), old %s", newSHA, err, oldSHA)
	}
	mark := len(upProc.out.String())
	hupAt := time.Now()
	if err := syscall.Kill(upPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 60*time.Second, "up rolling out the fog tier", func() bool {
		return strings.Contains(upProc.out.String()[mark:], `msg="reload: rolled out" component=up tier=fog`)
	})
	rolled := time.Since(hupAt)
	out := upProc.out.String()[mark:]
	if !strings.Contains(out, "sha256 "+oldSHA+" -> sha256 "+newSHA) {
		t.Errorf("up's plan does not name the fog model's change %s -> %s:\n%s", oldSHA, newSHA, out)
	}
	if now := childPIDs(t, upPID, "inference", "--tier=fog"); len(now) != 1 || now[0] == oldFog[0] {
		t.Errorf("fog replicas %v after the rollout, were %v: want one new", now, oldFog)
	}
	after := len(live.ids())
	testsupport.WaitFor(t, 10*time.Second, "the load going on after the rollout", func() bool { return len(live.ids()) >= after+300 })
	fogNew := checkFogRolledOut(t, tp, live, "roll-", after, oldSHA, newSHA)
	t.Logf("fog rolled out %s after SIGHUP; %d sends accepted, %d refused; %d fog exits after it, all by %s",
		rolled.Round(time.Millisecond), len(live.accepted), len(live.refused), fogNew, newSHA)
	checkDecidedAsEval(t, sendTestSet(t, tp.funnel, tp.broker, tp.name+".results", tp.file, " after the rollout"), want)

	// A file whose input changed: refused with the reason, nothing changed.
	if err := os.WriteFile(tp.file, []byte(strings.Replace(string(withFog), "shape: [1, 28, 28]", "shape: [1, 28, 27]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	children := childPIDs(t, upPID)
	mark = len(upProc.out.String())
	if err := syscall.Kill(upPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "up refusing the reload", func() bool {
		return strings.Contains(upProc.out.String()[mark:], "reload: nothing changed")
	})
	if out := upProc.out.String()[mark:]; strings.Contains(out, "SIGHUP forwarded") || !strings.Contains(out, "cannot change while the pipeline runs") {
		t.Errorf("a refused plan: up logged\n%s", out)
	}
	if now := childPIDs(t, upPID); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after a refused reload, were %v", now, children)
	}
}

// topicLen is how many records topic holds on the broker at addr (it
// starts at offset 0 and nothing is deleted).
func topicLen(t *testing.T, addr, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() // it may be called in a loop: one client at a time
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// modelBeside copies the shipped model of tier beside file and points
// file's tier at the copy, so a test can change it; it returns the copy's
// path and the model's bytes.
func modelBeside(t testing.TB, file, tier string) (string, []byte) {
	t.Helper()
	shipped := filepath.Join(root(t), "models", tier+".onnx")
	model, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(filepath.Dir(file), tier+".onnx")
	if err := os.WriteFile(copied, model, 0o644); err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), shipped) {
		t.Fatalf("%s does not name %s", file, shipped)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(y), shipped, copied, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return copied, model
}
