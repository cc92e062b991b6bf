// Package docker runs a tier's inference replicas as Docker containers of
// the ddnn image (built FROM scratch by `make image`).
//
// Containers use the host's network namespace: each replica listens on
// 127.0.0.1:<free port> of the host and the connector reaches it there.
// Nothing crosses a Docker bridge, so no traffic goes to 172.x addresses.
// A replica calls nothing: it answers its connector's calls. Containers run read-only as
// user 65534 with the YAML's CPU and memory limits, carry labels naming
// pipeline and tier, and are removed when stopped; New removes leftovers of a
// crashed run by label. The pipeline file and the models it names are
// bind-mounted read-only at their host paths, so `-f` means the same inside.
//
// Replace swaps every container for one of a new spec as the process
// runtime swaps its children (see replace.go).
package docker

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// Labels on every container the runtime creates.
const (
	LabelManaged  = "ddnn.managed"
	LabelPipeline = "ddnn.pipeline"
	LabelTier     = "ddnn.tier"
)

// Config tunes the docker runtime.
type Config struct {
	// Image to run (default ddnn:latest).
	Image string
	// CPUs and MemoryBytes limit each container; 0 means no limit.
	CPUs        float64
	MemoryBytes int64
	// Mounts gives the host paths bind-mounted read-only at the same path
	// into the containers of a spec: the pipeline file and the model files
	// it names. New asks it for the first spec, Replace for the new one
	// (the file may now name other models). Nil mounts nothing.
	Mounts func(runtime.Spec) ([]string, error)
	// DrainDelay is how long a leaving replica is hidden before it is
	// stopped (default 2s), StopGrace how long it may take to stop (8s).
	DrainDelay time.Duration
	StopGrace  time.Duration
	// ReadyTimeout is how long Replace waits for a new replica to be
	// ready before it rolls back (default 1m).
	ReadyTimeout time.Duration
	Logger       *slog.Logger
}

type replica struct {
	id       string // container id
	name     string
	url      string
	started  time.Time
	draining bool
	// standby is a replica Replace started and does not list yet.
	standby bool
	// gone is closed once the replica was removed.
	gone chan struct{}
}

// started is what replicas of a spec run with: the spec and its mounts.
type started struct {
	spec   runtime.Spec
	mounts []string
}

// Runtime runs one tier's replicas as containers.
type Runtime struct {
	pipeline, tier string
	cfg            Config
	cli            *client.Client
	log            *slog.Logger
	http           *http.Client

	// change is held by Scale and Replace: one at a time, so a Scale
	// never starts a replica of a spec that is being replaced.
	change runtime.ChangeLock

	mu    sync.Mutex
	run   started // of the replicas started from now
	reps  []*replica
	next  int
	stops sync.WaitGroup
	ctx   context.Context // ends drains and waits at Close
	done  context.CancelFunc
}

var _ runtime.Replacer = (*Runtime)(nil)

// New connects to the Docker engine (DOCKER_HOST or the default socket) and
// removes leftover containers of this pipeline and tier.
func New(ctx context.Context, spec runtime.Spec, cfg Config) (*Runtime, error) {
	if cfg.Image == "" {
		cfg.Image = "ddnn:latest"
	}
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
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine at %s: %w", cli.DaemonHost(), err)
	}
	run, err := cfg.started(spec)
	if err != nil {
		cli.Close()
		return nil, err
	}
	life, cancel := context.WithCancel(context.Background())
	r := &Runtime{
		pipeline: spec.Pipeline, tier: spec.Tier(), cfg: cfg, cli: cli, run: run,
		log: log.With("runtime", "docker", "tier", spec.Tier()), http: &http.Client{Timeout: time.Second},
		ctx: life, done: cancel,
	}
	if n, err := r.removeLeftovers(ctx); err != nil {
		cancel()
		cli.Close()
		return nil, err
	} else if n > 0 {
		r.log.Info("removed containers left by an earlier run", "containers", n)
	}
	return r, nil
}

func (r *Runtime) labelFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelPipeline+"="+r.pipeline),
		filters.Arg("label", LabelTier+"="+r.tier),
	)
}

// Containers lists this tier's containers, running or not.
func (r *Runtime) Containers(ctx context.Context) ([]container.Summary, error) {
	cs, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: r.labelFilter()})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	return cs, nil
}

func (r *Runtime) removeLeftovers(ctx context.Context) (int, error) {
	cs, err := r.Containers(ctx)
	if err != nil {
		return 0, err
	}
	for _, c := range cs {
		if err := r.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			return 0, fmt.Errorf("docker: remove leftover %s: %w", c.ID[:12], err)
		}
	}
	return len(cs), nil
}

// started is spec with the mounts its replicas need.
func (c *Config) started(spec runtime.Spec) (started, error) {
	run := started{spec: spec}
	if c.Mounts == nil {
		return run, nil
	}
	m, err := c.Mounts(spec)
	if err != nil {
		return started{}, fmt.Errorf("docker: mounts of tier %q: %w", spec.Tier(), err)
	}
	run.mounts = m
	return run, nil
}

// Spec is the spec of the replicas started from now (the last Replace's).
func (r *Runtime) Spec() runtime.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.run.spec
}

// Scale starts or drains containers until n are live. During a Replace it
// waits for it (or for ctx).
func (r *Runtime) Scale(ctx context.Context, n int) error {
	if err := r.change.Lock(ctx, r.tier); err != nil {
		return err
	}
	defer r.change.Unlock()
	r.mu.Lock()
	live, run := r.liveLocked(), r.run
	r.mu.Unlock()
	start := func() error {
		_, err := r.start(ctx, run, false)
		return err
	}
	return runtime.Scale(live, n, start, func(rep *replica) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.drainLocked(rep)
	})
}

// liveLocked returns the listed replicas: not draining, not on standby,
// oldest first.
func (r *Runtime) liveLocked() []*replica {
	return slices.DeleteFunc(slices.Clone(r.reps), func(rep *replica) bool { return rep.draining || rep.standby })
}

// engineTimeout bounds the engine's create and start of one container.
const engineTimeout = time.Minute

// start creates and starts a container of run, on standby (not listed)
// if asked. The engine's calls run without the lock, so List answers
// meanwhile. They are not cut short when ctx ends (only refused if it has
// ended): a create cut short may still make a container the runtime would
// not know of.
func (r *Runtime) start(ctx context.Context, run started, standby bool) (*replica, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), engineTimeout)
	defer cancel()
	port, err := socket.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	r.mu.Lock()
	name := fmt.Sprintf("ddnn-%s-%s-%d-%d", r.pipeline, r.tier, os.Getpid(), r.next)
	r.next++
	r.mu.Unlock()
	cmd := run.spec.Args(addr)
	binds := make([]string, len(run.mounts))
	for i, m := range run.mounts {
		binds[i] = m + ":" + m + ":ro"
	}
	resp, err := r.cli.ContainerCreate(ctx,
		&container.Config{
			Image: r.cfg.Image,
			Cmd:   cmd,
			User:  ContainerUser,
			Labels: map[string]string{
				LabelManaged: "true", LabelPipeline: r.pipeline, LabelTier: r.tier,
			},
		},
		&container.HostConfig{
			NetworkMode:    "host",
			ReadonlyRootfs: true,
			Binds:          binds,
			Resources: container.Resources{
				NanoCPUs: int64(r.cfg.CPUs * 1e9),
				Memory:   r.cfg.MemoryBytes,
			},
		}, nil, nil, name)
	if err != nil {
		return nil, fmt.Errorf("docker: create %s: %w", name, err)
	}
	if err := r.cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		r.cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true})
		return nil, fmt.Errorf("docker: start %s: %w", name, err)
	}
	rep := &replica{id: resp.ID, name: name, url: "http://" + addr, started: time.Now(), standby: standby, gone: make(chan struct{})}
	r.mu.Lock()
	r.reps = append(r.reps, rep)
	r.mu.Unlock()
	r.log.Info("replica started", "replica", name, "container", resp.ID[:12], "url", rep.url)
	return rep, nil
}

func (r *Runtime) drainLocked(rep *replica) {
	if rep.draining {
		return
	}
	rep.draining = true
	r.log.Info("replica draining", "replica", rep.name)
	r.stops.Add(1)
	go func() {
		defer r.stops.Done()
		select {
		case <-time.After(r.cfg.DrainDelay):
		case <-r.ctx.Done():
		}
		r.remove(rep)
	}()
}

// remove stops (SIGTERM, then SIGKILL after the grace) and removes rep.
func (r *Runtime) remove(rep *replica) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StopGrace+10*time.Second)
	defer cancel()
	secs := int(r.cfg.StopGrace.Seconds())
	if err := r.cli.ContainerStop(ctx, rep.id, container.StopOptions{Timeout: &secs}); err != nil && !client.IsErrNotFound(err) {
		r.log.Warn("stop", "replica", rep.name, "err", err)
	}
	if err := r.cli.ContainerRemove(ctx, rep.id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		r.log.Warn("remove", "replica", rep.name, "err", err)
	}
	r.mu.Lock()
	i := slices.Index(r.reps, rep)
	if i >= 0 {
		r.reps = slices.Delete(r.reps, i, i+1)
	}
	r.mu.Unlock()
	if i >= 0 {
		close(rep.gone)
		r.log.Info("replica stopped", "replica", rep.name)
	}
}

// List returns the live containers (not draining, not on standby for a
// Replace) with readiness from their /readyz.
func (r *Runtime) List(ctx context.Context) ([]runtime.Replica, error) {
	r.mu.Lock()
	live := r.liveLocked()
	r.mu.Unlock()
	return runtime.Describe(live, func(rep *replica) runtime.Replica {
		return runtime.Replica{ID: rep.name, URL: rep.url, Ready: r.ready(ctx, rep.url), Started: rep.started}
	}), nil
}

func (r *Runtime) ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Close stops and removes every container of the tier and closes the
// client. Draining containers are removed now.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	live := slices.DeleteFunc(slices.Clone(r.reps), func(rep *replica) bool { return rep.draining })
	r.mu.Unlock()
	r.done() // a draining one is removed by its drain goroutine, now
	var wg sync.WaitGroup
	for _, rep := range live {
		wg.Go(func() { r.remove(rep) })
	}
	wg.Wait()
	r.stops.Wait()
	_, err := r.removeLeftovers(ctx)
	r.cli.Close()
	return err
}

// ContainerUser is who replicas run as in their containers: nobody.
const ContainerUser = "65534:65534"

// TokenCopy makes the service token file at path readable by
// ContainerUser: a copy next to it, <path>.container, mode 0400, owned by
// that user when this process may give it away (as root), so that the
// token is never readable by everyone. It returns the copy's path.
func TokenCopy(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	dst := path + ".container"
	os.Remove(dst)
	if err := os.WriteFile(dst, b, 0o400); err != nil {
		return "", err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dst, 65534, 65534); err != nil {
			return "", err
		}
	}
	return dst, nil
}
