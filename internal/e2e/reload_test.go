package e2e

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
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
		t.Errorf("%d of %d images decided otherwise than models eval of the new file", mismatches, n)
	}
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

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
