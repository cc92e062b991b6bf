package inference

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestCanaryReplicaNeedsCanary: a replica told to serve its tier's canary
// refuses to start when the tier has none, rather than serve the current
// model under the canary's name.
func TestCanaryReplicaNeedsCanary(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(testsupport.Shipped(t, "deploy/pipeline.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Command{File: file, Tier: "fog", Canary: true, Listen: "127.0.0.1:0", Log: command.Log{Level: "error"}}
	err := c.Run(context.Background(), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `tier "fog" has no canary`) {
		t.Fatalf("error = %v, want the tier has no canary", err)
	}
}
