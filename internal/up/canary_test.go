package up_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/up"
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
	var log testsupport.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- up.Run(ctx, up.Config{
			Pipeline: tp.p, File: tp.file, ORTLib: ortLib(t), Out: &log, Announce: io.Discard,
			Logger: slog.New(slog.NewTextHandler(&log, nil)),
		})
	}()
	waitReady(t, "http://"+tp.admin+"/readyz", errc, &log)

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
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if !strings.Contains(log.String(), `msg="canary started" component=up tier=fog`) {
		t.Errorf("up did not log the canary's start:\n%s", log.String())
	}
}
