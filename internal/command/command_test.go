package command

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"testing"
	"time"
)

type opts struct {
	File    string
	Tier    string
	Drain   time.Duration
	Workers int
	Compare bool
	Log     Log
}

func (o *opts) Flags(fs *flag.FlagSet) {
	FileFlag(fs, &o.File)
	fs.StringVar(&o.Tier, "tier", "", "tier")
	fs.DurationVar(&o.Drain, "drain-timeout", 8*time.Second, "drain")
	fs.IntVar(&o.Workers, "workers", 2, "workers")
	fs.BoolVar(&o.Compare, "compare", false, "compare")
	o.Log.Flags(fs)
}

func parseOpts(t *testing.T, args []string) opts {
	t.Helper()
	var o opts
	fs := NewFlagSet("x", "x", io.Discard)
	o.Flags(fs)
	if err := Parse(fs, args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return o
}

// TestArgsRoundTrip: what Args gives parses back to the options it was
// made from, and names only what differs from the defaults.
func TestArgsRoundTrip(t *testing.T) {
	defaults := parseOpts(t, nil)
	if args := Args(defaults); len(args) != 0 {
		t.Errorf("defaults give %q, want no argument", args)
	}
	for _, o := range []opts{
		{File: "a b.yaml", Tier: "fog", Drain: 3 * time.Second, Workers: 2, Compare: true, Log: Log{Level: "debug"}},
		{File: DefaultPipelineFile, Tier: "-x=y", Drain: time.Millisecond, Workers: 1, Log: Log{Level: "info"}},
	} {
		args := Args(o)
		if got := parseOpts(t, args); !reflect.DeepEqual(got, o) {
			t.Errorf("Args(%+v) = %q, parses to %+v", o, args, got)
		}
	}
	if got, want := Args(opts{File: DefaultPipelineFile, Tier: "edge", Drain: 8 * time.Second, Workers: 2, Log: Log{Level: "warn"}}),
		[]string{"--log-level=warn", "--tier=edge"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
	// Fields left zero take the defaults of the command that parses them.
	args := Args(opts{Tier: "cloud"})
	if got, want := parseOpts(t, args), (opts{File: DefaultPipelineFile, Tier: "cloud", Drain: 8 * time.Second, Workers: 2, Log: Log{Level: "info"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Args(only a tier) = %q, parses to %+v, want %+v", args, got, want)
	}
}

func TestParseRejectsArguments(t *testing.T) {
	var o opts
	fs := NewFlagSet("x", "x", io.Discard)
	o.Flags(fs)
	if err := Parse(fs, []string{"--tier", "edge", "extra"}); !errors.Is(err, ErrUsage) {
		t.Errorf("err = %v, want a usage error", err)
	}
	if _, err := (Log{Level: "loud"}).Logger(io.Discard, ""); !errors.Is(err, ErrUsage) {
		t.Errorf("log level loud: %v, want a usage error", err)
	}
}
