package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func runResults(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("results", "results -f FILE [--follow] [--count N] [--timeout D] [--json]", stderr)
	file := loadPipeline(fs)
	follow := fs.Bool("follow", false, "keep reading new results until interrupted")
	count := fs.Int("count", 0, "stop after N results (0: read until --timeout, or forever with --follow)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up waiting after this long (without --follow)")
	asJSON := fs.Bool("json", false, "print one JSON result per line")
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated (default: the pipeline's kafka section)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := pipeline.Load(*file)
	if err != nil {
		return err
	}
	overrideBrokers(p, *brokers)
	cl, err := kgo.NewClient(append(kafka.ClientOptions(&p.Kafka, "results", nil),
		kgo.ConsumeTopics(p.ResultsTopic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return fmt.Errorf("results: kafka client: %w", err)
	}
	defer cl.Close()
	if !*follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var tw *tabwriter.Writer
	if !*asJSON {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDEVICE\tTIER\tLABEL\tCONFIDENCE\tLATENCY")
		defer tw.Flush()
	}
	n := 0
	for *count == 0 || n < *count {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("results: %w", err)
		}
		for _, rec := range fs.Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				fmt.Fprintf(stderr, "skipping offset %d: %v\n", rec.Offset, err)
				continue
			}
			n++
			if *asJSON {
				b, _ := json.Marshal(r)
				fmt.Fprintf(stdout, "%s\n", b)
			} else {
				lat := "-"
				if !r.SentAt.IsZero() {
					lat = r.ExitedAt.Sub(r.SentAt).Round(10 * time.Microsecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%s\n", r.ID, r.Device, r.Tier, r.Label, r.Confidence, lat)
				if *follow {
					tw.Flush()
				}
			}
			if *count > 0 && n >= *count {
				break
			}
		}
	}
	if *count > 0 && n < *count {
		return fmt.Errorf("results: %d of %d results within %s", n, *count, *timeout)
	}
	return nil
}
