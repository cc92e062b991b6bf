package scaler

import (
	"context"
	"errors"
	"fmt"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
)

// Tiers are the replicas of the tiers placed on one site, as both replica
// managers (`ddnn up` and `ddnn scaler`) set them up with StartTiers.
type Tiers struct {
	// Runtimes hold each tier's replicas, by tier name.
	Runtimes map[string]runtime.Runtime
	// Targets are what the Scaler sizes: the tiers whose replicas.min
	// and replicas.max differ, in pipeline order. A fixed-size tier
	// runs its replicas.min and is not among them.
	Targets []Target
}

// StartTiers makes the runtime (replicas.New with o) of every tier of p
// placed on site and asks each for its replicas.min replicas, which is
// all of a fixed-size tier's; it does not wait for them to be ready. On
// error it stops what it started.
func StartTiers(ctx context.Context, p *pipeline.Pipeline, site string, o replicas.Options) (*Tiers, error) {
	ts := &Tiers{Runtimes: map[string]runtime.Runtime{}}
	for i := range p.Tiers {
		t := &p.Tiers[i]
		if s := p.SiteOf(t.Name); s == nil || s.Name != site {
			continue
		}
		rt, err := replicas.New(ctx, p, t, o)
		if err != nil {
			return nil, errors.Join(err, ts.Close(context.WithoutCancel(ctx)))
		}
		ts.Runtimes[t.Name] = rt
		if err := rt.Scale(ctx, t.Replicas.Min); err != nil {
			err = fmt.Errorf("tier %q: start %d replicas: %w", t.Name, t.Replicas.Min, err)
			return nil, errors.Join(err, ts.Close(context.WithoutCancel(ctx)))
		}
		if t.Replicas.Scaled() {
			ts.Targets = append(ts.Targets, Target{
				Tier: t.Name, Group: p.ConsumerGroup(t.Name), Topic: p.InputTopic(t.Name),
				Min: t.Replicas.Min, Max: t.Replicas.Max, Settings: t.Scaling, Runtime: rt,
			})
		}
	}
	return ts, nil
}

// Close stops every tier's replicas, in parallel.
func (ts *Tiers) Close(ctx context.Context) error {
	errs := make(chan error, len(ts.Runtimes))
	for name, rt := range ts.Runtimes {
		go func() {
			if err := rt.Close(ctx); err != nil {
				errs <- fmt.Errorf("tier %q: stop replicas: %w", name, err)
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range ts.Runtimes {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
