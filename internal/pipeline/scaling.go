package pipeline

import (
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Runtimes that run inference replicas.
const (
	RuntimeProcess    = "process"
	RuntimeDocker     = "docker"
	RuntimeKubernetes = "kubernetes"
)

// DefaultReplicas is a tier's replica count when replicas: is unset.
const DefaultReplicas = 1

// Replicas says how many inference replicas serve a tier and where they run.
// In YAML it is either a number (a fixed count) or a mapping.
type Replicas struct {
	// Min and Max bound the scaler; Min 0 allows scale to zero. A fixed
	// count sets both.
	Min int `yaml:"min"`
	Max int `yaml:"max"`
	// Runtime is process (child processes, the default), docker or
	// kubernetes.
	Runtime string `yaml:"runtime"`
	// Resources limit each replica (docker).
	Resources Resources `yaml:"resources"`
	// Kubernetes names the tier's Deployment and Service (kubernetes).
	Kubernetes KubernetesTarget `yaml:"kubernetes"`
}

// Resources are per-replica limits.
type Resources struct {
	// CPUs is a CPU limit, e.g. 0.5; 0 means none.
	CPUs float64 `yaml:"cpus"`
	// MemoryMB is a memory limit in MiB; 0 means none.
	MemoryMB int64 `yaml:"memory_mb"`
}

// KubernetesTarget is where a tier's replicas live in a cluster.
type KubernetesTarget struct {
	Namespace  string `yaml:"namespace"`
	Deployment string `yaml:"deployment"`
	Service    string `yaml:"service"`
	Port       int    `yaml:"port"`
}

// Scaled reports whether the scaler may change the count.
func (r Replicas) Scaled() bool { return r.Min != r.Max }

// UnmarshalYAML takes a number (a fixed count) or a mapping. A mapping
// that names min or max describes the bounds: the one left out is 0.
func (r *Replicas) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v int
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("%q is not a number or a mapping {min, max, runtime, resources, kubernetes}", n.Value)
		}
		r.Min, r.Max = v, v
		return nil
	}
	if present(n, "min") || present(n, "max") {
		r.Min, r.Max = 0, 0
	}
	type plain Replicas
	return n.Decode((*plain)(r))
}

// Scaling tunes a tier's scaler; the scaler runs with it as it is (see
// DefaultScaling and Validate, the one place of its defaults and bounds).
type Scaling struct {
	// PollInterval is how often the scaler reads the lag and decides.
	PollInterval time.Duration `yaml:"poll_interval"`
	// TargetDrain is the time a backlog should be gone within.
	TargetDrain time.Duration `yaml:"target_drain"`
	// LagPerReplica is the lag one replica may carry.
	LagPerReplica int64 `yaml:"lag_per_replica"`
	// ActivationLag is the lag that starts a replica from zero.
	ActivationLag int64 `yaml:"activation_lag"`
	// StabilizationWindow is how long the desired count must stay below
	// the current one before a scale-down; 0 scales down at once.
	StabilizationWindow time.Duration `yaml:"stabilization_window"`
	// CooldownToZero is the idle time before a tier with min 0 goes to
	// zero; 0 goes as soon as it is idle.
	CooldownToZero time.Duration `yaml:"cooldown_to_zero"`
}

// Validate reports every bad setting, named as in the YAML
// (poll_interval: 10ms must be at least 100ms).
func (s Scaling) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if s.PollInterval < 100*time.Millisecond {
		bad("poll_interval", "%s must be at least 100ms", s.PollInterval)
	}
	if s.TargetDrain <= 0 {
		bad("target_drain", "%s must be positive", s.TargetDrain)
	}
	if s.LagPerReplica < 1 {
		bad("lag_per_replica", "%d must be at least 1", s.LagPerReplica)
	}
	if s.ActivationLag < 1 {
		bad("activation_lag", "%d must be at least 1", s.ActivationLag)
	}
	if s.StabilizationWindow < 0 {
		bad("stabilization_window", "%s must not be negative", s.StabilizationWindow)
	}
	if s.CooldownToZero < 0 {
		bad("cooldown_to_zero", "%s must not be negative", s.CooldownToZero)
	}
	return errors.Join(errs...)
}

// Emulate makes a light model behave like a heavy one on a slow node. It is
// a benchmark and test knob, off by default: never set it in production.
type Emulate struct {
	// ServiceTimePerSample is added to every batch, per sample.
	ServiceTimePerSample time.Duration `yaml:"service_time_per_sample"`
	// MaxConcurrency bounds the batches one replica runs at once (0: no
	// bound).
	MaxConcurrency int `yaml:"max_concurrency"`
}

func validateScaling(f string, t *Tier) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{f + field}, args...)...))
	}
	r := t.Replicas
	if r.Min < 0 || r.Max < 1 || r.Max > 256 || r.Min > r.Max {
		bad(".replicas", "min %d, max %d: want 0 <= min <= max, 1 <= max <= 256", r.Min, r.Max)
	}
	switch r.Runtime {
	case RuntimeProcess, RuntimeDocker, RuntimeKubernetes:
	default:
		bad(".replicas.runtime", "%q unknown (want process, docker or kubernetes)", r.Runtime)
	}
	if r.Resources.CPUs < 0 || r.Resources.MemoryMB < 0 {
		bad(".replicas.resources", "limits must not be negative")
	}
	if k := r.Kubernetes; k.Port < 1 || k.Port > 65535 {
		bad(".replicas.kubernetes.port", "%d must be in [1, 65535]", k.Port)
	}
	if err := t.Scaling.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("%s.scaling.%w", f, e))
		}
	}
	e := t.Inference.Emulate
	if e.ServiceTimePerSample < 0 || e.MaxConcurrency < 0 {
		bad(".inference.emulate", "service_time_per_sample and max_concurrency must not be negative")
	}
	return errs
}

// unjoin is the errors an errors.Join made, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
