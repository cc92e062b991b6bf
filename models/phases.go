package models

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// A Phase is a stretch of a drift workload: the test set under one
// transform, sent for a duration.
type Phase struct {
	Transform *Transform
	Duration  time.Duration
}

// String is the phase as written in a phase list, in canonical form.
func (p Phase) String() string {
	return p.Transform.String() + ":" + p.Duration.String()
}

// ParsePhases parses a phase list such as "clean:60s,noise=0.3:60s,clean:60s":
// phases separated by ",", each a transform spec (see Transform), ":" and
// a positive duration (Go syntax: 90s, 2m). Every bad phase is reported,
// each by its position and text.
func ParsePhases(list string) ([]Phase, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("phase list is empty: want phases such as clean:60s,noise=0.3:60s")
	}
	var phases []Phase
	var errs []error
	for i, text := range strings.Split(list, ",") {
		p, err := parsePhase(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("phase %d %q: %w", i+1, text, err))
			continue
		}
		phases = append(phases, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("phase list %q: %w", list, err)
	}
	return phases, nil
}

// parsePhase parses one SPEC:DURATION.
func parsePhase(text string) (Phase, error) {
	spec, dur, ok := strings.Cut(strings.TrimSpace(text), ":")
	if !ok {
		return Phase{}, errors.New("no duration: want SPEC:DURATION, e.g. noise=0.3:60s")
	}
	if spec == "" {
		return Phase{}, errors.New("no transform before the duration (use clean for the test set as it is)")
	}
	if strings.Contains(dur, ":") {
		return Phase{}, errors.New("more than one ':': want SPEC:DURATION")
	}
	d, err := time.ParseDuration(dur)
	if err != nil {
		return Phase{}, fmt.Errorf("duration %q: want a Go duration such as 60s or 2m", dur)
	}
	if d <= 0 {
		return Phase{}, fmt.Errorf("duration %s is not positive", d)
	}
	t, err := ParseTransform(spec)
	if err != nil {
		return Phase{}, err
	}
	return Phase{Transform: t, Duration: d}, nil
}
