package e2e

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestDockerRollsOutFog is TestUpSIGHUPRollsOutFog with the fog tier's
// replica a container of the ddnn image: under 100 msg/s over HTTP, a new
// fog model and SIGHUP replace the container by one of the new model (the
// docker runtime's Replace), with no send refused, every accepted message
// resulted, none dead-lettered, and every fog exit of a message sent after
// the rollout by the new model. make test runs it under
// scripts/with-dockerd.sh, which starts a private dockerd and builds the
// image.
func TestDockerRollsOutFog(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST not set: run under scripts/with-dockerd.sh (make test does) to get a Docker engine and the ddnn image")
	}
	tp := writePipeline(t, "droll", 1, "")
	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	fogTier := "      threshold: 0.6\n    forward:\n      output: forward\n"
	if !strings.Contains(string(y), fogTier) {
		t.Fatalf("%s has no fog tier ending in %q", tp.file, fogTier)
	}
	y = []byte(strings.Replace(string(y), fogTier, fogTier+"    replicas: {min: 1, max: 1, runtime: docker}\n", 1))
	if err := os.WriteFile(tp.file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	fog, model := modelBeside(t, tp.file, "fog")
	oldSHA, err := onnx.FileSHA256(fog)
	if err != nil {
		t.Fatal(err)
	}
	containers := func() []string {
		out, err := exec.Command("docker", "ps", "-q", "--filter", "label=ddnn.pipeline="+tp.name).Output()
		if err != nil {
			t.Fatalf("docker ps: %v", err)
		}
		return strings.Fields(string(out))
	}
	upProc := up(t, tp)
	before := containers()
	if len(before) != 1 {
		t.Fatalf("fog containers %v, want 1", before)
	}

	live := startLoad(t, tp.funnel, testSet(t).Samples, "droll-", 0, 100)
	defer live.stop()
	testsupport.WaitFor(t, 10*time.Second, "the load under way", func() bool { return len(live.ids()) >= 50 })
	// Field 1000, a varint: protobuf readers skip fields they do not know.
	if err := os.WriteFile(fog, append(slices.Clone(model), 0xc0, 0x3e, 0x01), 0o644); err != nil {
		t.Fatal(err)
	}
	newSHA, err := onnx.FileSHA256(fog)
	if err != nil || newSHA == oldSHA {
		t.Fatalf("new fog sha %s (%v), old %s", newSHA, err, oldSHA)
	}
	mark := len(upProc.out.String())
	hupAt := time.Now()
	if err := syscall.Kill(upProc.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 90*time.Second, "up rolling out the fog tier", func() bool {
		return strings.Contains(upProc.out.String()[mark:], `msg="reload: rolled out" component=up tier=fog`)
	})
	rolled := time.Since(hupAt)
	if now := containers(); len(now) != 1 || now[0] == before[0] {
		t.Errorf("fog containers %v after the rollout, were %v: want one new", now, before)
	}
	after := len(live.ids())
	testsupport.WaitFor(t, 10*time.Second, "the load going on after the rollout", func() bool { return len(live.ids()) >= after+100 })
	fogNew := checkFogRolledOut(t, tp, live, "droll-", after, oldSHA, newSHA)
	t.Logf("fog container rolled out %s after SIGHUP; %d sends accepted, %d refused; %d fog exits after it, all by %s",
		rolled.Round(time.Millisecond), len(live.accepted), len(live.refused), fogNew, newSHA)
	upProc.term(t)
	if left := containers(); len(left) != 0 {
		t.Errorf("containers left after ddnn up stopped: %v", left)
	}
}
