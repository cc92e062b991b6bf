package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

func runInference(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inference", "inference -f FILE --tier NAME [--listen ADDR]", stderr)
	pf := addPipelineFlags(fs)
	tier := fs.String("tier", "", "tier to serve (required)")
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve on; port 0 picks a free one")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (default: the tier's inference.intra_op_threads)")
	tokenFile := serviceTokenFlag(fs)
	newLogger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tier == "" {
		fs.Usage()
		return fmt.Errorf("%w: --tier is required", errUsage)
	}
	log, err := newLogger()
	if err != nil {
		return err
	}
	p, err := pf.load()
	if err != nil {
		return err
	}
	t, i, err := p.Tier(*tier)
	if err != nil {
		return err
	}
	if *threads == 0 {
		*threads = t.Inference.IntraOpThreads
	}
	if err := applyServiceTokens(p, *tokenFile); err != nil {
		return err
	}
	tokens, err := serviceTokens(p)
	if err != nil {
		return err
	}
	log = log.With("component", "inference", "tier", t.Name)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f, err := inference.New(inference.Config{
		Pipeline: p,
		Tier:     t.Name,
		Metrics:  inference.NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.Name}, reg)),
		Logger:   log,
	})
	if err != nil {
		return err
	}
	ln, err := socket.Listen(*listen)
	if err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	fmt.Fprintf(stdout, "tier %s: serving on http://%s%s (readyz, healthz, metrics)\n", t.Name, ln.Addr(), inference.InferPath)
	return inference.Serve(ctx, inference.ServerConfig{
		Listener: ln,
		Function: f,
		Load: func() (*inference.Session, error) {
			return inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: *threads})
		},
		Gatherer: reg,
		Service:  tokens,
		Logger:   log,
	})
}
