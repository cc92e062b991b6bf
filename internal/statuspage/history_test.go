package statuspage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func at(i int) time.Time { return t0.Add(time.Duration(i) * 2 * time.Second) }

// rates returns the in rates of points, which the tests set to the step.
func rates(points []Point) []float64 {
	var out []float64
	for _, p := range points {
		out = append(out, p.InRate)
	}
	return out
}

// TestRingDropsOldest: a ring holds its last size points, oldest first,
// and hands out copies.
func TestRingDropsOldest(t *testing.T) {
	r := newRing(3)
	if _, ok := r.last(); ok || len(r.points()) != 0 {
		t.Fatalf("an empty ring has points: %v", r.points())
	}
	for i := 1; i <= 5; i++ {
		r.add(Point{InRate: float64(i)})
		if last, _ := r.last(); last.InRate != float64(i) {
			t.Errorf("after adding %d the last point is %v", i, last.InRate)
		}
		want := []float64{}
		for j := max(1, i-2); j <= i; j++ {
			want = append(want, float64(j))
		}
		if got := rates(r.points()); !slices.Equal(got, want) {
			t.Errorf("after adding 1..%d: %v, want %v", i, got, want)
		}
	}
	p := r.points()
	p[0].InRate = 99
	if got := rates(r.points()); !slices.Equal(got, []float64{3, 4, 5}) {
		t.Errorf("changing the answer changed the ring: %v", got)
	}
}

// snapshotOf is a snapshot at time i with the given site/tier names, each
// tier's in rate being i.
func snapshotOf(i int, tiers ...string) status.Snapshot {
	s := status.Snapshot{Pipeline: "p", Time: at(i)}
	for _, st := range tiers {
		site, tier, _ := strings.Cut(st, "/")
		if n := len(s.Sites); n == 0 || s.Sites[n-1].Name != site {
			s.Sites = append(s.Sites, status.Site{Name: site})
		}
		s.Sites[len(s.Sites)-1].Tiers = append(s.Sites[len(s.Sites)-1].Tiers, status.Tier{Name: tier, InRate: float64(i)})
	}
	return s
}

func testSampler(t *testing.T, snapshot SnapshotFunc, o Options) *sampler {
	t.Helper()
	p, err := New(snapshot, o)
	if err != nil {
		t.Fatal(err)
	}
	return p.sampler
}

// TestHistoryKeepsTheWindow: each tier keeps at most window/interval+1
// points and none older than the window before the newest; tiers come in
// the snapshot's order, one that left the snapshot is dropped, and a
// snapshot read twice adds no point.
func TestHistoryKeepsTheWindow(t *testing.T) {
	none := func(context.Context) (status.Snapshot, error) { return status.Snapshot{}, nil }
	// 10s of 2s samples: 6 points.
	s := testSampler(t, none, Options{Interval: 2 * time.Second, Window: 10 * time.Second})
	if s.size != 6 {
		t.Fatalf("ring size %d, want 6", s.size)
	}
	for i := range 20 {
		s.add(snapshotOf(i, "edge/edge", "fog/fog"), at(i))
	}
	h := s.history()
	if h.IntervalSeconds != 2 || h.WindowSeconds != 10 || len(h.Tiers) != 2 {
		t.Fatalf("history %+v", h)
	}
	for i, want := range []string{"edge/edge", "fog/fog"} {
		th := h.Tiers[i]
		if th.Site+"/"+th.Tier != want {
			t.Errorf("tier %d is %s/%s, want %s", i, th.Site, th.Tier, want)
		}
		if got := rates(th.Points); !slices.Equal(got, []float64{14, 15, 16, 17, 18, 19}) {
			t.Errorf("%s keeps %v, want the last 6", want, got)
		}
	}
	// The same snapshot again is no new point.
	s.add(snapshotOf(19, "edge/edge", "fog/fog"), at(19))
	if got := rates(s.history().Tiers[0].Points); len(got) != 6 || got[5] != 19 || got[4] != 18 {
		t.Errorf("a snapshot read twice: %v", got)
	}
	// A gap longer than the window leaves only the new point; fog left.
	s.add(snapshotOf(40, "edge/edge"), at(40))
	h = s.history()
	if len(h.Tiers) != 1 || !slices.Equal(rates(h.Tiers[0].Points), []float64{40}) {
		t.Errorf("after a gap, without fog: %+v", h.Tiers)
	}
	// fog back: it starts over, after edge as the snapshot has it.
	s.add(snapshotOf(41, "edge/edge", "fog/fog"), at(41))
	h = s.history()
	if len(h.Tiers) != 2 || h.Tiers[1].Tier != "fog" || !slices.Equal(rates(h.Tiers[1].Points), []float64{41}) {
		t.Errorf("fog back: %+v", h.Tiers)
	}
}

// TestSamplerSamplesWhileWatched: nothing is sampled before the history
// is asked for; then every interval until idle passes without an ask;
// the next ask starts it again; Run returns when its context ends.
func TestSamplerSamplesWhileWatched(t *testing.T) {
	var calls atomic.Int64
	snapshot := func(context.Context) (status.Snapshot, error) {
		n := int(calls.Add(1))
		return snapshotOf(n, "edge/edge"), nil
	}
	s := testSampler(t, snapshot, Options{Interval: 5 * time.Millisecond, Window: time.Minute, Idle: 150 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context's end")
		}
	}()

	if s.sampling.Load() || calls.Load() != 0 {
		t.Fatalf("sampling before anyone asked: %d snapshots", calls.Load())
	}
	s.ask()
	testsupport.WaitFor(t, 5*time.Second, "3 samples after an ask", func() bool { return calls.Load() >= 3 })
	if got := len(s.history().Tiers[0].Points); got < 3 {
		t.Errorf("%d snapshots, %d points", calls.Load(), got)
	}
	testsupport.WaitFor(t, 5*time.Second, "sampling to stop when nobody asks", func() bool { return !s.sampling.Load() })
	stopped := calls.Load()
	s.ask()
	testsupport.WaitFor(t, 5*time.Second, "sampling to start again at an ask", func() bool { return calls.Load() > stopped })
}

// TestSampleError: a failing snapshot is reported in the history, and
// the points already taken are kept; the next good one clears it.
func TestSampleError(t *testing.T) {
	var fail atomic.Bool
	var n atomic.Int64
	snapshot := func(ctx context.Context) (status.Snapshot, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a snapshot is read without a deadline")
		}
		if fail.Load() {
			return status.Snapshot{}, errors.New(`site "fog": kafka 127.0.0.1:9192 not answering`)
		}
		return snapshotOf(int(n.Add(1)), "edge/edge"), nil
	}
	s := testSampler(t, snapshot, Options{})
	ctx := context.Background()
	s.sample(ctx)
	fail.Store(true)
	s.sample(ctx)
	h := s.history()
	if h.Error != `site "fog": kafka 127.0.0.1:9192 not answering` || len(h.Tiers) != 1 || len(h.Tiers[0].Points) != 1 {
		t.Errorf("after a failed sample: %+v", h)
	}
	fail.Store(false)
	s.sample(ctx)
	if h := s.history(); h.Error != "" || len(h.Tiers[0].Points) != 2 {
		t.Errorf("after a good sample again: %+v", h)
	}
}

// TestOptions: defaults, and every bad option named at once.
func TestOptions(t *testing.T) {
	none := func(context.Context) (status.Snapshot, error) { return status.Snapshot{}, nil }
	s := testSampler(t, none, Options{})
	if s.interval != 2*time.Second || s.window != time.Minute || s.idle != time.Minute || s.timeout != 10*time.Second || s.size != 31 {
		t.Errorf("defaults: interval %v window %v idle %v timeout %v size %d", s.interval, s.window, s.idle, s.timeout, s.size)
	}
	for _, tc := range []struct {
		name string
		fn   SnapshotFunc
		o    Options
		want []string
	}{
		{"no func", nil, Options{}, []string{"no snapshot func"}},
		{"negative", none, Options{Interval: -time.Second, Idle: -1, Timeout: -2}, []string{"interval -1s: must be positive", "idle -1ns", "timeout -2ns"}},
		{"window under interval", none, Options{Interval: 5 * time.Second, Window: time.Second}, []string{"window 1s is shorter than the interval 5s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.fn, tc.o)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
}
