package statuspage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/status"
)

// continuum plays the shipped three-site continuum
// (deploy/examples/continuum.yaml) over steps of 2 s: every tier busy,
// then the cloud tier dead-lettering a few images and the fog tier's only
// replica gone from downStep on (down, its input lagging). Its snapshot
// func takes the next step each call, up to the last, which it then
// repeats; current is the step last taken.
type continuum struct {
	steps    int
	downStep int

	mu   sync.Mutex
	step int // the next step to take
	fail error
}

var continuumStart = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// next is the snapshot func the sampler reads.
func (c *continuum) next(context.Context) (status.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return status.Snapshot{}, c.fail
	}
	if c.step < c.steps {
		c.step++
	}
	return c.at(c.step - 1), nil
}

// current is what /v1/status answers: the step last taken.
func (c *continuum) current(context.Context) (status.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return status.Snapshot{}, c.fail
	}
	return c.at(max(c.step-1, 0)), nil
}

func (c *continuum) setFail(err error) {
	c.mu.Lock()
	c.fail = err
	c.mu.Unlock()
}

func ptr[T any](v T) *T { return &v }

// wave is a value around mean that moves with the step.
func wave(mean, amp float64, i int, phase float64) float64 {
	return math.Round((mean+amp*math.Sin(float64(i)/3+phase))*1e6) / 1e6
}

func (c *continuum) at(i int) status.Snapshot {
	now := continuumStart.Add(time.Duration(i) * 2 * time.Second)
	down := i >= c.downStep
	endpoint := func(addr string) status.Endpoint { return status.Endpoint{Address: addr, Up: true} }
	edgeIn := wave(480, 60, i, 0)
	edge := status.Tier{
		Name: "edge", Runtime: "process", Model: status.Model{File: "models/edge.onnx", SHA256: "3f9a1c0b2d4e"},
		ReadyReplicas: 2, DesiredReplicas: 2, MinReplicas: 1, MaxReplicas: 4,
		Lag: int64(20 + i%7*4), InRate: edgeIn, OutRate: wave(470, 55, i, -0.4), ExitRatio: ptr(0.62),
		P50Seconds: ptr(wave(0.0018, 0.0003, i, 1)), P99Seconds: ptr(wave(0.0065, 0.0012, i, 2)), State: status.StateOK,
	}
	fog := status.Tier{
		Name: "fog", Runtime: "process", Model: status.Model{File: "models/fog.onnx", SHA256: "b71e05d9c3a2"},
		ReadyReplicas: 1, DesiredReplicas: 1, MinReplicas: 1, MaxReplicas: 1,
		Lag: int64(3 + i%3), InRate: wave(182, 25, i, 0.5), OutRate: wave(176, 22, i, 0.1), ExitRatio: ptr(0.71),
		P50Seconds: ptr(wave(0.0042, 0.0006, i, 0.3)), P99Seconds: ptr(wave(0.0121, 0.002, i, 1.3)), State: status.StateOK,
	}
	cloudIn := wave(53, 8, i, 1)
	cloud := status.Tier{
		Name: "cloud", Runtime: "process", Model: status.Model{File: "models/cloud.onnx", SHA256: "0c44e8a17f6b"},
		ReadyReplicas: 1, DesiredReplicas: 1, MinReplicas: 1, MaxReplicas: 1,
		Lag: int64(i % 4), InRate: cloudIn, OutRate: cloudIn - 0.4, ExitRatio: ptr(1.0),
		P50Seconds: ptr(wave(0.0141, 0.002, i, 0.7)), P99Seconds: ptr(wave(0.0388, 0.005, i, 2.1)), State: status.StateOK,
	}
	var problems []string
	if down {
		since := continuumStart.Add(time.Duration(c.downStep) * 2 * time.Second)
		fog.ReadyReplicas, fog.Down, fog.DownSince, fog.State = 0, true, &since, status.StateDown
		fog.Lag = int64(182 * 2 * (i - c.downStep + 1))
		fog.InRate, fog.OutRate, fog.P50Seconds, fog.P99Seconds = 0, 0, nil, nil
		cloud.InRate, cloud.OutRate, cloud.P50Seconds, cloud.P99Seconds = 0, 0, nil, nil
		problems = append(problems, fmt.Sprintf("site fog: tier fog down since %s: no replica answers; %d records waiting", since.Format(time.TimeOnly), fog.Lag))
	}
	// Three images the cloud model refuses, at steps 14, 15 and 22.
	cloud.DeadLetters = 4 // from before
	for _, e := range []int{14, 15, 22} {
		if e <= i {
			cloud.DeadLetters++
			if e > i-30 {
				cloud.DeadLettersLastMinute++
				cloud.State = status.StateDeadLettering
			}
		}
	}
	if cloud.State == status.StateDeadLettering {
		problems = append(problems, fmt.Sprintf("site cloud: tier cloud dead-lettering: %d in the last minute (reason: input shape [1 64] does not match [1 32])", cloud.DeadLettersLastMinute))
	}
	return status.Snapshot{
		Pipeline: "fmnist", Time: now, Problems: problems,
		Sites: []status.Site{
			{Name: "edge", Kafka: endpoint("127.0.0.1:9092"), Funnel: endpoint("127.0.0.1:8080"), Admin: endpoint("127.0.0.1:9464"),
				Tiers: []status.Tier{edge}, Uplinks: []status.Uplink{{To: "fog", Up: true, Backlog: int64(i % 5)}}},
			{Name: "fog", Kafka: endpoint("127.0.0.1:9192"), Funnel: endpoint("127.0.0.1:8180"), Admin: endpoint("127.0.0.1:9564"),
				Tiers: []status.Tier{fog}, Uplinks: []status.Uplink{{To: "cloud", Up: true}}},
			{Name: "cloud", Kafka: endpoint("127.0.0.1:9292"), Funnel: endpoint("127.0.0.1:8280"), Admin: endpoint("127.0.0.1:9664"),
				Tiers: []status.Tier{cloud}},
		},
	}
}

var errNotAnswering = errors.New(`site "edge": kafka 127.0.0.1:9092 not answering: dial tcp 127.0.0.1:9092: connect: connection refused`)
