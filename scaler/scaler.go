package scaler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// Target is one tier the scaler watches and sizes.
type Target struct {
	Tier     string
	Group    string // the tier connector's consumer group
	Topic    string // the tier's input topic
	Min, Max int
	Settings Settings
	Runtime  runtime.Runtime
}

// Config is what a Scaler needs.
type Config struct {
	// Admin reads lag and offsets.
	Admin   *kadm.Client
	Targets []Target
	// Registerer receives the scaler's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Scaler runs one control loop per target.
type Scaler struct {
	cfg Config
	m   *Metrics
	log *slog.Logger
	// unread counts the targets whose lag was never read yet.
	unread atomic.Int64
	// bounds are each target's replica bounds and settings as they are
	// now (Update), read by its loop at every poll.
	bounds map[string]*atomic.Pointer[Bounds]
}

// Bounds are what a target's loop decides with: its replica bounds and
// its scaler settings.
type Bounds struct {
	Min, Max int
	Settings Settings
}

// Update sets tier's bounds from its next poll on, as a reload of the
// pipeline does: the replicas move into the new bounds at the next
// decision. A tier the scaler does not size, or bounds that do not
// validate, are refused and change nothing.
func (s *Scaler) Update(tier string, b Bounds) error {
	cur, ok := s.bounds[tier]
	if !ok {
		return fmt.Errorf("tier %q: the scaler does not size it (its replicas were fixed at start): a restart is needed", tier)
	}
	if err := b.Settings.Validate(); err != nil {
		return fmt.Errorf("tier %q: %w", tier, err)
	}
	if b.Min < 0 || b.Min > b.Max {
		return fmt.Errorf("tier %q: replicas min %d and max %d: want 0 <= min <= max", tier, b.Min, b.Max)
	}
	cur.Store(&b)
	return nil
}

// Ready reports whether the scaler has read the lag of every target at
// least once: it can decide. A scaler without targets is ready at once.
func (s *Scaler) Ready() bool { return s.unread.Load() == 0 }

// New checks the targets' settings against the pipeline's bounds.
func New(cfg Config) (*Scaler, error) {
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		if err := t.Settings.Validate(); err != nil {
			return nil, fmt.Errorf("tier %q: %w", t.Tier, err)
		}
		if t.Min >= t.Max {
			return nil, fmt.Errorf("tier %q: replicas min %d and max %d leave nothing to scale (StartTiers keeps such tiers out of the targets)", t.Tier, t.Min, t.Max)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scaler{cfg: cfg, log: log.With("component", "scaler"), bounds: map[string]*atomic.Pointer[Bounds]{}}
	for _, t := range cfg.Targets {
		b := &atomic.Pointer[Bounds]{}
		b.Store(&Bounds{Min: t.Min, Max: t.Max, Settings: t.Settings})
		s.bounds[t.Tier] = b
	}
	s.unread.Store(int64(len(cfg.Targets)))
	if cfg.Registerer != nil {
		s.m = NewMetrics(cfg.Registerer)
	}
	return s, nil
}

// Run polls and decides for every target until ctx ends, starting from
// the target's minimum, where StartTiers left its replicas; without
// targets (every tier of fixed size) it just waits for ctx. Replicas are
// left as they are when it returns.
func (s *Scaler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range s.cfg.Targets {
		wg.Go(func() { s.loop(ctx, t) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// offsets is one lag reading.
type offsets struct {
	at     time.Time
	lag    int64
	end    int64 // sum of end offsets: what arrived
	commit int64 // sum of consumed offsets (kafka.PartitionLag): what was served
}

func (s *Scaler) loop(ctx context.Context, t Target) {
	log := s.log.With("tier", t.Tier)
	cur := t.Min
	var (
		st       State
		prev     *offsets
		capacity float64
		// unreadSince is when the lag last became unreadable (zero while
		// it reads): the change is logged once each way, not every poll.
		unreadSince time.Time
		// read is set once the lag was read (Ready).
		read bool
	)
	tick := time.NewTicker(t.Settings.PollInterval)
	defer tick.Stop()
	every := t.Settings.PollInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// The bounds and settings as they are now (Update).
		b := s.bounds[t.Tier].Load()
		t.Min, t.Max, t.Settings = b.Min, b.Max, b.Settings
		if every != t.Settings.PollInterval {
			every = t.Settings.PollInterval
			tick.Reset(every)
		}
		now := time.Now()
		ready := 0
		if reps, err := t.Runtime.List(ctx); err == nil {
			for _, r := range reps {
				if r.Ready {
					ready++
				}
			}
		}
		in := Inputs{Now: now, Current: cur, Ready: ready, Min: t.Min, Max: t.Max}
		o, err := s.read(ctx, t)
		if err != nil {
			s.m.lagError(t.Tier)
			switch {
			case !unreadSince.IsZero():
				log.Debug("lag still unreadable", "err", err)
			default:
				log.Warn("lag unreadable; holding the replicas until it reads again", "err", err)
			}
			if unreadSince.IsZero() {
				unreadSince = now
			}
			prev = nil // rates need two good readings in a row
		} else {
			if !read {
				read = true
				s.unread.Add(-1)
			}
			if !unreadSince.IsZero() {
				log.Info("lag readable again", "after", now.Sub(unreadSince).Round(time.Millisecond))
				unreadSince = time.Time{}
			}
			in.LagOK, in.Lag = true, o.lag
			if prev != nil {
				dt := o.at.Sub(prev.at).Seconds()
				in.Arrival = max(0, float64(o.end-prev.end)/dt)
				in.Service = max(0, float64(o.commit-prev.commit)/dt)
				// Capacity is what the ready replicas serve while a
				// backlog keeps them all busy: the lag grew, or each
				// replica has a full share of it. (Lag that is merely
				// in flight would make idle replicas look slow and
				// inflate the count.)
				saturated := o.lag > prev.lag || o.lag >= t.Settings.LagPerReplica*int64(ready)
				if saturated && prev.lag > 0 && ready > 0 && in.Service > 0 {
					sample := in.Service / float64(ready)
					if capacity == 0 {
						capacity = sample
					} else {
						capacity = 0.7*capacity + 0.3*sample
					}
				}
			}
			prev = &o
		}
		in.Capacity = capacity
		var d Decision
		d, st = Decide(st, t.Settings, in)
		s.m.observe(t.Tier, in, d)
		if !d.Changed {
			continue
		}
		log.Info("scale", d.LogAttrs(in)...)
		if err := t.Runtime.Scale(ctx, d.Replicas); err != nil {
			log.Error("scale", "replicas", d.Replicas, "err", err)
			continue
		}
		cur = d.Replicas
	}
}

// read sums the group's lag and offsets over the tier's topic
// (kafka.Lag: a partition the group never committed counts from its log
// start).
func (s *Scaler) read(ctx context.Context, t Target) (offsets, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	lag, err := kafka.Lag(ctx, s.cfg.Admin, t.Group, t.Topic)
	if err != nil {
		return offsets{}, err
	}
	return offsets{at: time.Now(), lag: lag.Lag, end: lag.End, commit: lag.Consumed}, nil
}
