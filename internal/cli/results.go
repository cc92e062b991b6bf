package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func runResults(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("results", "results -f FILE [--follow] [--count N] [--timeout D] [--json]", stderr)
	file := fileFlag(fs)
	follow := fs.Bool("follow", false, "keep reading new results until interrupted")
	count := fs.Int("count", 0, "stop after N results (0: every result there is now, or forever with --follow)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up waiting after this long (without --follow)")
	asJSON := fs.Bool("json", false, "print one JSON result per line")
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated (default: the results site's kafka section)")
	tiersOn := tiersOnFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := pipeline.Load(*file)
	if err != nil {
		return err
	}
	if err := placeTiers(p, *tiersOn); err != nil {
		return err
	}
	// <name>.results lives on the results site's Kafka.
	k := p.ResultsSite().Kafka
	if *brokers != "" {
		k.Brokers = splitList(*brokers)
	}
	cl, err := kafka.NewClient(&k, "results", nil, nil,
		kgo.ConsumeTopics(p.ResultsTopic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return fmt.Errorf("results: kafka client: %w", err)
	}
	defer cl.Close()
	if !*follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	// Without --count or --follow: read up to what the topic holds now.
	var until map[int32]int64
	if *count == 0 && !*follow {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, p.ResultsTopic())
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("results: end offsets: %w", err)
		}
		until = map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				until[o.Partition] = o.Offset
			}
		})
	}
	var tw *tabwriter.Writer
	if !*asJSON {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDEVICE\tTIER\tLABEL\tCONFIDENCE\tLATENCY")
		defer tw.Flush()
	}
	n := 0
	for (*count == 0 || n < *count) && (until == nil || len(until) > 0) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("results: %w", err)
		}
		for _, rec := range fs.Records() {
			if until != nil && rec.Offset+1 >= until[rec.Partition] {
				delete(until, rec.Partition)
			}
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				fmt.Fprintf(stderr, "skipping offset %d: %v\n", rec.Offset, err)
				continue
			}
			n++
			if *asJSON {
				b, err := wire.AppendResult(nil, &r)
				if err != nil {
					fmt.Fprintf(stderr, "skipping offset %d: %v\n", rec.Offset, err)
					continue
				}
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
