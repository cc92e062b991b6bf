package scaler

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
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

// A lag that stays unreadable (the tier's topic does not exist) is logged
// once, however many polls it lasts.
func TestUnreadableLagLoggedOnce(t *testing.T) {
	b, err := kafka.StartBroker("127.0.0.1:0", 1, nil, nil)
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
	if n := strings.Count(out, "lag unreadable"); n != 1 || !strings.Contains(out, "tier=edge") {
		t.Errorf("%d warnings in a second of 100ms polls, want 1:\n%s", n, out)
	}
}

// A target of fixed size is refused: there is nothing to decide for it.
func TestNewRefusesFixedSizeTarget(t *testing.T) {
	_, err := New(Config{Targets: []Target{{Tier: "fog", Min: 2, Max: 2, Settings: pipeline.DefaultScaling(), Runtime: &fixedRuntime{}}}})
	if err == nil || !strings.Contains(err.Error(), `tier "fog": replicas min 2 and max 2 leave nothing to scale`) {
		t.Errorf("New with a fixed-size target: %v", err)
	}
}

// The scaler reads the lag `ddnn up` reports as unprocessed (kafka.Lag):
// a partition the group never committed counts from its log start, even
// with no member in the group to hold it, and a group that committed
// nothing yet (its connector has not joined) has all of its topic to do.
func TestLagCountsPartitionsNeverCommitted(t *testing.T) {
	b, err := kafka.StartBroker("127.0.0.1:0", 2, []string{"t.edge.in"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// 5 records on each partition, and the group never committed.
	adm := testsupport.Fill(t, b.Addr(), 10, "t.edge.in")
	const want = 5 + 5
	if up, err := kafka.Lag(ctx, adm, "t.edge.connector", "t.edge.in"); err != nil || up.Lag != want {
		t.Fatalf("kafka.Lag = %d, %v; want %d", up.Lag, err, want)
	}

	reg := prometheus.NewRegistry()
	set := pipeline.DefaultScaling()
	set.PollInterval = 100 * time.Millisecond
	s, err := New(Config{
		Admin:      adm,
		Targets:    []Target{{Tier: "edge", Group: "t.edge.connector", Topic: "t.edge.in", Min: 1, Max: 3, Settings: set, Runtime: &fixedRuntime{}}},
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()
	lag := func() (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch {
			case mf.GetName() == "ddnn_scaler_lag_read_errors_total":
				t.Fatal("the scaler could not read the lag")
			case mf.GetName() == "ddnn_scaler_lag_records" && len(mf.GetMetric()) == 1:
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	for {
		if got, ok := lag(); ok {
			if got != want {
				t.Fatalf("the scaler reads a lag of %v, want %d", got, want)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the scaler read no lag within 10s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRunWithoutTargetsWaits: a scaler whose tiers are all of fixed size
// has nothing to scale, and still runs until its context ends: ddnn
// scaler serves the tiers' replica sets for as long as Run runs.
func TestRunWithoutTargetsWaits(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before its context ended", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context's end")
	}
}

// TestReadyOnceLagRead: a scaler is ready once it read the lag of every
// target, and not while the lag does not read (its Kafka does not
// answer); without targets it is ready at once.
func TestReadyOnceLagRead(t *testing.T) {
	b, err := kafka.StartBroker("127.0.0.1:0", 2, []string{"t.edge.in", "t.fog.in"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	set := pipeline.DefaultScaling()
	set.PollInterval = 100 * time.Millisecond
	targets := []Target{
		{Tier: "edge", Group: "t.edge.connector", Topic: "t.edge.in", Min: 1, Max: 3, Settings: set, Runtime: &fixedRuntime{}},
		{Tier: "fog", Group: "t.fog.connector", Topic: "t.fog.in", Min: 1, Max: 2, Settings: set, Runtime: &fixedRuntime{}},
	}
	run := func(t *testing.T, brokers string, ts []Target) *Scaler {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		s, err := New(Config{Admin: kadm.NewClient(cl), Targets: ts})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
		return s
	}
	t.Run("kafka unreachable", func(t *testing.T) {
		s := run(t, proctest.FreeAddr(t), targets)
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if s.Ready() {
				t.Fatal("ready without a lag read")
			}
		}
	})
	t.Run("lag read", func(t *testing.T) {
		s := run(t, b.Addr(), targets)
		testsupport.WaitFor(t, 15*time.Second, "ready once both tiers' lag read", s.Ready)
	})
	t.Run("no targets", func(t *testing.T) {
		if s := run(t, b.Addr(), nil); !s.Ready() {
			t.Error("a scaler without targets is not ready")
		}
	})
}

// TestUpdateMovesTheBounds: new bounds take effect at the next polls, as
// a reload applies them: raising min scales the tier up to it; bounds
// that do not validate and a tier the scaler does not size are refused.
func TestUpdateMovesTheBounds(t *testing.T) {
	b, err := kafka.StartBroker("127.0.0.1:0", 1, []string{"t.edge.in"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(b.Addr()))
	set := pipeline.DefaultScaling()
	set.PollInterval = 100 * time.Millisecond
	rt := &fixedRuntime{n: 1}
	s, err := New(Config{Admin: kadm.NewClient(cl), Targets: []Target{
		{Tier: "edge", Group: "t.edge.connector", Topic: "t.edge.in", Min: 1, Max: 3, Settings: set, Runtime: rt},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testsupport.WaitFor(t, 5*time.Second, "the lag read", s.Ready)

	faster := set
	faster.PollInterval = 200 * time.Millisecond
	if err := s.Update("edge", Bounds{Min: 2, Max: 3, Settings: faster}); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the tier scaled up to its new min 2", func() bool {
		n, _ := rt.List(context.Background())
		return len(n) == 2
	})
	for _, tc := range []struct {
		tier string
		b    Bounds
		want string
	}{
		{"fog", Bounds{Min: 1, Max: 2, Settings: set}, `tier "fog": the scaler does not size it`},
		{"edge", Bounds{Min: 3, Max: 2, Settings: set}, "want 0 <= min <= max"},
		{"edge", Bounds{Min: 1, Max: 2, Settings: pipeline.Scaling{}}, `tier "edge": `},
	} {
		if err := s.Update(tc.tier, tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Update(%s, %+v): %v, want %q", tc.tier, tc.b, err, tc.want)
		}
	}
}
