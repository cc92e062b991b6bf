package command

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
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

// OnSIGHUP calls Reload at each SIGHUP until ctx ends. SIGHUP no longer
// stops the process once it is called.
func (r Reloader) OnSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
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

// Change is one setting that differs between two readings of the file.
type Change struct {
	// Path is the setting's YAML path below the compared section, e.g.
	// "exit.threshold".
	Path     string
	Old, New any
}

// String is "path: old -> new".
func (c Change) String() string {
	return fmt.Sprintf("%s: %v -> %v", c.Path, show(c.Old), show(c.New))
}

// show dereferences pointers so that a change logs values, not addresses.
func show(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "unset"
		}
		return rv.Elem().Interface()
	}
	return v
}

// Changes lists the settings that differ between old and new, two values
// of one YAML-tagged struct type, by YAML path under prefix (joined with
// "."); structs are compared field by field, anything else as a whole.
func Changes(prefix string, old, new any) []Change {
	var out []Change
	changes(prefix, reflect.ValueOf(old), reflect.ValueOf(new), &out)
	return out
}

func changes(path string, a, b reflect.Value, out *[]Change) {
	if a.Kind() == reflect.Struct {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if opts == "inline" {
				changes(path, a.Field(i), b.Field(i), out)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if path != "" {
				name = path + "." + name
			}
			changes(name, a.Field(i), b.Field(i), out)
		}
		return
	}
	if a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil() {
		if !reflect.DeepEqual(a.Elem().Interface(), b.Elem().Interface()) {
			*out = append(*out, Change{Path: path, Old: a.Interface(), New: b.Interface()})
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, Change{Path: path, Old: a.Interface(), New: b.Interface()})
	}
}

// LogChanges logs what a reload applied and what it ignored because it
// needs a rollout or a restart, one line each, at info.
func LogChanges(log *slog.Logger, applied, ignored []Change, why string) {
	for _, c := range applied {
		log.Info("reload: applied", "setting", c.Path, "old", show(c.Old), "new", show(c.New))
	}
	for _, c := range ignored {
		log.Warn("reload: ignored, "+why, "setting", c.Path, "old", show(c.Old), "new", show(c.New))
	}
	if len(applied) == 0 && len(ignored) == 0 {
		log.Info("reload: no change")
	}
}
