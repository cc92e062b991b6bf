package command

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestReloadLogsFailure: a file that fails to load is not applied, and
// the error is logged.
func TestReloadLogsFailure(t *testing.T) {
	var logs testsupport.Buffer
	applied := 0
	r := Reloader{
		Load:  func() (*pipeline.Pipeline, error) { return nil, errors.New("tiers[0].exit.threshold: 1.5 is over 1") },
		Apply: func(*pipeline.Pipeline) error { applied++; return nil },
		Log:   slog.New(slog.NewTextHandler(&logs, nil)),
	}
	if err := r.Reload(); err == nil || applied != 0 {
		t.Fatalf("reload: %v, applied %d times", err, applied)
	}
	if !strings.Contains(logs.String(), `msg="reload: nothing changed" err="tiers[0].exit.threshold: 1.5 is over 1"`) {
		t.Errorf("logs: %s", logs.String())
	}
}
