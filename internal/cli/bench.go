package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/bench"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/models"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench -f FILE [--count N] [--rate R] [--senders S] [--json]", stderr)
	file := fileFlag(fs)
	count := fs.Int("count", 2000, "messages to send")
	rate := fs.Float64("rate", 0, "total send rate in messages/s (open loop); 0 sends as fast as the senders can (closed loop)")
	senders := fs.Int("senders", 16, "concurrent HTTP senders")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for results after the last send")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *count < 1 || *senders < 1 || *rate < 0 {
		return fmt.Errorf("%w: --count and --senders must be at least 1, --rate not negative", errUsage)
	}
	p, err := pipeline.Load(*file)
	if err != nil {
		return err
	}
	if p.Eval.Images == "" {
		return fmt.Errorf("%w: bench sends the pipeline's eval.images; set eval.images and eval.labels in %s", errUsage, *file)
	}
	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		return err
	}
	rep, err := bench.Run(ctx, bench.Config{
		Pipeline: p, Images: ds.Samples, Labels: ds.Labels,
		Count: *count, Rate: *rate, Senders: *senders, Timeout: *timeout,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.Print(stdout)
	return nil
}
