package results

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
)

// Synopsis is ddnn results' usage line.
const Synopsis = "results -f FILE [--follow] [--from-beginning] [--last N] [--id ID] [--count N] [--timeout D] [--json] [--brokers H:P,...] [--tiers-on SITE]"

// Command is ddnn results with its flags.
type Command struct {
	File, ID, Brokers, TiersOn  string
	Follow, FromBeginning, JSON bool
	Last, Count                 int
	Timeout                     time.Duration
}

// Flags binds o to ddnn results' flags.
func (o *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &o.File)
	fs.BoolVar(&o.Follow, "follow", false, "keep printing new results until interrupted, starting at the end of the topic")
	fs.BoolVar(&o.FromBeginning, "from-beginning", false, "with --follow, print every result there is first")
	fs.IntVar(&o.Last, "last", 0, "print the N newest results (over every partition, oldest first); with --follow, then new ones")
	fs.StringVar(&o.ID, "id", "", "print only the results of this message id (with --count 1: stop once found)")
	fs.IntVar(&o.Count, "count", 0, "stop after N results (0: every result there is now, or forever with --follow)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "give up waiting after this long (without --follow)")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON result per line")
	fs.StringVar(&o.Brokers, "brokers", "", "Kafka brokers, comma-separated (default: the results site's kafka section)")
	command.TiersOnFlag(fs, &o.TiersOn)
}

// Run reads the results o asks for from the results site's Kafka and
// prints them to stdout; warnings go to stderr.
func (o *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	p, err := command.LoadPipeline(o.File)
	if err != nil {
		return err
	}
	if err := command.PlaceTiers(p, o.TiersOn); err != nil {
		return err
	}
	// <name>.results lives on the results site's Kafka.
	site := p.ResultsSite()
	k, from := site.Kafka, fmt.Sprintf("the kafka section of site %q in %s", site.Name, o.File)
	if len(p.SiteList) <= 1 {
		from = "the kafka section of " + o.File
	}
	if o.Brokers != "" {
		k.Brokers, from = command.SplitList(o.Brokers), "--brokers"
	}
	cfg := Config{
		Kafka: k, Topic: p.ResultsTopic(),
		Follow: o.Follow, FromBeginning: o.FromBeginning, Last: o.Last, ID: o.ID, Count: o.Count,
		Timeout: o.Timeout, JSON: o.JSON, Out: stdout, Warn: stderr,
	}
	if err := cfg.Validate(); err != nil {
		return command.Usagef("%v", err)
	}
	err = Read(ctx, cfg)
	if errors.Is(err, ErrNoBroker) {
		return fmt.Errorf("results: %w (brokers from %s; is the pipeline running? --brokers names others)", err, from)
	}
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
