// Package process is the default replica runtime: each inference replica is
// a child process of the same binary on a free 127.0.0.1 port, restarted if
// it dies, killed if its parent dies. Removing a replica first hides it from
// the replica list (so connectors stop sending to it), waits DrainDelay,
// then stops it with SIGTERM, which lets it finish in-flight requests.
// Replace swaps every replica for one of a new spec the same way (see
// replace.go).
package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// Config tunes the process runtime.
type Config struct {
	// Out receives the replicas' output, line by line with their names.
	Out    io.Writer
	Logger *slog.Logger
	// DrainDelay is how long a replica is hidden from the list before it
	// is stopped (default 2s: connectors poll the list twice a second).
	DrainDelay time.Duration
	// StopGrace bounds a replica's own graceful stop (default 8s).
	StopGrace time.Duration
	// ReadyTimeout is how long Replace waits for a new replica to be
	// ready before it rolls back (default 1m).
	ReadyTimeout time.Duration
}

type replica struct {
	id       string
	url      string
	child    *proc.Child
	started  time.Time
	draining bool
	// standby is a replica Replace started and does not list yet.
	standby bool
	// retiring is a replica of the spec before a ReplaceBeside: listed
	// beside the new ones, neither counted nor scaled, until retired.
	retiring bool
	// gone is closed once the replica was stopped after its drain.
	gone chan struct{}
}

// Runtime runs one tier's replicas as child processes.
type Runtime struct {
	tier string
	cfg  Config
	log  *slog.Logger

	// change is held by Scale and Replace: one at a time, so a Scale
	// never starts a replica of a spec that is being replaced.
	change runtime.ChangeLock

	mu    sync.Mutex
	spec  runtime.Spec // of the replicas started from now
	reps  []*replica
	next  int
	stops sync.WaitGroup
	ctx   context.Context // supervises children until Close
	done  context.CancelFunc
}

var _ runtime.Replacer = (*Runtime)(nil)

// New makes a runtime with no replicas; Scale starts them.
func New(spec runtime.Spec, cfg Config) *Runtime {
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = 2 * time.Second
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 8 * time.Second
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{
		tier: spec.Tier(), spec: spec, cfg: cfg, log: log.With("runtime", "process", "tier", spec.Tier()),
		ctx: ctx, done: cancel,
	}
}

// Spec is the spec of the replicas started from now (the last Replace's).
func (r *Runtime) Spec() runtime.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spec
}

// Scale starts or drains replicas until n are live. During a Replace it
// waits for it (or for ctx).
func (r *Runtime) Scale(ctx context.Context, n int) error {
	if err := r.change.Lock(ctx, r.tier); err != nil {
		return err
	}
	defer r.change.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	start := func() error {
		_, err := r.startLocked(r.spec, false)
		return err
	}
	return runtime.Scale(r.liveLocked(), n, start, r.drainLocked)
}

// liveLocked returns the replicas of the current spec that are listed:
// not draining, not on standby, not retiring; oldest first.
func (r *Runtime) liveLocked() []*replica {
	return slices.DeleteFunc(r.listedLocked(), func(rep *replica) bool { return rep.retiring })
}

// listedLocked returns the replicas connectors may call: the live ones
// and those retiring beside them.
func (r *Runtime) listedLocked() []*replica {
	return slices.DeleteFunc(slices.Clone(r.reps), func(rep *replica) bool { return rep.draining || rep.standby })
}

// startLocked starts a replica of spec, on standby (not listed) if asked.
func (r *Runtime) startLocked(spec runtime.Spec, standby bool) (*replica, error) {
	sock, err := socket.New()
	if err != nil {
		return nil, err
	}
	addr := sock.Addr
	id := fmt.Sprintf("%s-%d", spec.Name(), r.next)
	r.next++
	args := spec.Args(addr)
	c := proc.New(id, "http://"+addr+"/readyz", r.cfg.Out, r.log, args...)
	c.Pass(sock)
	if err := c.Start(); err != nil {
		sock.Close()
		return nil, err
	}
	go c.Supervise(r.ctx)
	rep := &replica{id: id, url: "http://" + addr, child: c, started: time.Now(), standby: standby, gone: make(chan struct{})}
	r.reps = append(r.reps, rep)
	r.log.Info("replica started", "replica", id, "url", rep.url, "pid", c.PID())
	go func() {
		if err := c.WaitReady(r.ctx, time.Minute); err == nil {
			r.log.Info("replica ready", "replica", id, "after", time.Since(rep.started).Round(time.Millisecond))
		}
	}()
	return rep, nil
}

// drainLocked hides rep, then stops it after the drain delay.
func (r *Runtime) drainLocked(rep *replica) {
	if rep.draining {
		return
	}
	rep.draining = true
	r.log.Info("replica draining", "replica", rep.id)
	r.stops.Add(1)
	go func() {
		defer r.stops.Done()
		select {
		case <-time.After(r.cfg.DrainDelay):
		case <-r.ctx.Done():
		}
		r.stop(rep)
	}()
}

// stop stops rep now (SIGTERM, then SIGKILL after the grace) and forgets it.
func (r *Runtime) stop(rep *replica) {
	rep.child.Stop(r.cfg.StopGrace)
	r.mu.Lock()
	if i := slices.Index(r.reps, rep); i >= 0 {
		r.reps = slices.Delete(r.reps, i, i+1)
	}
	r.mu.Unlock()
	close(rep.gone)
	r.log.Info("replica stopped", "replica", rep.id)
}

// List returns the listed replicas (not draining, not on standby for a
// Replace; retiring ones included) with their readiness.
func (r *Runtime) List(_ context.Context) ([]runtime.Replica, error) {
	r.mu.Lock()
	live := r.listedLocked()
	r.mu.Unlock()
	return runtime.Describe(live, func(rep *replica) runtime.Replica {
		return runtime.Replica{ID: rep.id, URL: rep.url, Ready: rep.child.Ready(), Started: rep.started}
	}), nil
}

// Close stops every replica (in parallel, each with its grace) and waits.
func (r *Runtime) Close(_ context.Context) error {
	r.mu.Lock()
	reps := append([]*replica(nil), r.reps...)
	r.mu.Unlock()
	r.done() // no more restarts; draining replicas stop now
	var wg sync.WaitGroup
	for _, rep := range reps {
		wg.Go(func() { rep.child.Stop(r.cfg.StopGrace) })
	}
	wg.Wait()
	r.stops.Wait()
	return nil
}

// Children returns the replicas' processes (for metrics and tests).
func (r *Runtime) Children() []*proc.Child {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*proc.Child, len(r.reps))
	for i, rep := range r.reps {
		out[i] = rep.child
	}
	return out
}
