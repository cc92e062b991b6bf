package command

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

func TestChanges(t *testing.T) {
	half, one := 0.5, 0.9
	type section struct {
		pipeline.Exit `yaml:",inline"`
		Wait          time.Duration `yaml:"max_wait"`
		List          []string      `yaml:"list"`
	}
	for _, tc := range []struct {
		name     string
		old, new section
		want     []string
	}{
		{"equal", section{Wait: time.Second}, section{Wait: time.Second}, nil},
		{"equal thresholds at other addresses", section{Exit: pipeline.Exit{Threshold: &half}}, section{Exit: pipeline.Exit{Threshold: ptr(0.5)}}, nil},
		{"threshold", section{Exit: pipeline.Exit{Threshold: &one}}, section{Exit: pipeline.Exit{Threshold: &half}}, []string{"x.threshold: 0.9 -> 0.5"}},
		{"threshold set", section{}, section{Exit: pipeline.Exit{Threshold: &half}}, []string{"x.threshold: unset -> 0.5"}},
		{"several", section{Wait: time.Second, List: []string{"a"}}, section{Exit: pipeline.Exit{Policy: "entropy"}, List: []string{"b"}},
			[]string{"x.policy:  -> entropy", "x.max_wait: 1s -> 0s", "x.list: [a] -> [b]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range Changes("x", tc.old, tc.new) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

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
