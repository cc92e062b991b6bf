package command

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Reloader re-reads a role's pipeline file and applies what the role can
// change live. Load reads the file as the role read it at start; Apply
// takes the pipeline read and returns an error, logged, when nothing of
// it was applied.
type Reloader struct {
	Load  func() (*pipeline.Pipeline, error)
	Apply func(*pipeline.Pipeline) error
	// Log, which should name the role; nil discards.
	Log *slog.Logger
}

// Reload reads the file once and applies it. A file that fails to load
// or apply is logged with the error and changes nothing.
func (r Reloader) Reload() error {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := r.Load()
	if err == nil {
		err = r.Apply(p)
	}
	if err != nil {
		log.Error("reload: nothing changed", "err", err)
		return err
	}
	return nil
}

// OnSIGHUP calls Reload at each SIGHUP until ctx ends or stop is called;
// stop waits for a reload under way to end. SIGHUP no longer stops the
// process from the call until stop.
func (r Reloader) OnSIGHUP(ctx context.Context) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if r.Log != nil {
					r.Log.Info("reload: SIGHUP received, re-reading the pipeline file")
				}
				_ = r.Reload() // logged
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// LoadPipeline reads the pipeline as Load does, without building a logger: what
// a role reads again on reload.
func (r *Role) LoadPipeline() (*pipeline.Pipeline, error) {
	p, err := LoadPipeline(r.File)
	if err != nil {
		return nil, err
	}
	if err := PlaceTiers(p, r.TiersOn); err != nil {
		return nil, err
	}
	if r.ServiceTokenFile != "" {
		if err := useServiceTokenFile(p, r.ServiceTokenFile); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// LogChanges logs what a reload applied (pipeline.Diff of the settings
// the role read before and now) and what it ignored because it needs a
// rollout or a restart, one line each.
func LogChanges(log *slog.Logger, applied, ignored []pipeline.Difference, why string) {
	for _, c := range applied {
		log.Info("reload: applied", "setting", c.Path, "old", c.Old, "new", c.New)
	}
	for _, c := range ignored {
		log.Warn("reload: ignored, "+why, "setting", c.Path, "old", c.Old, "new", c.New)
	}
	if len(applied) == 0 && len(ignored) == 0 {
		log.Info("reload: no change")
	}
}
