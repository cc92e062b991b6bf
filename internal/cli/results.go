package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/results"
)

const resultsSynopsis = "results -f FILE [--follow] [--from-beginning] [--last N] [--id ID] [--count N] [--timeout D] [--json] [--brokers H:P,...] [--tiers-on SITE]"

func runResults(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("results", resultsSynopsis, stderr)
	file := fileFlag(fs)
	follow := fs.Bool("follow", false, "keep printing new results until interrupted, starting at the end of the topic")
	fromBeginning := fs.Bool("from-beginning", false, "with --follow, print every result there is first")
	last := fs.Int("last", 0, "print the N newest results (over every partition, oldest first); with --follow, then new ones")
	id := fs.String("id", "", "print only the results of this message id (with --count 1: stop once found)")
	count := fs.Int("count", 0, "stop after N results (0: every result there is now, or forever with --follow)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up waiting after this long (without --follow)")
	asJSON := fs.Bool("json", false, "print one JSON result per line")
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated (default: the results site's kafka section)")
	tiersOn := tiersOnFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := loadPipeline(*file)
	if err != nil {
		return err
	}
	if err := placeTiers(p, *tiersOn); err != nil {
		return err
	}
	// <name>.results lives on the results site's Kafka.
	site := p.ResultsSite()
	k, from := site.Kafka, fmt.Sprintf("the kafka section of site %q in %s", site.Name, *file)
	if len(p.SiteList) <= 1 {
		from = "the kafka section of " + *file
	}
	if *brokers != "" {
		k.Brokers, from = splitList(*brokers), "--brokers"
	}
	cfg := results.Config{
		Kafka: k, Topic: p.ResultsTopic(),
		Follow: *follow, FromBeginning: *fromBeginning, Last: *last, ID: *id, Count: *count,
		Timeout: *timeout, JSON: *asJSON, Out: stdout, Warn: stderr,
	}
	if err := cfg.Validate(); err != nil {
		fs.Usage()
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	err = results.Read(ctx, cfg)
	if errors.Is(err, results.ErrNoBroker) {
		return fmt.Errorf("results: %w (brokers from %s; is the pipeline running? --brokers names others)", err, from)
	}
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
