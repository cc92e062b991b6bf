// Package cli owns ddnn's command line: it parses each subcommand's flags,
// loads the pipeline YAML and applies what the flags change in it (tier
// placement with --tiers-on, a site's brokers with --brokers, the service
// token file), and builds and runs the component the subcommand names,
// serving a role's admin routes (metrics, health, readiness) beside it.
// The components themselves, and their decisions, live in their packages.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/suggest"
)

const usage = `ddnn runs distributed deep neural networks over edge, fog and cloud tiers.

Usage:
  ddnn <command> [flags]

Commands:
  up             run the pipeline on this machine: every site, or one with --site (embedded brokers by default)
  results        read results from the results topic (on the results site's Kafka)
  bench          simulated devices over HTTP, CoAP or Kafka; latency per tier, reports, plots
  monolith       the baseline: every tier in one process, fed from Kafka (bench --compare)
  models check   load every tier's model and verify the chain
  models eval    run the labeled test set through the chain (--json; --sweep: accuracy against exits per threshold)
  broker         run the embedded Kafka-protocol broker alone (on disk; --ephemeral: in memory)
  broker repair  drop what is damaged in a stopped embedded broker's data directory, saying what is lost
  funnel         run the funnel alone: device ingest and internal deliveries
  connector      run one tier's kafka-to-http connector alone
  uplink         ship one site's queue for another site to that site's funnel
  inference      serve one tier's inference function over HTTP
  scaler         run the replica manager alone: replicas per tier, scaled by lag
  devices        add, list or revoke device credentials (auth.devices_file); psk, psk-key: DTLS keys
  token          print a new service token (auth.service_token_file)
  certs          make a development CA and certificates (HTTPS, client certificates)
  version        print version information

Run 'ddnn <command> -h' for a command's flags.
`

// errUsage marks errors caused by bad arguments (exit code 2).
var errUsage = errors.New("usage")

// Run executes the command in args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		if msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": "); msg != errUsage.Error() {
			fmt.Fprintln(stderr, "ddnn:", msg)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "ddnn:", err)
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			// ddnn help up: the command's own help.
			return dispatch(ctx, append(args[1:], "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		return runVersion(args[1:], stdout, stderr)
	case "models":
		return runModels(ctx, args[1:], stdout, stderr)
	case "inference":
		return runInference(ctx, args[1:], stdout, stderr)
	case "broker":
		return runBroker(ctx, args[1:], stdout, stderr)
	case "funnel":
		return runFunnel(ctx, args[1:], stdout, stderr)
	case "connector":
		return runConnector(ctx, args[1:], stdout, stderr)
	case "uplink":
		return runUplink(ctx, args[1:], stdout, stderr)
	case "results":
		return runResults(ctx, args[1:], stdout, stderr)
	case "up":
		return runUp(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "scaler":
		return runScaler(ctx, args[1:], stdout, stderr)
	case "monolith":
		return runMonolith(ctx, args[1:], stdout, stderr)
	case "devices":
		return runDevices(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "certs":
		return runCerts(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		if near := suggest.Nearest(args[0], commands); near != "" {
			return fmt.Errorf("%w: unknown command %q; did you mean %q?", errUsage, args[0], near)
		}
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
}

// commands are the names dispatch knows, for suggestions.
var commands = []string{"up", "results", "bench", "monolith", "models", "broker", "funnel", "connector",
	"uplink", "inference", "scaler", "devices", "token", "certs", "version", "help"}

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and rejects positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// logFlags adds --log-level and returns a constructor for the logger.
func logFlags(fs *flag.FlagSet, stderr io.Writer) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, *level)
		}
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), nil
	}
}

// defaultPipelineFile is -f's default, relative to the current directory
// (the root of a ddnn checkout).
const defaultPipelineFile = "deploy/pipeline.yaml"

// loadPipeline reads the pipeline YAML that -f names. Every command that
// takes -f loads it here, so that a missing default file (ddnn run outside
// a checkout, -f forgotten) says how to name another.
func loadPipeline(file string) (*pipeline.Pipeline, error) {
	p, err := pipeline.Load(file)
	if err != nil && file == defaultPipelineFile && errors.Is(err, fs.ErrNotExist) {
		dir, _ := os.Getwd()
		return nil, fmt.Errorf("%w: no pipeline file %s in %s (the default of -f): pass -f FILE to name the pipeline YAML", errUsage, file, dir)
	}
	return p, err
}
