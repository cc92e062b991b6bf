package cli

import (
	"context"
	"io"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/up"
	"github.com/ddnn-continuum/ddnn/models"
)

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("up", "up -f FILE [--site NAME] [--ephemeral]", stderr)
	pf := addPipelineFlags(fs)
	site := fs.String("site", "", "run only this site of a pipeline with sites: (default: every site, each with its own broker, funnel and admin)")
	ephemeral := fs.Bool("ephemeral", false, "keep the embedded broker in memory: its topics are lost when ddnn up stops (default: kept in kafka.embedded_data_dir)")
	newLogger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger()
	if err != nil {
		return err
	}
	p, err := pipeline.Load(*pf.file)
	if err != nil {
		return err
	}
	// Check the chain before starting anything: a broken chain would only
	// show up as replicas failing to start.
	lib, err := onnx.Init(*pf.ortLib)
	if err != nil {
		return err
	}
	if _, err := models.Check(p); err != nil {
		return err
	}
	return up.Run(ctx, up.Config{
		Pipeline:  p,
		File:      *pf.file,
		ORTLib:    lib,
		Out:       stderr,
		Announce:  stdout,
		Logger:    log,
		Ephemeral: *ephemeral,
		Site:      *site,
	})
}
