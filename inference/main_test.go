package inference

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestMain loads ONNX Runtime once. Without the library every test here would
// fail the same way, so say how to install it and stop.
func TestMain(m *testing.M) {
	if _, err := onnx.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "inference tests need ONNX Runtime:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

func shipped(t testing.TB) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Load("../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openSession(t testing.TB, p *pipeline.Pipeline, tier string) *Session {
	t.Helper()
	_, i, err := p.Tier(tier)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(p, i, SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
