package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// The acceptance runs of `ddnn apply` (issue: change a running pipeline
// without a restart), each under 300 msg/s from HTTP and CoAP devices
// sending the test set, with one replica per tier.

// applyLoadRate is the acceptance load: half of it over HTTP, half over CoAP.
const applyLoadRate = 300

// TestApplyThresholdUnderLoad changes the edge threshold of a running
// `ddnn up` from 0.9 to 0.7 with `ddnn apply -f` while devices send: of
// the messages ingested from 2 s after the apply started, the edge exits
// as `ddnn models eval --per-sample` of the new file says for the same
// images (each message, so the exit ratio too); no send is refused, every
// accepted one has a result, and no child process was restarted.
func TestApplyThresholdUnderLoad(t *testing.T) {
	tp := writePipeline(t, "applythreshold", 1, "")
	before, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	n := len(testSet(t).Samples)
	old := evalPerSample(t, tp.file, n)
	changed := strings.Replace(string(before), "threshold: 0.9", "threshold: 0.7", 1)
	// The new file's decisions, from models eval of a copy of it (the
	// model paths are absolute), before ddnn up runs.
	newFile := filepath.Join(t.TempDir(), "new.yaml")
	if err := os.WriteFile(newFile, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	want := evalPerSample(t, newFile, n)
	differ := 0
	for i := range want {
		if want[i].Tier != old[i].Tier {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("edge threshold 0.7 sends every image where 0.9 does: the test cannot tell the change")
	}

	upProc := up(t, tp)
	children := childPIDs(t, upProc.cmd.Process.Pid)
	results := countResults(t, tp.broker, tp.name+".results")
	ml := startMixedLoad(t, tp, results, 15*time.Second)

	if err := os.WriteFile(tp.file, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	applyAt := time.Now()
	out, err := ddnnApply(t, tp.file)
	applied := time.Since(applyAt)
	if err != nil || !strings.Contains(out, "tiers[0] (edge).exit.threshold: 0.9 -> 0.7") || !strings.Contains(out, "applied") {
		t.Fatalf("ddnn apply: %v\n%s", err, out)
	}
	effective := applyAt.Add(2 * time.Second)
	bench := ml.finish(t)
	if time.Since(effective) < 3*time.Second {
		t.Fatalf("the load ended %s after the threshold had to be effective: too short a window", time.Since(effective).Round(time.Millisecond))
	}
	got := ml.results(t, results)

	// Every message ingested once the apply had to be effective is
	// decided as models eval of the new file decides its image.
	var after, edge, wantEdge, mismatches int
	var lastOld time.Time // the last ingest decided with the old threshold
	for id, rs := range got {
		i, _ := sampleOf(id)
		r := rs[0]
		if r.Tier == old[i%n].Tier && r.Tier != want[i%n].Tier && r.SentAt.After(lastOld) {
			lastOld = r.SentAt
		}
		if r.SentAt.Before(effective) {
			continue
		}
		after++
		if r.Tier == "edge" {
			edge++
		}
		if want[i%n].Tier == "edge" {
			wantEdge++
		}
		if r.Tier != want[i%n].Tier || r.Class != want[i%n].Class {
			if mismatches++; mismatches <= 5 {
				t.Errorf("%s (image %d), ingested %s after the apply: %s class %d; models eval of the new file: %s class %d",
					id, i%n, r.SentAt.Sub(applyAt).Round(time.Millisecond), r.Tier, r.Class, want[i%n].Tier, want[i%n].Class)
			}
		}
	}
	if after < applyLoadRate {
		t.Fatalf("%d messages ingested after the threshold had to be effective, want at least %d", after, applyLoadRate)
	}
	if mismatches > 0 || edge != wantEdge {
		t.Errorf("ingested from 2 s after the apply: %d of %d exit at the edge (%d decided otherwise than models eval of the new file); models eval of the new file on the same images: %d",
			edge, after, mismatches, wantEdge)
	}
	if now := childPIDs(t, upProc.cmd.Process.Pid); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after the apply, were %v: one was restarted", now, children)
	}
	switched := "no message decided with the old threshold"
	if !lastOld.IsZero() {
		switched = "the last message decided with the old threshold was ingested " + lastOld.Sub(applyAt).Round(time.Millisecond).String() + " after the apply started"
	}
	t.Logf("edge threshold 0.9 -> 0.7 by ddnn apply in %s; %s; from 2 s after it: edge exit ratio %.4f (%d of %d), models eval of the new file on the same images %.4f; %s",
		applied.Round(time.Millisecond), switched, float64(edge)/float64(after), edge, after, float64(wantEdge)/float64(after), ml.summary(bench, got))
}

// TestApplyBrokenModelRefused applies a file whose fog model takes 20
// features while the edge forwards 32 (models/testdata/rollout/fog-in20.onnx)
// to a running `ddnn up` while devices send: `ddnn apply` refuses it, naming
// the tiers and both shapes, and changes nothing: the same children run,
// the pipeline it serves still has the old fog model, and every fog exit
// comes from the old model's sha; no send is refused, none lost, none
// dead-lettered. A SIGHUP of ddnn up with the file is refused the same way.
func TestApplyBrokenModelRefused(t *testing.T) {
	tp := writePipeline(t, "applybroken", 1, "")
	before, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	shipped := filepath.Join(root(t), "models", "fog.onnx")
	fogSHA, err := onnx.FileSHA256(shipped)
	if err != nil {
		t.Fatal(err)
	}
	upProc := up(t, tp)
	children := childPIDs(t, upProc.cmd.Process.Pid)
	served := getBody(t, "http://"+tp.admin+httpapi.PathPipeline)
	results := countResults(t, tp.broker, tp.name+".results")
	ml := startMixedLoad(t, tp, results, 10*time.Second)

	broken := filepath.Join(root(t), "models", "testdata", "rollout", "fog-in20.onnx")
	if !strings.Contains(string(before), shipped) {
		t.Fatalf("%s does not name %s", tp.file, shipped)
	}
	if err := os.WriteFile(tp.file, []byte(strings.Replace(string(before), shipped, broken, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	applyAt := time.Now()
	out, err := ddnnApply(t, tp.file)
	t.Logf("ddnn apply of a fog model whose input does not fit (%v):\n%s", err, out)
	if err == nil || !strings.Contains(out, "tiers[1] (fog).model") ||
		!strings.Contains(out, `tier "edge": forward output "forward" has shape [-1 32], next tier "fog" input "features" expects [-1 20]`) ||
		!strings.Contains(out, "nothing was changed") || strings.Contains(out, "applied") {
		t.Errorf("ddnn apply: %v, want it refused naming the fog tier and both shapes", err)
	}
	// ddnn up plans the same file the same way at SIGHUP.
	mark := len(upProc.out.String())
	if err := syscall.Kill(upProc.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "up refusing the reload", func() bool {
		return strings.Contains(upProc.out.String()[mark:], "reload: nothing changed")
	})
	if out := upProc.out.String()[mark:]; strings.Contains(out, "SIGHUP forwarded") || strings.Contains(out, "rolling out") ||
		!strings.Contains(out, `next tier \"fog\" input \"features\" expects [-1 20]`) {
		t.Errorf("SIGHUP with the fog model that does not fit: up logged\n%s", out)
	}
	bench := ml.finish(t)
	got := ml.results(t, results)

	var fogAfter, fogOther int
	for _, rs := range got {
		for _, r := range rs {
			if r.Tier != "fog" || r.SentAt.Before(applyAt) {
				continue
			}
			fogAfter++
			if r.Model.SHA != fogSHA {
				fogOther++
			}
		}
	}
	if fogAfter == 0 || fogOther > 0 {
		t.Errorf("fog exits ingested after the apply: %d, of which %d not by the running model %s", fogAfter, fogOther, fogSHA)
	}
	if now := getBody(t, "http://"+tp.admin+httpapi.PathPipeline); now != served {
		var d apply.Description
		json.Unmarshal([]byte(now), &d)
		t.Errorf("the running pipeline changed after a refused apply: models %v", d.ModelSHA256)
	}
	if now := childPIDs(t, upProc.cmd.Process.Pid); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after a refused apply, were %v", now, children)
	}
	if n := topicLen(t, tp.broker, tp.name+".fog.dlq"); n > 0 {
		t.Errorf("%d dead letters on the fog tier", n)
	}
	t.Logf("refused apply: %d fog exits after it, all by %s; %s", fogAfter, fogSHA, ml.summary(bench, got))
}

// ddnnApply runs `ddnn apply -f file` where ddnn up runs (it presents the
// service token ddnn up made there) and returns its output.
func ddnnApply(t *testing.T, file string) (string, error) {
	t.Helper()
	cmd := exec.Command(ddnn, "apply", "-f", file)
	cmd.Dir = workDir(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mixedLoad is devices sending the test set to a pipeline at
// applyLoadRate: HTTP devices (startLoad, ids "h-<i>" with image i) and
// CoAP devices (`ddnn bench --attach --protocol coap`, ids
// "<bench prefix><i>" with image i).
type mixedLoad struct {
	http     *load
	bench    *proc
	benchOut string
	d        time.Duration
}

// benchID is an id `ddnn bench` gives a message: its run's prefix and the
// message's index, which is the index of its image in the test set (mod
// its size).
var benchID = regexp.MustCompile(`^b[0-9a-z]+-([0-9]+)$`)

// sampleOf is the index of message id's image (before mod the test set's
// size), and whether id is one of a mixedLoad's messages.
func sampleOf(id string) (int, bool) {
	if m := benchID.FindStringSubmatch(id); m != nil {
		i, err := strconv.Atoi(m[1])
		return i, err == nil
	}
	if rest, ok := strings.CutPrefix(id, "h-"); ok {
		i, err := strconv.Atoi(rest)
		return i, err == nil
	}
	return 0, false
}

// startMixedLoad starts both kinds of devices, the CoAP ones for d, and
// returns once both are under way (results of each read by results).
func startMixedLoad(t *testing.T, tp testPipeline, results *resultCounter, d time.Duration) *mixedLoad {
	t.Helper()
	ml := &mixedLoad{benchOut: t.TempDir(), d: d}
	ml.bench = start(t, "bench", "-f", tp.file, "--attach", "--protocol", "coap", "--workload", "constant",
		"--rate", strconv.Itoa(applyLoadRate/2), "--duration", d.String(), "--devices", "4", "--drain", "60s", "--out", ml.benchOut)
	ml.http = startLoad(t, tp.funnel, testSet(t).Samples, "h-", 0, applyLoadRate/2)
	t.Cleanup(ml.http.stop)
	testsupport.WaitFor(t, 20*time.Second, "results of HTTP and CoAP devices", func() bool {
		select {
		case <-ml.bench.exited:
			t.Fatalf("ddnn bench exited: %v\n%s", ml.bench.err, tail(ml.bench.out.String(), 20))
		default:
		}
		coap := results.results(func(id string) bool { return benchID.MatchString(id) })
		return len(coap) >= applyLoadRate/4 && results.count("h-"+strconv.Itoa(applyLoadRate/4)) > 0
	})
	return ml
}

// finish waits for the CoAP devices to end (their results drained), then
// stops the HTTP devices, and returns the bench's summary. Any refused
// send, or accepted one without a result, fails the test.
func (ml *mixedLoad) finish(t *testing.T) benchSummary {
	t.Helper()
	select {
	case <-ml.bench.exited:
	case <-time.After(ml.d + 90*time.Second):
		t.Fatalf("ddnn bench did not end within %s", ml.d+90*time.Second)
	}
	ml.http.stop()
	if ml.bench.err != nil {
		t.Fatalf("ddnn bench: %v\n%s", ml.bench.err, tail(ml.bench.out.String(), 20))
	}
	var s benchSummary
	readJSON(t, filepath.Join(ml.benchOut, "summary.json"), &s)
	if s.Refused > 0 || s.Lost > 0 || s.Results != s.Accepted || s.Interrupted {
		t.Errorf("CoAP devices: %d sent, %d refused (%v), %d lost, %d results", s.Sent, s.Refused, s.RefusedBy, s.Lost, s.Results)
	}
	if len(ml.http.refused) > 0 {
		t.Errorf("HTTP devices: %d of %d sends refused: %v", len(ml.http.refused), len(ml.http.refused)+len(ml.http.accepted), ml.http.reasons)
	}
	return s
}

// results waits for a result of every accepted HTTP message (the CoAP
// devices waited for theirs) and returns every result of the load's
// messages.
func (ml *mixedLoad) results(t *testing.T, results *resultCounter) map[string][]wire.Result {
	t.Helper()
	if lost := results.waitAll(ml.http.ids(), 60*time.Second); len(lost) > 0 {
		t.Errorf("%d accepted HTTP messages without a result, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	return results.results(func(id string) bool { _, ok := sampleOf(id); return ok })
}

// summary says what the load sent and how it fared; got is its results.
func (ml *mixedLoad) summary(s benchSummary, got map[string][]wire.Result) string {
	httpDups := 0
	for id, rs := range got {
		if strings.HasPrefix(id, "h-") {
			httpDups += len(rs) - 1
		}
	}
	return fmt.Sprintf("HTTP devices: %d accepted, %d refused, %d duplicates; CoAP devices: %d accepted, %d refused, %d lost, %d duplicates",
		len(ml.http.ids()), len(ml.http.refused), httpDups, s.Accepted, s.Refused, s.Lost, s.Duplicates)
}

// getBody is the body of a GET of url, which must answer 200.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}
