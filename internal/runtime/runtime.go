// Package runtime defines how a tier's inference replicas are run, and
// holds the backends: process (child processes of the same binary, the
// default), docker and kubernetes.
//
// A Runtime owns the replicas of one tier. Every call is idempotent: asking
// for the count that exists changes nothing, stopping a replica that is gone
// succeeds. A runtime never talks to Kafka or decides how many replicas
// there should be; the scaler decides, the connector routes traffic.
package runtime

import (
	"context"
	"time"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/command"
)

// Replica is one inference replica as a runtime sees it.
type Replica struct {
	// ID names the replica within its tier and runtime (a process name, a
	// container id, a pod name).
	ID string
	// URL is the replica's base URL, reachable from this machine
	// (http://127.0.0.1:port for process and docker).
	URL string
	// Ready is true once the replica's /readyz answered 200.
	Ready bool
	// Started is when the replica was started.
	Started time.Time
}

// Runtime runs one tier's inference replicas.
type Runtime interface {
	// Scale makes n replicas exist: it starts missing ones and drains and
	// stops surplus ones (newest first). It returns once the change was
	// requested; readiness shows in List.
	Scale(ctx context.Context, n int) error
	// List returns the replicas that exist, with their readiness.
	List(ctx context.Context) ([]Replica, error)
	// Close stops every replica and releases the runtime.
	Close(ctx context.Context) error
}

// Spec is what every backend needs to start a replica of a tier.
type Spec struct {
	// Pipeline is the pipeline's name; backends label what they create
	// with it and the tier's.
	Pipeline string
	// Replica is what every replica runs: ddnn inference of the tier,
	// with paths on this machine. Each runtime sets its Listen.
	Replica inference.Command
}

// Tier is the name of the tier whose replicas these are.
func (s *Spec) Tier() string { return s.Replica.Tier }

// Name names the replicas: the tier's name, with "-canary" for the
// replicas of its canary (inference.Command.Canary).
func (s *Spec) Name() string {
	if s.Replica.Canary {
		return s.Replica.Tier + "-canary"
	}
	return s.Replica.Tier
}

// Args is the command line of a replica listening on listen.
func (s *Spec) Args(listen string) []string {
	c := s.Replica
	c.Listen = listen
	return append([]string{"inference"}, command.Args(c)...)
}
