// Package cli is ddnn's command line: it dispatches each subcommand to the
// package that owns it, whose Command parses the subcommand's flags
// (package command has what they share) and runs it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/bench"
	"github.com/ddnn-continuum/ddnn/internal/certs"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/dlq"
	"github.com/ddnn-continuum/ddnn/internal/inspect"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/results"
	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/suggest"
	"github.com/ddnn-continuum/ddnn/internal/up"
	"github.com/ddnn-continuum/ddnn/models"
	"github.com/ddnn-continuum/ddnn/scaler"
)

const usage = `ddnn runs distributed deep neural networks over edge, fog and cloud tiers.

Usage:
  ddnn <command> [flags]

Commands:
  up             run the pipeline on this machine: every site, or one with --site (embedded brokers by default)
  apply          plan a changed pipeline YAML against the running one (what changes live, which tiers roll out, what is refused) and apply it
  results        read results from the results topic (on the results site's Kafka)
  status         one screen per site and tier: replicas, lag, rates, exits, service time, dead letters, links (--watch, --json)
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
  inspect        one message's path: ingest, each tier's hop, its result, or where it waits or was dead-lettered
  dlq list       a tier's dead letters by kind of reason, with counts (show: each, with its source and reason; replay)
  devices        add, list or revoke device credentials (auth.devices_file); psk, psk-key: DTLS keys
  token          print a new service token (auth.service_token_file)
  certs          make a development CA and certificates (HTTPS, client certificates)
  version        print version information

Run 'ddnn <command> -h' for a command's flags.
`

// Run executes the command in args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, command.ErrUsage):
		if msg := strings.TrimPrefix(err.Error(), command.ErrUsage.Error()+": "); msg != command.ErrUsage.Error() {
			fmt.Fprintln(stderr, "ddnn:", msg)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "ddnn:", err)
		return 1
	}
}

// runners are the commands their options run, with their synopses.
var runners = map[string]func() (command.Runner, string){
	"up":        func() (command.Runner, string) { return &up.Command{}, up.Synopsis },
	"apply":     func() (command.Runner, string) { return &apply.Command{}, apply.Synopsis },
	"results":   func() (command.Runner, string) { return &results.Command{}, results.Synopsis },
	"status":    func() (command.Runner, string) { return &status.Command{}, status.Synopsis },
	"bench":     func() (command.Runner, string) { return &bench.Command{}, bench.Synopsis },
	"monolith":  func() (command.Runner, string) { return &monolith.Command{}, monolith.Synopsis },
	"broker":    func() (command.Runner, string) { return &kafka.BrokerCommand{}, kafka.BrokerSynopsis },
	"funnel":    func() (command.Runner, string) { return &funnel.Command{}, funnel.Synopsis },
	"connector": func() (command.Runner, string) { return &connector.Command{}, connector.Synopsis },
	"uplink":    func() (command.Runner, string) { return &connector.UplinkCommand{}, connector.UplinkSynopsis },
	"inference": func() (command.Runner, string) { return &inference.Command{}, inference.Synopsis },
	"scaler":    func() (command.Runner, string) { return &scaler.Command{}, scaler.Synopsis },
	"certs":     func() (command.Runner, string) { return &certs.Command{}, certs.Synopsis },
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return command.ErrUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && name == "help" {
			// ddnn help up: the command's own help.
			return dispatch(ctx, append(args[1:], "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		return runVersion(args[1:], stdout, stderr)
	case "models":
		return runModels(ctx, args[1:], stdout, stderr)
	case "devices":
		return auth.DevicesCommand(args[1:], stdout, stderr)
	case "dlq":
		return runDLQ(ctx, args[1:], stdout, stderr)
	case "inspect":
		return inspect.Main(ctx, args[1:], stdout, stderr)
	case "token":
		return auth.TokenCommand(args[1:], stdout, stderr)
	case "broker":
		if len(args) > 1 && args[1] == "repair" {
			return command.Main(ctx, &kafka.RepairCommand{}, "broker repair", kafka.RepairSynopsis, args[2:], stdout, stderr)
		}
	}
	if r, ok := runners[name]; ok {
		cmd, synopsis := r()
		return command.Main(ctx, cmd, name, synopsis, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	if near := suggest.Nearest(name, commands); near != "" {
		return command.Usagef("unknown command %q; did you mean %q?", name, near)
	}
	return command.Usagef("unknown command %q", name)
}

// commands are the names dispatch knows, for suggestions.
var commands = []string{"up", "apply", "results", "status", "inspect", "bench", "monolith", "models", "broker", "funnel", "connector",
	"uplink", "inference", "scaler", "dlq", "devices", "token", "certs", "version", "help"}

// runModels runs ddnn models check or eval.
func runModels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, models.Usage)
		return command.ErrUsage
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

// runDLQ runs ddnn dlq list, show or replay.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlq.Usage)
		return command.ErrUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, dlq.Usage)
		return nil
	case "list", "show", "replay":
		cmd, synopsis := &dlq.Command{}, dlq.ListSynopsis
		switch args[0] {
		case "show":
			cmd.Show, synopsis = true, dlq.ShowSynopsis
		case "replay":
			cmd.Replay, synopsis = true, dlq.ReplaySynopsis
		}
		return command.Main(ctx, cmd, "dlq "+args[0], synopsis, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, dlq.Usage)
	if near := suggest.Nearest(args[0], []string{"list", "show", "replay"}); near != "" {
		return command.Usagef("unknown dlq command %q; did you mean %q?", args[0], near)
	}
	return command.Usagef("unknown dlq command %q", args[0])
}
