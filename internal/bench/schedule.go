package bench

import (
	"fmt"
	"slices"
	"time"
)

// Send is one planned message: when it is due after the start, and from
// which device.
type Send struct {
	At     time.Duration
	Device int
}

// Workload kinds.
const (
	WorkloadPaper    = "paper"
	WorkloadConstant = "constant"
	WorkloadStep     = "step"
	WorkloadBurst    = "burst"
)

// Workloads lists the workload kinds for help and errors.
var Workloads = []string{WorkloadPaper, WorkloadConstant, WorkloadStep, WorkloadBurst}

// PaperPhases is the source paper's per-device schedule: 100 messages at 1/s,
// then 100 at 2/s, 3/s and 4/s (208 s).
var PaperPhases = []Phase{{Count: 100, Rate: 1}, {Count: 100, Rate: 2}, {Count: 100, Rate: 3}, {Count: 100, Rate: 4}}

// Phase is a number of messages at a rate.
type Phase struct {
	Count int
	Rate  float64 // messages per second
}

// Workload describes what the simulated devices send.
type Workload struct {
	Kind    string
	Devices int
	// Rate is the total rate over all devices (constant, step, burst).
	Rate float64
	// Duration is how long constant and step send.
	Duration time.Duration
	// Steps is how many steps a step workload climbs: Rate, 2·Rate, …
	Steps int
	// Count is how many messages a burst sends.
	Count int
	// TimeScale multiplies every rate and divides every duration: the
	// paper's 208 s schedule runs in 10.4 s at 20.
	TimeScale float64
}

// Schedule returns every send, ordered by due time. Paper runs its phases
// per device, devices staggered within the first period; the others spread
// one total rate over the devices round-robin.
func (w Workload) Schedule() ([]Send, error) {
	if w.Devices < 1 {
		return nil, fmt.Errorf("devices must be at least 1, not %d", w.Devices)
	}
	if w.TimeScale <= 0 {
		return nil, fmt.Errorf("time scale must be positive, not %g", w.TimeScale)
	}
	var phases []Phase
	switch w.Kind {
	case WorkloadPaper:
		var out []Send
		first := time.Duration(float64(time.Second) / (PaperPhases[0].Rate * w.TimeScale))
		for d := 0; d < w.Devices; d++ {
			offset := first * time.Duration(d) / time.Duration(w.Devices)
			for _, s := range phaseSends(PaperPhases, w.TimeScale) {
				out = append(out, Send{At: offset + s, Device: d})
			}
		}
		slices.SortStableFunc(out, func(a, b Send) int { return int(a.At - b.At) })
		return out, nil
	case WorkloadConstant:
		if w.Rate <= 0 || w.Duration <= 0 {
			return nil, fmt.Errorf("constant needs --rate and --duration above zero")
		}
		phases = []Phase{{Count: max(1, int(w.Rate*w.Duration.Seconds())), Rate: w.Rate}}
	case WorkloadStep:
		if w.Rate <= 0 || w.Duration <= 0 || w.Steps < 1 {
			return nil, fmt.Errorf("step needs --rate, --duration and --steps above zero")
		}
		per := w.Duration.Seconds() / float64(w.Steps)
		for i := 1; i <= w.Steps; i++ {
			r := w.Rate * float64(i)
			phases = append(phases, Phase{Count: max(1, int(r*per)), Rate: r})
		}
	case WorkloadBurst:
		if w.Rate <= 0 || w.Count < 1 {
			return nil, fmt.Errorf("burst needs --rate and --count above zero")
		}
		phases = []Phase{{Count: w.Count, Rate: w.Rate}}
	default:
		return nil, fmt.Errorf("unknown workload %q (want one of %v)", w.Kind, Workloads)
	}
	var out []Send
	for i, at := range phaseSends(phases, w.TimeScale) {
		out = append(out, Send{At: at, Device: i % w.Devices})
	}
	return out, nil
}

// phaseSends lays phases end to end: due times from zero.
func phaseSends(phases []Phase, scale float64) []time.Duration {
	var out []time.Duration
	var t float64 // seconds
	for _, p := range phases {
		gap := 1 / (p.Rate * scale)
		for i := 0; i < p.Count; i++ {
			out = append(out, time.Duration(t*float64(time.Second)))
			t += gap
		}
	}
	return out
}

// Length is when the last send is due.
func Length(s []Send) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1].At
}
