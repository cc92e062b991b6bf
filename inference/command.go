package inference

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// Synopsis is ddnn inference's usage line.
const Synopsis = "inference -f FILE --tier NAME [--canary] [--listen ADDR]"

// Command is ddnn inference with its flags: one replica of a tier. The
// runtimes start replicas with Args of it.
type Command struct {
	File, ORTLib, Tier, Listen, ServiceTokenFile string
	// ModelSHA, when set, is the sha256 prefix the tier's model file must
	// have: what its rollout planned (ddnn up sets it), so that a replica
	// started later (a restart, a scale-up) never serves a model its tier
	// was not rolled out to.
	ModelSHA string
	Threads  int
	// Canary serves the tier's candidate model (tiers[].canary) in place
	// of its model: a replica of the tier's canary.
	Canary bool
	command.Log
}

// Flags binds c to ddnn inference's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	onnx.LibFlag(fs, &c.ORTLib)
	fs.StringVar(&c.Tier, "tier", "", "tier to serve (required)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8090", "address to serve on; port 0 picks a free one")
	fs.StringVar(&c.ModelSHA, "model-sha", "", "refuse to serve unless the tier's model file has this sha256 prefix (what its rollout planned; ddnn up sets it)")
	fs.BoolVar(&c.Canary, "canary", false, "serve the tier's canary model (tiers[].canary) instead of its model")
	fs.IntVar(&c.Threads, "threads", 0, "ONNX Runtime intra-op threads (default: the tier's inference.intra_op_threads)")
	fs.StringVar(&c.ServiceTokenFile, "service-token-file", "", "service tokens the pipeline's parts present to each other (default: the pipeline's auth.service_token_file)")
	c.Log.Flags(fs)
}

// Run serves the tier until ctx ends.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.Tier == "" {
		return command.Usagef("--tier is required")
	}
	role := command.Role{File: c.File, ServiceTokenFile: c.ServiceTokenFile, Log: c.Log}
	p, log, err := role.Load(stderr, "inference")
	if err != nil {
		return err
	}
	load := role.LoadPipeline
	if c.Canary {
		// The candidate's replicas see the tier with the canary's model
		// and version label, on start and on every reload.
		load = func() (*pipeline.Pipeline, error) {
			p, err := role.LoadPipeline()
			if err != nil {
				return nil, err
			}
			return p.CanaryView(c.Tier)
		}
		if p, err = p.CanaryView(c.Tier); err != nil {
			return err
		}
		log = log.With("variant", "canary")
	}
	if _, err := onnx.Init(c.ORTLib); err != nil {
		return err
	}
	t, i, err := p.Tier(c.Tier)
	if err != nil {
		return err
	}
	threads := c.Threads
	if threads == 0 {
		threads = t.Inference.IntraOpThreads
	}
	tokens, err := auth.LoadTokens(p.ServiceTokenPath())
	if err != nil {
		return err
	}
	log = log.With("tier", t.Name)

	tr, err := telemetry.Start(p.Telemetry, telemetry.Process{Pipeline: p.Name, Role: "inference", Site: siteName(p, t.Name), Tier: t.Name}, log)
	if err != nil {
		return err
	}
	defer tr.Shutdown()
	reg, wrapped := command.NewRegistry(p)
	f, err := New(Config{
		Pipeline: p,
		Tier:     t.Name,
		Metrics:  NewMetrics(wrapped),
		Logger:   log,
		Tracing:  tr,
	})
	if err != nil {
		return err
	}
	// SIGHUP re-reads the file: the tier's exit policy changes in place.
	defer command.Reloader{Load: load, Apply: f.Reload, Log: log}.OnSIGHUP(ctx)()
	ln, err := socket.Listen(c.Listen)
	if err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	fmt.Fprintf(stdout, "tier %s: serving on http://%s%s (readyz, healthz, metrics)\n", t.Name, ln.Addr(), httpapi.PathInfer)
	return Serve(ctx, ServerConfig{
		Listener: ln,
		Function: f,
		Load: func() (*Session, error) {
			s, err := NewSession(p, i, SessionOptions{IntraOpThreads: threads})
			if err == nil && c.ModelSHA != "" && !strings.HasPrefix(s.Model.SHA, c.ModelSHA) && !strings.HasPrefix(c.ModelSHA, s.Model.SHA) {
				s.Close()
				return nil, fmt.Errorf("tier %q: model %s has sha256 %s, not %s, the one its rollout planned: the file changed since; apply it (ddnn apply) to roll it out", t.Name, p.ModelPath(t), s.Model.SHA, c.ModelSHA)
			}
			return s, err
		},
		Gatherer: reg,
		Service:  tokens,
		Logger:   log,
	})
}

// siteName is the name of the site tier runs on, "" when it has none.
func siteName(p *pipeline.Pipeline, tier string) string {
	if s := p.SiteOf(tier); s != nil {
		return s.Name
	}
	return ""
}
