package scaler

import (
	"math"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Settings tune one tier's decisions: a tier's scaling section, whose
// defaults (pipeline.DefaultScaling) and bounds (Validate) the pipeline
// owns, so the scaler alone and under `ddnn up` runs with the same values.
// Decide takes them as they are: a zero stabilization window scales down
// at once.
type Settings = pipeline.Scaling

// Inputs are one poll's readings.
type Inputs struct {
	Now      time.Time
	Current  int // replicas asked for now
	Ready    int
	Min, Max int
	LagOK    bool    // the lag read succeeded
	Lag      int64   // records, never-committed partitions counted in full
	Arrival  float64 // λ, records/s
	Service  float64 // μ, records/s
	Capacity float64 // records/s one replica serves; 0 = not yet known
}

// Reasons label decisions (a fixed set: they are metric label values).
const (
	ReasonSteady      = "steady"
	ReasonScaleUp     = "scale_up"
	ReasonScaleDown   = "scale_down"
	ReasonStabilizing = "stabilizing"
	ReasonActivation  = "activation"
	ReasonToZero      = "to_zero"
	ReasonLagError    = "lag_error_hold"
)

// Decision is what to do after one poll.
type Decision struct {
	Replicas int    // the count to ask for
	Desired  int    // the formula's count, clamped, before stabilization
	Reason   string // one of the Reason constants
	Changed  bool   // Replicas differs from Inputs.Current
}

// LogAttrs are the decision and its inputs as slog key/value pairs.
func (d Decision) LogAttrs(in Inputs) []any {
	return []any{"replicas", d.Replicas, "desired", d.Desired, "reason", d.Reason,
		"current", in.Current, "ready", in.Ready, "lag", in.Lag, "lag_ok", in.LagOK,
		"arrival", math.Round(in.Arrival*10) / 10, "service", math.Round(in.Service*10) / 10,
		"capacity", math.Round(in.Capacity*10) / 10}
}

// State is what Decide remembers between polls. The zero value is a fresh
// start.
type State struct {
	window []desiredAt // desired counts within the stabilization window
	lastUp time.Time   // last scale-up
	idle   time.Time   // since when there was no lag and no arrival; zero if busy
}

type desiredAt struct {
	at      time.Time
	desired int
}

// Decide is the scaling rule: a pure function of the state, the settings
// and one poll's inputs (time comes from in.Now).
//
//   - desired = max(⌈(λ + lag/target_drain)/capacity⌉, ⌈lag/lag_per_replica⌉),
//     clamped to [min, max]; with capacity unknown, only the lag term.
//   - Up: at once, to desired, in one step.
//   - Down: one step, only when the maximum desired over the stabilization
//     window is below the current count and no scale-up happened within the
//     window. With capacity unknown the lag term alone drives this.
//   - Zero (min 0): only after no lag and no arrivals for the cooldown; from
//     zero, lag >= activation lag starts replicas at once.
//   - A failed lag read holds the current count.
func Decide(st State, set Settings, in Inputs) (Decision, State) {
	cur := in.Current
	hold := func(reason string, desired int) (Decision, State) {
		return Decision{Replicas: cur, Desired: desired, Reason: reason}, st
	}
	if !in.LagOK {
		// No reading: hold, and do not let the gap count as idle time.
		st.idle = time.Time{}
		return hold(ReasonLagError, cur)
	}

	desired := desiredCount(set, in)
	st.window = append(st.window, desiredAt{in.Now, desired})
	cut := 0
	for cut < len(st.window) && in.Now.Sub(st.window[cut].at) > set.StabilizationWindow {
		cut++
	}
	st.window = append(st.window[:0], st.window[cut:]...)

	busy := in.Lag > 0 || in.Arrival > 0
	switch {
	case busy:
		st.idle = time.Time{}
	case st.idle.IsZero():
		st.idle = in.Now
	}

	change := func(n int, reason string) (Decision, State) {
		if n > cur {
			st.lastUp = in.Now
		}
		return Decision{Replicas: n, Desired: desired, Reason: reason, Changed: n != cur}, st
	}

	// From zero: the first records start replicas.
	if cur == 0 {
		if in.Lag >= set.ActivationLag {
			return change(max(desired, 1), ReasonActivation)
		}
		if in.Min > 0 {
			return change(max(desired, in.Min), ReasonScaleUp)
		}
		return hold(ReasonSteady, desired)
	}
	if cur < in.Min {
		return change(max(desired, in.Min), ReasonScaleUp)
	}
	if desired > cur {
		return change(desired, ReasonScaleUp)
	}

	// To zero: only min 0, only after a whole idle cooldown.
	if in.Min == 0 && !busy && !st.idle.IsZero() && in.Now.Sub(st.idle) >= set.CooldownToZero {
		if cur > 1 && !downAllowed(st, set, in, cur) {
			return hold(ReasonStabilizing, desired)
		}
		return change(0, ReasonToZero)
	}

	if desired >= cur {
		return hold(ReasonSteady, desired)
	}
	floor := max(in.Min, 1) // zero only through the cooldown above
	if cur <= floor {
		return hold(ReasonSteady, desired)
	}
	if !downAllowed(st, set, in, cur) {
		return hold(ReasonStabilizing, desired)
	}
	return change(cur-1, ReasonScaleDown)
}

// downAllowed: every desired count in the window is below cur, and the
// window has passed since the last scale-up.
func downAllowed(st State, set Settings, in Inputs, cur int) bool {
	if !st.lastUp.IsZero() && in.Now.Sub(st.lastUp) < set.StabilizationWindow {
		return false
	}
	peak := 0
	for _, w := range st.window {
		peak = max(peak, w.desired)
	}
	return peak < cur
}

// desiredCount is the formula, clamped to [min, max].
func desiredCount(set Settings, in Inputs) int {
	byLag := int(math.Ceil(float64(in.Lag) / float64(set.LagPerReplica)))
	n := byLag
	if in.Capacity > 0 {
		need := (in.Arrival + float64(in.Lag)/set.TargetDrain.Seconds()) / in.Capacity
		n = max(n, int(math.Ceil(need-1e-9)))
	}
	return min(max(n, in.Min), in.Max)
}
