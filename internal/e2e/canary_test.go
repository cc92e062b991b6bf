package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestUpCanaryFog starts a canary on the fog tier of a running ddnn up
// with a SIGHUP (a candidate of the same graph as the fog model, its
// file differing by an unknown protobuf field, so another sha256), sends
// 11,000 images from HTTP devices at 300 msg/s with the edge forwarding
// (almost) everything, and checks over the results: none refused, none
// lost, the candidate's share of the messages the fog decided 0.1 ±
// 0.02 over at least 10,000 of them, each fog hop naming the model that
// ran it (the candidate as sha@cand), and ddnn status --json comparing
// the two with an agreement (1.0: the same graph). ddnn apply then
// promotes it (the fog's model set to the candidate's, the canary
// removed): the canary's replica stops and the fog decides as the
// candidate from then on. A candidate that does not fit the chain is
// refused and nothing changes.
func TestUpCanaryFog(t *testing.T) {
	const (
		sends = 11000
		rate  = 300
		share = 0.1
	)
	tp := writePipeline(t, "canary", 1, "")
	fog, _ := modelBeside(t, tp.file, "fog")
	// The candidate: the fog retrained on the shipped edge's features
	// (same forward shape), a copy beside the file.
	retrained, err := os.ReadFile(filepath.Join(root(t), "models", "testdata", "rollout", "fog-retrained.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	candidate := filepath.Join(filepath.Dir(fog), "fog-candidate.onnx")
	if err := os.WriteFile(candidate, retrained, 0o644); err != nil {
		t.Fatal(err)
	}
	fogSHA, err := onnx.FileSHA256(fog)
	if err != nil {
		t.Fatal(err)
	}
	candSHA, err := onnx.FileSHA256(candidate)
	if err != nil || candSHA == fogSHA {
		t.Fatalf("candidate sha %s (%v), fog's %s", candSHA, err, fogSHA)
	}
	// The edge exits only what it is certain of: the fog decides nearly
	// every message.
	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	without := strings.Replace(string(y), "threshold: 0.9", "threshold: 1.0", 1)
	if without == string(y) {
		t.Fatal("no edge threshold 0.9 in the pipeline")
	}
	with := strings.Replace(without, "  - name: fog\n",
		fmt.Sprintf("  - name: fog\n    canary: {model: %s, version: cand, share: %v, shadow_ratio: 0.2}\n", candidate, share), 1)
	write := func(y string) {
		t.Helper()
		if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(without)
	upProc := up(t, tp)
	upPID := upProc.cmd.Process.Pid

	// Start the canary live.
	write(with)
	mark := len(upProc.out.String())
	if err := syscall.Kill(upPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 60*time.Second, "the canary started and the fog connector routing to it", func() bool {
		out := upProc.out.String()[mark:]
		return strings.Contains(out, `msg="canary started"`) && strings.Contains(out, "setting=canary old=unset")
	})
	if pids := childPIDs(t, upPID, "inference", "--tier=fog", "--canary"); len(pids) != 1 {
		t.Fatalf("canary replicas %v, want 1", pids)
	}

	results := countResults(t, tp.broker, tp.name+".results")
	ml := startMixedLoad(t, tp, results, time.Duration(sends/rate)*time.Second)
	bench := ml.finish(t)
	got := ml.results(t, results)

	// The fog hop of each result names the model that decided it there.
	fogBy := fogModels(t, tp, func(id string) bool { _, ok := got[id]; return ok }, len(got))
	var current, canary int
	for id, m := range fogBy {
		switch m {
		case wire.ModelVersion{SHA: fogSHA}:
			current++
		case wire.ModelVersion{SHA: candSHA, Version: "cand"}:
			canary++
		default:
			t.Errorf("message %s: fog hop names model %+v, neither the current %s nor the candidate %s@cand", id, m, fogSHA, candSHA)
		}
	}
	decided := current + canary
	seen := float64(canary) / float64(decided)
	if decided < 10000 || math.Abs(seen-share) > 0.02 {
		t.Errorf("the candidate decided %d of %d messages at the fog (%.4f), want %v ± 0.02 of at least 10,000", canary, decided, seen, share)
	}

	// ddnn status compares the two.
	var fogStatus *status.Tier
	testsupport.WaitFor(t, 30*time.Second, "ddnn status with the fog canary's decisions", func() bool {
		cmd := exec.Command(ddnn, "status", "-f", tp.file, "--json")
		cmd.Dir = workDir(t)
		out, _ := cmd.Output()
		var snap status.Snapshot
		if err := json.Unmarshal(out, &snap); err != nil {
			t.Fatalf("ddnn status --json: %v\n%s", err, out)
		}
		for _, tier := range snap.Sites[0].Tiers {
			if tier.Name == "fog" && tier.Canary != nil && tier.Canary.Current.Decisions+tier.Canary.Candidate.Decisions >= int64(decided) {
				fogStatus = &tier
				return true
			}
		}
		return false
	})
	k := fogStatus.Canary
	// The CoAP devices' bench sends one probe message first, which the
	// fog may decide too: the status may count one decision more.
	extraCand, extraCur := k.Candidate.Decisions-int64(canary), k.Current.Decisions-int64(current)
	if extraCand < 0 || extraCur < 0 || extraCand+extraCur > 1 || k.Fallbacks != 0 {
		t.Errorf("status: candidate %d, current %d decisions, %d fallbacks; the results say %d and %d (and the bench's probe), none fell back", k.Candidate.Decisions, k.Current.Decisions, k.Fallbacks, canary, current)
	}
	if k.Model.SHA256 != candSHA || k.Version != "cand" || k.Share != share {
		t.Errorf("status names the candidate %+v@%s share %v, want %s@cand, %v", k.Model, k.Version, k.Share, candSHA, share)
	}
	if k.Agreement == nil || k.ShadowCompared == 0 || *k.Agreement < 0.5 || *k.Agreement > 1 {
		t.Errorf("agreement %v over %d shadow-scored messages, want one reported (a retrained fog agrees with the fog on most)", k.Agreement, k.ShadowCompared)
	}
	if k.Candidate.ExitRatio == nil || k.Current.ExitRatio == nil || k.Candidate.P99Seconds == nil || k.Current.P99Seconds == nil {
		t.Errorf("status lacks exit ratios or service times: %+v", k)
	}
	t.Logf("fog canary: %d of %d messages (%.4f) by the candidate; status: share seen %.4f, exit ratio current %.3f canary %.3f, p50 %.2fms/%.2fms, p99 %.2fms/%.2fms, errors %d/%d, agreement %.3f over %d messages (%d sampled batches dropped), %d fallbacks; %s",
		canary, decided, seen, *k.ShareSeen, *k.Current.ExitRatio, *k.Candidate.ExitRatio,
		*k.Current.P50Seconds*1e3, *k.Candidate.P50Seconds*1e3, *k.Current.P99Seconds*1e3, *k.Candidate.P99Seconds*1e3,
		k.Current.Errors, k.Candidate.Errors, *k.Agreement, k.ShadowCompared, k.ShadowDropped, k.Fallbacks, ml.summary(bench, got))

	// ddnn apply promotes the candidate: the fog's model becomes the
	// candidate's, the canary goes; the fog decides as the candidate from
	// then on.
	promoted := strings.Replace(without, "model: "+fog+"\n", "model: "+candidate+"\n    version: cand\n", 1)
	if promoted == without {
		t.Fatalf("the fog tier does not name %s", fog)
	}
	write(promoted)
	canaryPIDs := childPIDs(t, upPID, "inference", "--tier=fog", "--canary")
	apply := exec.Command(ddnn, "apply", "-f", tp.file)
	apply.Dir = workDir(t)
	out, err := apply.CombinedOutput()
	for _, want := range []string{
		fmt.Sprintf("tiers[1] (fog).canary: model %s@cand, share %v, shadow_ratio 0.2 -> unset", candidate, share),
		"tier fog:", "tiers[1] (fog).model: sha256 " + fogSHA + " -> sha256 " + candSHA, "tiers[1] (fog).version",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ddnn apply output lacks %q", want)
		}
	}
	if err != nil {
		t.Fatalf("ddnn apply: %v\n%s", err, out)
	}
	t.Logf("ddnn apply:\n%s", out)
	waitGone(t, "the canary replica", canaryPIDs)
	after := startLoad(t, tp.funnel, testSet(t).Samples, "prom-", 300, 100)
	select {
	case <-after.done:
	case <-time.After(30 * time.Second):
		after.stop()
		t.Fatalf("%d of 300 sends made in 30s", len(after.ids()))
	}
	if len(after.refused) > 0 {
		t.Errorf("%d sends refused after the promotion: %v", len(after.refused), after.reasons)
	}
	checkAtLeastOnce(t, tp.broker, tp.name+".results", "prom-", after.ids())
	for id, m := range fogModels(t, tp, func(id string) bool { return strings.HasPrefix(id, "prom-") }, len(after.ids())) {
		if m != (wire.ModelVersion{SHA: candSHA, Version: "cand"}) {
			t.Errorf("message %s sent after the promotion: fog hop names %+v, want the candidate %s@cand", id, m, candSHA)
		}
	}

	// A candidate that does not fit the chain (the cloud model reads 16
	// features, the edge forwards 32) is refused, and nothing changes.
	cloud := filepath.Join(root(t), "models", "cloud.onnx")
	write(strings.Replace(promoted, "  - name: fog\n", "  - name: fog\n    canary: {model: "+cloud+", share: 0.1}\n", 1))
	children := childPIDs(t, upPID)
	mark = len(upProc.out.String())
	if err := syscall.Kill(upPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 30*time.Second, "up refusing the candidate", func() bool {
		return strings.Contains(upProc.out.String()[mark:], "reload: nothing changed")
	})
	// What up logged of this reload: from its SIGHUP on (the one before
	// ended before it began: reloads run one at a time).
	logged := upProc.out.String()[mark:]
	i := strings.Index(logged, `msg="reload: SIGHUP received, re-reading the pipeline file" component=up`)
	if i < 0 {
		t.Fatalf("up did not log the SIGHUP:\n%s", logged)
	}
	if logged = logged[i:]; !strings.Contains(logged, `tier \"fog\" canary `+cloud) || strings.Contains(logged, "SIGHUP forwarded") {
		t.Errorf("an unfit candidate: up logged\n%s", logged)
	}
	if now := childPIDs(t, upPID); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after a refused candidate, were %v", now, children)
	}
}

// fogModels reads the results of the n messages match takes, with their
// hops, and returns the model of each one's fog hop (messages that
// exited at the edge have none).
func fogModels(t *testing.T, tp testPipeline, match func(id string) bool, n int) map[string]wire.ModelVersion {
	t.Helper()
	out := map[string]wire.ModelVersion{}
	for id, hs := range resultHops(t, tp, match, n) {
		for _, h := range hs {
			if h.Tier == "fog" {
				out[id] = h.Model
			}
		}
	}
	return out
}

// resultHops reads the result records from the start until it has one of
// each of the n messages match takes, and returns each one's hops (of its
// first result).
func resultHops(t *testing.T, tp testPipeline, match func(id string) bool, n int) map[string][]records.Hop {
	t.Helper()
	cl := readFromStart(t, tp.broker, tp.name+".results")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := map[string][]records.Hop{}
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d results within 60s", len(out), n)
		}
		for _, rec := range fs.Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if _, seen := out[r.ID]; seen || !match(r.ID) {
				continue
			}
			hs, err := records.ReadHops(rec)
			if err != nil {
				t.Fatal(err)
			}
			out[r.ID] = hs
		}
	}
	return out
}
