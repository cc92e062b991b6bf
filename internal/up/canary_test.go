package up_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestCanaryAtStart: a tier whose YAML has a canary at start runs one
// replica of the candidate beside its own, listed apart at the canary
// replica list, its metrics gathered with the others'; the stop stops it.
func TestCanaryAtStart(t *testing.T) {
	tp := writePipeline(t)
	candidate := filepath.Join(filepath.Dir(tp.file), "fog-candidate.onnx")
	model, err := os.ReadFile(filepath.Join(testsupport.Root(t), "models", "fog.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(candidate, model, 0o644); err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	with := strings.Replace(string(y), "  - name: fog\n", "  - name: fog\n    canary: {model: "+candidate+", version: cand, share: 0.5}\n", 1)
	if err := os.WriteFile(tp.file, []byte(with), 0o644); err != nil {
		t.Fatal(err)
	}
	if tp.p, err = pipeline.Load(tp.file); err != nil {
		t.Fatal(err)
	}
	u := runUp(t, tp)

	var listed []httpapi.ListedReplica
	if err := json.Unmarshal([]byte(get(t, "http://"+tp.admin+httpapi.CanaryReplicasPath("fog"))), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != "fog-canary-0" {
		t.Errorf("fog canary replicas %+v, want fog-canary-0", listed)
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+tp.admin+httpapi.CanaryReplicasPath("edge"))), &listed); err != nil || len(listed) != 0 {
		t.Errorf("edge canary replicas %+v (%v), want none", listed, err)
	}
	testsupport.WaitFor(t, 20*time.Second, "the canary replica's metrics gathered", func() bool {
		return strings.Contains(get(t, "http://"+tp.admin+"/metrics"), `process="fog-canary-0"`)
	})
	u.stop(t)
	if !strings.Contains(u.log.String(), `msg="canary started" component=up tier=fog`) {
		t.Errorf("up did not log the canary's start:\n%s", u.log.String())
	}
}
