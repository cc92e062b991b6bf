package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

func runInference(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inference", "inference -f FILE --tier NAME [--listen ADDR]", stderr)
	pf := addPipelineFlags(fs)
	tier := fs.String("tier", "", "tier to serve (required)")
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve on; port 0 picks a free one")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (default: the tier's inference.intra_op_threads)")
	funnelURL := fs.String("funnel", "", "base URL of the funnel's delivery zone (http://host:port) to deliver exits and forwards to; empty answers decisions only")
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
	site, err := p.OnTierSite(t.Name)
	if err != nil {
		return err
	}
	if *threads == 0 {
		*threads = t.Inference.IntraOpThreads
	}
	if err := applyServiceTokens(p, *tokenFile); err != nil {
		return err
	}
	tokens, err := auth.LoadTokens(p.ServiceTokenPath())
	if err != nil {
		return err
	}
	if *funnelURL != "" {
		// A replica that delivers onward is part of the delivery zone.
		if err := site.CheckExposure("delivery", "inference listener", *listen); err != nil {
			return err
		}
	}
	log = log.With("component", "inference", "tier", t.Name)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var deliverer inference.Deliverer
	if *funnelURL != "" {
		next := ""
		if !p.Last(i) {
			next = p.Tiers[i+1].Name
		}
		deliverer = inference.NewFunnelDeliverer(strings.TrimSuffix(*funnelURL, "/"), t.Name, next, p.Encoding(), site.Kafka.ProduceTimeout+2*time.Second, tokens)
	}
	f, err := inference.New(inference.Config{
		Pipeline:  p,
		Tier:      t.Name,
		Deliverer: deliverer,
		Metrics:   inference.NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.Name}, reg)),
		Logger:    log,
	})
	if err != nil {
		return err
	}
	ln, err := socket.Listen(*listen)
	if err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	fmt.Fprintf(stdout, "tier %s: serving on http://%s%s (readyz, healthz, metrics)\n", t.Name, ln.Addr(), httpapi.PathInfer)
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
