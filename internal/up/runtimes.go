package up

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/docker"
	"github.com/ddnn-continuum/ddnn/internal/runtime/process"
)

// RuntimeOptions is what NewRuntime needs besides the tier.
type RuntimeOptions struct {
	// File is the pipeline YAML replicas load.
	File string
	// FunnelURL is where replicas deliver.
	FunnelURL string
	// ORTLib is passed to process replicas.
	ORTLib string
	// Out receives process replicas' output.
	Out    io.Writer
	Logger *slog.Logger
}

// NewRuntime makes the runtime a tier's YAML asks for.
func NewRuntime(ctx context.Context, p *pipeline.Pipeline, t *pipeline.Tier, o RuntimeOptions) (runtime.Runtime, error) {
	file, err := filepath.Abs(o.File)
	if err != nil {
		return nil, err
	}
	spec := runtime.Spec{
		Pipeline: p.Name, Tier: t.Name, File: file, FunnelURL: o.FunnelURL, ORTLib: o.ORTLib,
		Args: []string{"--log-level", "info"},
	}
	switch t.Replicas.Runtime {
	case pipeline.RuntimeProcess:
		return process.New(spec, process.Config{Out: o.Out, Logger: o.Logger}), nil
	case pipeline.RuntimeDocker:
		spec.ORTLib = "" // the image has its own
		mounts := []string{file}
		for i := range p.Tiers {
			m, err := filepath.Abs(p.ModelPath(&p.Tiers[i]))
			if err != nil {
				return nil, err
			}
			mounts = append(mounts, m)
		}
		rt, err := docker.New(ctx, spec, docker.Config{
			CPUs:        t.Replicas.Resources.CPUs,
			MemoryBytes: t.Replicas.Resources.MemoryMB << 20,
			Mounts:      mounts,
			Logger:      o.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("tier %q: %w", t.Name, err)
		}
		return rt, nil
	default:
		return nil, fmt.Errorf("tier %q: replicas.runtime %s is not available in ddnn up (process and docker are; kubernetes runs under `ddnn scaler`)", t.Name, t.Replicas.Runtime)
	}
}

// childrenOf returns a runtime's child processes, if it has any.
func childrenOf(rt runtime.Runtime) []*proc.Child {
	if c, ok := rt.(interface{ Children() []*proc.Child }); ok {
		return c.Children()
	}
	return nil
}
