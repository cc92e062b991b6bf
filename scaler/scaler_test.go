package scaler

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// fixedRuntime has n ready replicas whatever it is asked.
type fixedRuntime struct {
	mu sync.Mutex
	n  int
}

func (r *fixedRuntime) Scale(_ context.Context, n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n = n
	return nil
}

func (r *fixedRuntime) List(context.Context) ([]runtime.Replica, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reps := make([]runtime.Replica, r.n)
	for i := range reps {
		reps[i].Ready = true
	}
	return reps, nil
}

func (r *fixedRuntime) Stop(context.Context, string) error { return nil }
func (r *fixedRuntime) Close(context.Context) error        { return nil }

// A lag that stays unreadable (no connector has joined the group) is
// logged once for a scaled tier, and not at all at warn level for a
// fixed-size one, however many polls it lasts.
func TestUnreadableLagLoggedOnce(t *testing.T) {
	b, err := kafka.StartBroker("127.0.0.1:0", 1, []string{"t.edge.in", "t.fog.in"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var logs testsupport.Buffer
	set := pipeline.DefaultScaling()
	set.PollInterval = 100 * time.Millisecond // the least the pipeline allows
	s, err := New(Config{
		Admin: kadm.NewClient(cl),
		Targets: []Target{
			{Tier: "edge", Group: "t.edge.connector", Topic: "t.edge.in", Min: 1, Max: 3, Settings: set, Runtime: &fixedRuntime{}},
			{Tier: "fog", Group: "t.fog.connector", Topic: "t.fog.in", Min: 1, Max: 1, Settings: set, Runtime: &fixedRuntime{}},
		},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.Run(ctx)
	out := logs.String()
	if n := strings.Count(out, "lag unreadable"); n != 1 || !strings.Contains(out, "tier=edge") || strings.Contains(out, "tier=fog") {
		t.Errorf("%d warnings in a second of 100ms polls, want 1 for the scaled tier only:\n%s", n, out)
	}
}
