// Package replicas makes the replica runtime a tier's YAML asks for
// (replicas.runtime: process, docker or kubernetes) with the arguments its
// replicas need. Both replica managers use it: the supervisor of `ddnn up`
// and `ddnn scaler`. It only builds runtimes; it never scales, lists or
// stops replicas, and knows nothing about the processes around them.
package replicas

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/docker"
	"github.com/ddnn-continuum/ddnn/internal/runtime/kubernetes"
	"github.com/ddnn-continuum/ddnn/internal/runtime/process"
)

// Options is what New needs besides the tier.
type Options struct {
	// File is the pipeline YAML replicas load.
	File string
	// LogLevel is the replicas' --log-level (default info).
	LogLevel string
	// ServiceTokenFile, when set, is what replicas require of the
	// connector.
	ServiceTokenFile string
	// ORTLib is passed to process replicas.
	ORTLib string
	// Canary makes the runtime of the tier's canary: replicas that serve
	// tiers[].canary's model (inference.Command.Canary).
	Canary bool
	// Out receives process replicas' output.
	Out    io.Writer
	Logger *slog.Logger
}

// New makes the runtime tier t of p asks for in replicas.runtime. A docker
// runtime checks the daemon, a kubernetes runtime reads its cluster config
// (in-cluster inside a pod, else the kubeconfig files $KUBECONFIG lists or
// ~/.kube/config).
func New(ctx context.Context, p *pipeline.Pipeline, t *pipeline.Tier, o Options) (runtime.Runtime, error) {
	file, err := filepath.Abs(o.File)
	if err != nil {
		return nil, err
	}
	// The replicas serve the model the file names now, and no other: one
	// started later (a restart, a scale-up) refuses a file changed since,
	// until a rollout.
	model := p.ModelPath(t)
	if o.Canary && t.Canary != nil {
		model = p.Path(t.Canary.Model)
	}
	sha, err := onnx.FileSHA256(model)
	if err != nil {
		return nil, fmt.Errorf("tier %q: %w", t.Name, err)
	}
	spec := runtime.Spec{Pipeline: p.Name, Replica: inference.Command{
		File: file, Tier: t.Name, Canary: o.Canary, ORTLib: o.ORTLib, Log: command.Log{Level: o.LogLevel}, ModelSHA: sha,
	}}
	withToken := func(path string) { spec.Replica.ServiceTokenFile = path }
	switch t.Replicas.Runtime {
	case pipeline.RuntimeProcess:
		withToken(o.ServiceTokenFile)
		return process.New(spec, process.Config{Out: o.Out, Logger: o.Logger}), nil
	case pipeline.RuntimeDocker:
		spec.Replica.ORTLib = "" // the image has its own
		if o.ServiceTokenFile != "" {
			// Containers run as docker.ContainerUser, who cannot read the
			// token file (mode 0600): they get a copy of their own.
			token, err := docker.TokenCopy(o.ServiceTokenFile)
			if err != nil {
				return nil, fmt.Errorf("tier %q: %w", t.Name, err)
			}
			withToken(token)
		}
		rt, err := docker.New(ctx, spec, docker.Config{
			CPUs:        t.Replicas.Resources.CPUs,
			MemoryBytes: t.Replicas.Resources.MemoryMB << 20,
			Mounts:      dockerMounts,
			Logger:      o.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("tier %q: %w", t.Name, err)
		}
		return rt, nil
	case pipeline.RuntimeKubernetes:
		withToken(o.ServiceTokenFile) // a path inside the pods: the Secret's mount
		cfg, err := kubernetes.LoadConfig()
		if err != nil {
			return nil, fmt.Errorf("tier %q: %w", t.Name, err)
		}
		k := t.Replicas.Kubernetes
		cfg.Namespace, cfg.Deployment, cfg.Port, cfg.Spec, cfg.Logger = k.Namespace, k.Deployment, k.Port, spec, o.Logger
		return kubernetes.New(cfg)
	default:
		return nil, fmt.Errorf("tier %q: replicas.runtime %q unknown", t.Name, t.Replicas.Runtime)
	}
}

// dockerMounts are the host files a docker replica of spec reads: the
// pipeline file, the service token's copy and the model of every tier the
// file names as it reads now (a Replace after an apply may name others).
func dockerMounts(spec runtime.Spec) ([]string, error) {
	p, err := command.LoadPipeline(spec.Replica.File)
	if err != nil {
		return nil, err
	}
	mounts := []string{spec.Replica.File}
	if spec.Replica.ServiceTokenFile != "" {
		mounts = append(mounts, spec.Replica.ServiceTokenFile)
	}
	for i := range p.Tiers {
		m, err := filepath.Abs(p.ModelPath(&p.Tiers[i]))
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, m)
	}
	return mounts, nil
}
