// Package command holds what every ddnn command shares: flag sets that
// report errors instead of exiting, the usage error (exit code 2), -f and
// the pipeline it names, re-read on SIGHUP (Reloader), --log-level, and
// Args, which turns a command's options back into the command line that
// parses to them, so that a parent starting a child builds the child's
// flags from the struct the child parses.
package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// ErrUsage marks errors caused by bad arguments (exit code 2).
var ErrUsage = errors.New("usage")

// Usagef is a usage error with a message.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
}

// NewFlagSet makes a flag set that reports errors instead of exiting;
// synopsis is what follows "Usage: ddnn " in its help.
func NewFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses flags and rejects positional arguments.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// Flagger is a command's options: Flags binds each field to its flag,
// with the field's default.
type Flagger interface {
	Flags(fs *flag.FlagSet)
}

// Runner is a command's options that run the command.
type Runner interface {
	Flagger
	Run(ctx context.Context, stdout, stderr io.Writer) error
}

// Main runs the command r describes: its flags from args, then Run.
func Main(ctx context.Context, r Runner, name, synopsis string, args []string, stdout, stderr io.Writer) error {
	fs := NewFlagSet(name, synopsis, stderr)
	r.Flags(fs)
	if err := Parse(fs, args); err != nil {
		return err
	}
	return r.Run(ctx, stdout, stderr)
}

// Args is the command line for o: every flag whose value is set (not the
// zero value of its type) and differs from its default, as --name=value,
// in flag order. A field left zero takes the flag's default in the
// command that parses it, so a parent names only what it decides and the
// defaults live in one place. P is *T, whose Flags binds T's fields.
func Args[T any, P interface {
	*T
	Flagger
}](o T) []string {
	var c T
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	P(&c).Flags(fs) // binds c's fields, setting them to their defaults
	c = o           // the flags now read o's values
	var args []string
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if v := f.Value.String(); ok && v != f.DefValue && !reflect.ValueOf(g.Get()).IsZero() {
			args = append(args, "--"+f.Name+"="+v)
		}
	})
	return args
}

// Log is --log-level.
type Log struct {
	Level string
}

// Flags adds --log-level.
func (l *Log) Flags(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug, info, warn or error")
}

// Logger is a text logger to w at the level, tagged with component when
// it is not empty.
func (l Log) Logger(w io.Writer, component string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, Usagef("--log-level %q: want debug, info, warn or error", l.Level)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
	if component != "" {
		log = log.With("component", component)
	}
	return log, nil
}

// DefaultPipelineFile is -f's default, relative to the current directory
// (the root of a ddnn checkout).
const DefaultPipelineFile = "deploy/pipeline.yaml"

// FileFlag adds -f, the pipeline YAML.
func FileFlag(fs *flag.FlagSet, file *string) {
	fs.StringVar(file, "f", DefaultPipelineFile, "pipeline YAML file")
}

// LoadPipeline reads the pipeline YAML that -f names. Every command that
// takes -f loads it here, so that a missing default file (ddnn run outside
// a checkout, -f forgotten) says how to name another.
func LoadPipeline(file string) (*pipeline.Pipeline, error) {
	p, err := pipeline.Load(file)
	if err != nil && file == DefaultPipelineFile && errors.Is(err, fs.ErrNotExist) {
		dir, _ := os.Getwd()
		return nil, Usagef("no pipeline file %s in %s (the default of -f): pass -f FILE to name the pipeline YAML", file, dir)
	}
	return p, err
}

// SplitList splits a comma-separated flag value; "" is no element.
func SplitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// IsTerminal says whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// TiersOnFlag adds --tiers-on, which moves every tier to one site.
func TiersOnFlag(fs *flag.FlagSet, site *string) {
	fs.StringVar(site, "tiers-on", "", "run as if every tier were placed on this site, the results staying on their site "+
		"(the cloud-only baseline that ddnn up --monolith runs)")
}

// PlaceTiers applies --tiers-on, when given, to p.
func PlaceTiers(p *pipeline.Pipeline, site string) error {
	if site == "" {
		return nil
	}
	if err := p.PlaceAllOn(site); err != nil {
		return Usagef("--tiers-on: %v", err)
	}
	return nil
}
