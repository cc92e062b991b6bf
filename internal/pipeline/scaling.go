package pipeline

import (
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

var replicasFields = map[string]bool{"min": true, "max": true, "runtime": true, "resources": true, "kubernetes": true}

// UnmarshalYAML takes a number (fixed count) or a mapping, strictly.
func (r *Replicas) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v int
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: replicas: want a number or {min, max, runtime, resources, kubernetes}", n.Line)
		}
		r.Min, r.Max = v, v
		return nil
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i]; !replicasFields[k.Value] {
				return fmt.Errorf("line %d: field %s not found in replicas (want min, max, runtime, resources, kubernetes)", k.Line, k.Value)
			}
		}
	}
	type plain Replicas
	return n.Decode((*plain)(r))
}

// Scaling tunes a tier's scaler. Field names match the scaler's settings.
type Scaling struct {
	PollInterval        time.Duration `yaml:"poll_interval"`
	TargetDrain         time.Duration `yaml:"target_drain"`
	LagPerReplica       int64         `yaml:"lag_per_replica"`
	ActivationLag       int64         `yaml:"activation_lag"`
	StabilizationWindow time.Duration `yaml:"stabilization_window"`
	CooldownToZero      time.Duration `yaml:"cooldown_to_zero"`
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

func (p *Pipeline) setScalingDefaults(t *Tier) {
	r := &t.Replicas
	if r.Min == 0 && r.Max == 0 { // unset: max is at least 1 when set
		r.Min, r.Max = DefaultReplicas, DefaultReplicas
	}
	setDefault(&r.Runtime, RuntimeProcess)
	k := &r.Kubernetes
	setDefault(&k.Namespace, "ddnn")
	setDefault(&k.Deployment, "ddnn-inference-"+t.Name)
	setDefault(&k.Service, "ddnn-inference-"+t.Name)
	setDefault(&k.Port, 8090)
	s := &t.Scaling
	setDefault(&s.PollInterval, time.Second)
	setDefault(&s.TargetDrain, 10*time.Second)
	setDefault(&s.LagPerReplica, 100)
	setDefault(&s.ActivationLag, 1)
	setDefault(&s.StabilizationWindow, 30*time.Second)
	setDefault(&s.CooldownToZero, 60*time.Second)
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
	s := t.Scaling
	if s.PollInterval < 100*time.Millisecond {
		bad(".scaling.poll_interval", "%s must be at least 100ms", s.PollInterval)
	}
	if s.TargetDrain <= 0 {
		bad(".scaling.target_drain", "%s must be positive", s.TargetDrain)
	}
	if s.LagPerReplica < 1 {
		bad(".scaling.lag_per_replica", "%d must be at least 1", s.LagPerReplica)
	}
	if s.ActivationLag < 1 {
		bad(".scaling.activation_lag", "%d must be at least 1", s.ActivationLag)
	}
	if s.StabilizationWindow < 0 || s.CooldownToZero < 0 {
		bad(".scaling", "stabilization_window and cooldown_to_zero must not be negative")
	}
	e := t.Inference.Emulate
	if e.ServiceTimePerSample < 0 || e.MaxConcurrency < 0 {
		bad(".inference.emulate", "service_time_per_sample and max_concurrency must not be negative")
	}
	return errs
}
