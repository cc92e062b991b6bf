package scaler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// trace simulates a scaler over synthetic load, one poll per second: load
// gives the readings of second i (Current and Now are filled in), and the
// decision's count is fed back as the next Current.
type trace struct {
	set     Settings
	min     int
	max     int
	start   int
	seconds int
	load    func(i int, cur int) Inputs
}

type step struct {
	i int
	d Decision
}

func (tr trace) run() []step {
	var st State
	cur := tr.start
	t0 := time.Unix(1_000_000, 0)
	var out []step
	for i := 0; i < tr.seconds; i++ {
		in := tr.load(i, cur)
		in.Now = t0.Add(time.Duration(i) * time.Second)
		in.Current, in.Min, in.Max = cur, tr.min, tr.max
		if in.Ready == 0 {
			in.Ready = cur
		}
		var d Decision
		d, st = Decide(st, tr.set, in)
		out = append(out, step{i, d})
		cur = d.Replicas
	}
	return out
}

func changes(steps []step, from int) (n int) {
	for _, s := range steps {
		if s.i >= from && s.d.Changed {
			n++
		}
	}
	return n
}

func TestDecideTraces(t *testing.T) {
	set := pipeline.DefaultScaling()
	for _, tc := range []struct {
		name  string
		tr    trace
		check func(t *testing.T, steps []step)
	}{
		{
			name: "burst reaches the needed count in one step",
			tr: trace{set: set, min: 1, max: 20, start: 1, seconds: 10, load: func(i, cur int) Inputs {
				if i < 5 {
					return Inputs{LagOK: true, Lag: 5, Arrival: 50, Service: 50, Capacity: 100}
				}
				// 3,000 waiting, 1,000/s arriving: (1000 + 300)/100 = 13.
				return Inputs{LagOK: true, Lag: 3000, Arrival: 1000, Service: float64(cur) * 100, Capacity: 100}
			}},
			check: func(t *testing.T, steps []step) {
				d := steps[5].d
				// ceil(3000/100) = 30 by lag, clamped to max 20.
				if d.Replicas != 20 {
					t.Errorf("first decision after the burst: %+v, want 20 (max) at once", d)
				}
				if d.Reason != ReasonScaleUp || changes(steps, 6) != 0 {
					t.Errorf("burst took more than one step: %+v", steps)
				}
			},
		},
		{
			name: "steady load settles",
			tr: trace{set: set, min: 1, max: 20, start: 1, seconds: 360, load: func(i, cur int) Inputs {
				lag := int64(20 + (i*37)%60) // noisy 20..79
				return Inputs{LagOK: true, Lag: lag, Arrival: 450, Service: 450, Capacity: 100}
			}},
			check: func(t *testing.T, steps []step) {
				if n := changes(steps, 60); n > 1 {
					t.Errorf("%d changes in 5 minutes of steady load", n)
				}
				if got := steps[len(steps)-1].d.Replicas; got != 5 {
					t.Errorf("settled at %d, want 5", got)
				}
			},
		},
		{
			name: "load oscillating around a boundary does not flap",
			tr: trace{set: set, min: 1, max: 20, start: 1, seconds: 360, load: func(i, cur int) Inputs {
				arrival := 395.0 // needs 4
				if (i/7)%2 == 1 {
					arrival = 405 // needs 5
				}
				return Inputs{LagOK: true, Lag: 0, Arrival: arrival, Service: arrival, Capacity: 100}
			}},
			check: func(t *testing.T, steps []step) {
				if n := changes(steps, 10); n > 0 {
					t.Errorf("%d changes after reaching 5 while load oscillates between needing 4 and 5", n)
				}
			},
		},
		{
			name: "drain then idle returns to min after the window, one step at a time",
			tr: trace{set: set, min: 2, max: 20, start: 2, seconds: 120, load: func(i, cur int) Inputs {
				if i < 10 {
					return Inputs{LagOK: true, Lag: 2000, Arrival: 500, Service: float64(cur) * 100, Capacity: 100}
				}
				return Inputs{LagOK: true, Capacity: 100}
			}},
			check: func(t *testing.T, steps []step) {
				peak, lastUp := 0, 0
				for _, s := range steps {
					if s.d.Replicas > peak {
						peak, lastUp = s.d.Replicas, s.i
					}
				}
				prev := peak
				for _, s := range steps[lastUp+1:] {
					if s.d.Replicas < prev-1 {
						t.Fatalf("second %d: dropped from %d to %d in one step", s.i, prev, s.d.Replicas)
					}
					if s.d.Replicas < prev && s.i-lastUp < 30 {
						t.Fatalf("second %d: scaled down %ds after the last scale-up (window 30s)", s.i, s.i-lastUp)
					}
					prev = s.d.Replicas
				}
				if last := steps[len(steps)-1].d.Replicas; last != 2 {
					t.Errorf("ended at %d, want min 2", last)
				}
			},
		},
		{
			name: "to zero only with min 0 after the cooldown, back on activation",
			tr: trace{set: set, min: 0, max: 5, start: 1, seconds: 200, load: func(i, cur int) Inputs {
				switch {
				case i == 30: // an arrival during the cooldown resets it
					return Inputs{LagOK: true, Arrival: 1}
				case i >= 150 && i < 155:
					return Inputs{LagOK: true, Lag: 1, Arrival: 1}
				}
				return Inputs{LagOK: true}
			}},
			check: func(t *testing.T, steps []step) {
				zeroAt := -1
				for _, s := range steps {
					if s.d.Replicas == 0 && zeroAt < 0 {
						zeroAt = s.i
					}
				}
				if zeroAt != 91 { // idle from second 31, cooldown 60s
					t.Errorf("went to zero at second %d, want 91", zeroAt)
				}
				if d := steps[150].d; d.Replicas != 1 || d.Reason != ReasonActivation {
					t.Errorf("activation: %+v", d)
				}
			},
		},
		{
			name: "never to zero with min 1",
			tr: trace{set: set, min: 1, max: 5, start: 3, seconds: 300, load: func(i, cur int) Inputs {
				return Inputs{LagOK: true}
			}},
			check: func(t *testing.T, steps []step) {
				if last := steps[len(steps)-1].d.Replicas; last != 1 {
					t.Errorf("ended at %d, want 1", last)
				}
			},
		},
		{
			name: "lag read errors hold",
			tr: trace{set: set, min: 1, max: 10, start: 1, seconds: 120, load: func(i, cur int) Inputs {
				switch {
				case i < 5:
					return Inputs{LagOK: true, Lag: 800, Arrival: 100, Capacity: 100}
				case i >= 60 && i < 80:
					return Inputs{LagOK: false}
				}
				return Inputs{LagOK: true}
			}},
			check: func(t *testing.T, steps []step) {
				for _, s := range steps[60:80] {
					if s.d.Changed || s.d.Reason != ReasonLagError {
						t.Fatalf("second %d with no lag reading: %+v", s.i, s.d)
					}
				}
			},
		},
		{
			name: "partitions never committed count",
			tr: trace{set: set, min: 1, max: 10, start: 1, seconds: 3, load: func(i, cur int) Inputs {
				// The group never committed: no service rate, but the
				// caller counts the whole partitions as lag.
				return Inputs{LagOK: true, Lag: 500, Arrival: 0, Service: 0}
			}},
			check: func(t *testing.T, steps []step) {
				if d := steps[0].d; d.Replicas != 5 || d.Reason != ReasonScaleUp {
					t.Errorf("never-committed lag 500: %+v, want 5 replicas", d)
				}
			},
		},
		{
			name: "capacity not yet known uses the lag term",
			tr: trace{set: set, min: 1, max: 10, start: 3, seconds: 40, load: func(i, cur int) Inputs {
				if i == 0 {
					return Inputs{LagOK: true, Lag: 450, Arrival: 400}
				}
				return Inputs{LagOK: true, Lag: 10, Arrival: 400}
			}},
			check: func(t *testing.T, steps []step) {
				if d := steps[0].d; d.Replicas != 5 {
					t.Errorf("lag 450, capacity unknown: %+v, want 5", d)
				}
				// Stepping down needs the window even with capacity unknown.
				if steps[29].d.Replicas != 5 {
					t.Errorf("scaled down within the window: %+v", steps[29].d)
				}
			},
		},
		{
			name: "clamped to max",
			tr: trace{set: set, min: 1, max: 4, start: 1, seconds: 5, load: func(i, cur int) Inputs {
				return Inputs{LagOK: true, Lag: 1_000_000, Arrival: 1e6, Capacity: 10}
			}},
			check: func(t *testing.T, steps []step) {
				for _, s := range steps {
					if s.d.Replicas > 4 {
						t.Fatalf("%+v over max", s.d)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, tc.tr.run()) })
	}
}

// TestDecideBounds: whatever the readings, the count stays in [min, max]
// (0 only with min 0), and a failed read never changes it.
func TestDecideBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var st State
	now := time.Unix(0, 0)
	cur := 1
	set := pipeline.DefaultScaling()
	set.StabilizationWindow, set.CooldownToZero = 5*time.Second, 10*time.Second
	for i := 0; i < 20000; i++ {
		min := r.IntN(3)
		max := min + 1 + r.IntN(8)
		cur = clamp(cur, min, max)
		in := Inputs{Now: now, Current: cur, Ready: cur, Min: min, Max: max, LagOK: r.IntN(10) > 0,
			Lag: int64(r.IntN(5000)) * int64(r.IntN(2)), Arrival: r.Float64() * 1000 * float64(r.IntN(2)), Capacity: r.Float64() * 200}
		var d Decision
		d, st = Decide(st, set, in)
		if d.Replicas < min || d.Replicas > max {
			t.Fatalf("%+v out of [%d, %d] for %+v", d, min, max, in)
		}
		if !in.LagOK && d.Replicas != cur {
			t.Fatalf("changed without a lag reading: %+v", d)
		}
		cur = d.Replicas
		now = now.Add(time.Duration(r.IntN(3)) * time.Second)
	}
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }

// scalingYAML is a two-tier pipeline whose edge tier has the scaling
// settings in %s.
const scalingYAML = `name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
tiers:
  - {name: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}, scaling: {%s}}
  - {name: cloud, model: c.onnx, exit: {output: o}}
`

// TestSettingsAreThePipelines: the scaler runs with a tier's scaling
// section as the pipeline decoded it, defaults and bounds included, so the
// standalone scaler and `ddnn up` cannot disagree.
func TestSettingsAreThePipelines(t *testing.T) {
	p, err := pipeline.Parse(fmt.Appendf(nil, scalingYAML, "stabilization_window: 0s"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Tiers[1].Scaling, pipeline.DefaultScaling(); got != want {
		t.Errorf("an unset scaling section is %+v, want the defaults %+v", got, want)
	}
	if w := p.Tiers[0].Scaling.StabilizationWindow; w != 0 {
		t.Errorf("stabilization_window: 0s became %s", w)
	}
	if _, err := New(Config{Targets: []Target{{Tier: "edge", Min: 1, Max: 2, Settings: p.Tiers[0].Scaling}}}); err != nil {
		t.Errorf("the scaler refuses what the pipeline accepted: %v", err)
	}
	for _, f := range []string{"poll_interval: 50ms", "lag_per_replica: 0", "activation_lag: 0", "target_drain: 0s", "cooldown_to_zero: -1s"} {
		_, perr := pipeline.Parse(fmt.Appendf(nil, scalingYAML, f))
		set := pipeline.DefaultScaling()
		if err := yaml.Unmarshal([]byte("{"+f+"}"), &set); err != nil {
			t.Fatal(err)
		}
		_, serr := New(Config{Targets: []Target{{Tier: "edge", Min: 1, Max: 2, Settings: set}}})
		if perr == nil || serr == nil {
			t.Errorf("%s: pipeline error %v, scaler error %v; want both to refuse it", f, perr, serr)
		}
	}
}

// TestZeroStabilizationScalesDownAtOnce: a zero window is honoured, not
// replaced by a default.
func TestZeroStabilizationScalesDownAtOnce(t *testing.T) {
	set := pipeline.DefaultScaling()
	set.StabilizationWindow = 0
	now := time.Unix(1000, 0)
	var st State
	d, st := Decide(st, set, Inputs{Now: now, Current: 1, Min: 1, Max: 4, LagOK: true, Lag: 400})
	if d.Replicas != 4 {
		t.Fatalf("lag 400 gave %d replicas, want 4", d.Replicas)
	}
	d, _ = Decide(st, set, Inputs{Now: now.Add(time.Second), Current: 4, Min: 1, Max: 4, LagOK: true, Lag: 0})
	if d.Replicas != 3 || d.Reason != ReasonScaleDown {
		t.Errorf("a second after the scale-up with no lag: %+v, want one step down at once", d)
	}
}
