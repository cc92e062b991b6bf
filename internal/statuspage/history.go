package statuspage

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/status"
)

// SnapshotFunc reads a pipeline's status as it is now.
type SnapshotFunc func(context.Context) (status.Snapshot, error)

// History is what /v1/status/history answers: each tier's samples over
// the last window, oldest first, in the order of the latest snapshot.
type History struct {
	IntervalSeconds float64       `json:"interval_seconds"`
	WindowSeconds   float64       `json:"window_seconds"`
	Tiers           []TierHistory `json:"tiers"`
	// Error is why the latest sample failed, while it does.
	Error string `json:"error,omitempty"`
}

// TierHistory is one tier's samples.
type TierHistory struct {
	Site   string  `json:"site"`
	Tier   string  `json:"tier"`
	Points []Point `json:"points"`
}

// Point is a tier's latency and throughput at one sample: the fields of
// status.Tier the charts draw.
type Point struct {
	Time       time.Time `json:"time"`
	InRate     float64   `json:"in_rate"`
	OutRate    float64   `json:"out_rate"`
	P50Seconds *float64  `json:"p50_seconds"`
	P99Seconds *float64  `json:"p99_seconds"`
}

// tierKey names a tier on a site.
type tierKey struct{ site, tier string }

// sampler reads snapshots every interval while the page is watched and
// keeps each tier's points of the last window in a ring.
type sampler struct {
	snapshot SnapshotFunc
	interval time.Duration
	window   time.Duration
	idle     time.Duration // sampling stops this long after the last ask
	timeout  time.Duration // bounds one snapshot
	size     int           // points kept per tier
	log      *slog.Logger

	wake     chan struct{} // an ask while not sampling
	sampling atomic.Bool   // Run is sampling, not waiting for an ask

	mu        sync.Mutex
	order     []tierKey // of the latest snapshot
	rings     map[tierKey]*ring
	lastErr   string
	lastAsked time.Time
}

func newSampler(snapshot SnapshotFunc, o Options) *sampler {
	return &sampler{
		snapshot: snapshot, interval: o.Interval, window: o.Window, idle: o.Idle, timeout: o.Timeout,
		size: int(o.Window/o.Interval) + 1, log: o.Logger,
		wake: make(chan struct{}, 1), rings: map[tierKey]*ring{},
	}
}

// run samples every interval from an ask until idle has passed without
// one, then waits for the next ask, until ctx ends.
func (s *sampler) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		s.sampling.Store(true)
		tick := time.NewTicker(s.interval)
		for s.watched() {
			s.sample(ctx)
			select {
			case <-ctx.Done():
				tick.Stop()
				s.sampling.Store(false)
				return nil
			case <-tick.C:
			}
		}
		tick.Stop()
		s.sampling.Store(false)
	}
}

// ask records that the page asked for the history, which starts sampling
// when it was stopped.
func (s *sampler) ask() {
	s.mu.Lock()
	s.lastAsked = time.Now()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sampler) watched() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.lastAsked) < s.idle
}

// sample reads one snapshot and adds a point to each of its tiers' rings;
// tiers no longer in the snapshot are dropped.
func (s *sampler) sample(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	snap, err := s.snapshot(sctx)
	cancel()
	if err != nil {
		s.mu.Lock()
		changed := s.lastErr != err.Error()
		s.lastErr = err.Error()
		s.mu.Unlock()
		// Once per change, not every interval; a stop is no failure.
		if changed && ctx.Err() == nil {
			s.log.Warn("status sample failed", "err", err)
		}
		return
	}
	at := snap.Time
	if at.IsZero() {
		at = time.Now()
	}
	s.add(snap, at)
}

func (s *sampler) add(snap status.Snapshot, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = ""
	seen := make(map[tierKey]*ring, len(s.rings))
	s.order = s.order[:0]
	for _, site := range snap.Sites {
		for _, t := range site.Tiers {
			k := tierKey{site.Name, t.Name}
			if _, dup := seen[k]; dup {
				continue
			}
			r := s.rings[k]
			if r == nil {
				r = newRing(s.size)
			}
			// A snapshot read again (the same time) is no new point.
			if last, ok := r.last(); !ok || !last.Time.Equal(at) {
				r.add(Point{Time: at, InRate: t.InRate, OutRate: t.OutRate, P50Seconds: t.P50Seconds, P99Seconds: t.P99Seconds})
			}
			seen[k] = r
			s.order = append(s.order, k)
		}
	}
	s.rings = seen
}

// history is each tier's points no older than the window before the
// newest one.
func (s *sampler) history() History {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := History{IntervalSeconds: s.interval.Seconds(), WindowSeconds: s.window.Seconds(), Error: s.lastErr,
		Tiers: make([]TierHistory, 0, len(s.order))}
	for _, k := range s.order {
		points := s.rings[k].points()
		if n := len(points); n > 0 {
			from := points[n-1].Time.Add(-s.window)
			for len(points) > 0 && points[0].Time.Before(from) {
				points = points[1:]
			}
		}
		h.Tiers = append(h.Tiers, TierHistory{Site: k.site, Tier: k.tier, Points: points})
	}
	return h
}

// ring holds the last len(buf) points, dropping the oldest.
type ring struct {
	buf  []Point
	next int // where the next point goes
	full bool
}

func newRing(size int) *ring { return &ring{buf: make([]Point, size)} }

func (r *ring) add(p Point) {
	r.buf[r.next] = p
	r.next = (r.next + 1) % len(r.buf)
	r.full = r.full || r.next == 0
}

// last is the newest point, if any.
func (r *ring) last() (Point, bool) {
	if !r.full && r.next == 0 {
		return Point{}, false
	}
	return r.buf[(r.next+len(r.buf)-1)%len(r.buf)], true
}

// points returns a copy of the points, oldest first.
func (r *ring) points() []Point {
	if !r.full {
		return append([]Point(nil), r.buf[:r.next]...)
	}
	return append(append(make([]Point, 0, len(r.buf)), r.buf[r.next:]...), r.buf[:r.next]...)
}
