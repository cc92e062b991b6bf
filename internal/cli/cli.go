// Package cli is ddnn's command line: it dispatches each subcommand to the
// package that owns it, which parses the subcommand's flags (package
// command has what they share) and runs it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/bench"
	"github.com/ddnn-continuum/ddnn/internal/certs"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/results"
	"github.com/ddnn-continuum/ddnn/internal/suggest"
	"github.com/ddnn-continuum/ddnn/models"
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
var errUsage = command.ErrUsage

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
		return command.Main(ctx, &results.Command{}, "results", results.Synopsis, args[1:], stdout, stderr)
	case "up":
		return runUp(ctx, args[1:], stdout, stderr)
	case "bench":
		return command.Main(ctx, &bench.Command{}, "bench", bench.Synopsis, args[1:], stdout, stderr)
	case "scaler":
		return runScaler(ctx, args[1:], stdout, stderr)
	case "monolith":
		return runMonolith(ctx, args[1:], stdout, stderr)
	case "devices":
		return auth.DevicesCommand(args[1:], stdout, stderr)
	case "token":
		return auth.TokenCommand(args[1:], stdout, stderr)
	case "certs":
		return command.Main(ctx, &certs.Command{}, "certs", certs.Synopsis, args[1:], stdout, stderr)
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

// runModels runs ddnn models check or eval.
func runModels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, models.Usage)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, models.Usage)
		return nil
	}
	cmd, synopsis, err := models.Subcommand(args[0], stderr)
	if err != nil {
		return err
	}
	return command.Main(ctx, cmd, "models "+args[0], synopsis, args[1:], stdout, stderr)
}

// Helpers of the commands not yet moved to their packages.
var (
	newFlags     = command.NewFlagSet
	parse        = command.Parse
	loadPipeline = command.LoadPipeline
)

const defaultPipelineFile = command.DefaultPipelineFile

// logFlags adds --log-level and returns a constructor for the logger.
func logFlags(fs *flag.FlagSet, stderr io.Writer) func() (*slog.Logger, error) {
	var l command.Log
	l.Flags(fs)
	return func() (*slog.Logger, error) { return l.Logger(stderr, "") }
}

// pipelineFlags adds -f and --ort-lib.
type pipelineFlags struct {
	file   *string
	ortLib *string
}

func addPipelineFlags(fs interface {
	String(name, value, usage string) *string
}) pipelineFlags {
	return pipelineFlags{
		file:   fileFlag(fs),
		ortLib: fs.String("ort-lib", "", "ONNX Runtime shared library (default: $"+onnx.EnvVar+" or the project's install path)"),
	}
}

// load reads the pipeline and initializes ONNX Runtime.
func (pf pipelineFlags) load() (*pipeline.Pipeline, error) {
	p, err := loadPipeline(*pf.file)
	if err != nil {
		return nil, err
	}
	if _, err := onnx.Init(*pf.ortLib); err != nil {
		return nil, err
	}
	return p, nil
}
