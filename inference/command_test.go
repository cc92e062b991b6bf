package inference

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
)

// TestReplicaRefusesAModelItWasNotRolledOutTo: a replica told the sha256
// its tier's rollout planned (--model-sha) refuses to serve a model file
// of another, naming both: a file edited or replaced after the rollout is
// never served by a replica started later (a restart, a scale-up). With
// the planned sha it serves.
func TestReplicaRefusesAModelItWasNotRolledOutTo(t *testing.T) {
	p := shipped(t)
	tr, _, err := p.Tier("fog")
	if err != nil {
		t.Fatal(err)
	}
	sha, err := onnx.FileSHA256(p.ModelPath(tr))
	if err != nil {
		t.Fatal(err)
	}
	run := func(modelSHA string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var out bytes.Buffer
		c := &Command{File: "../deploy/pipeline.yaml", Tier: "fog", Listen: "127.0.0.1:0", ModelSHA: modelSHA, Log: command.Log{Level: "info"}}
		err := c.Run(ctx, &out, &out)
		return out.String(), err
	}
	out, err := run("0123456789ab")
	if err == nil || !strings.Contains(err.Error(), "has sha256 "+sha+", not 0123456789ab, the one its rollout planned") {
		t.Fatalf("a replica of another planned sha: %v\n%s", err, out)
	}
	if out, err := run(sha); err != nil || !strings.Contains(out, "model loaded") {
		t.Fatalf("a replica of the planned sha ran until its context ended with %v\n%s", err, out)
	}
}
