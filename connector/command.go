package connector

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// Synopses of ddnn connector and ddnn uplink.
const (
	Synopsis       = "connector -f FILE --tier NAME (--replicas URL[,URL...] | --replicas-url URL) [--admin ADDR]"
	UplinkSynopsis = "uplink -f FILE --from SITE --to SITE [--to-url URL] [--brokers H:P,...] [--admin ADDR] [--drain-timeout D] [--instance-id ID]"
)

// DefaultDrainTimeout bounds a connector's graceful stop.
const DefaultDrainTimeout = 8 * time.Second

// Serving are the flags of a running connector or uplink: its admin
// address, drain timeout and static group membership.
type Serving struct {
	Admin        string
	DrainTimeout time.Duration
	InstanceID   string
}

// flags adds them; who ("a connector") and unique (when an id must
// differ) word their help.
func (s *Serving) flags(fs *flag.FlagSet, who, unique string) {
	fs.StringVar(&s.Admin, "admin", "127.0.0.1:0", "address of /metrics, /healthz and /readyz")
	fs.DurationVar(&s.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "how long a graceful stop waits for in-flight deliveries")
	fs.StringVar(&s.InstanceID, "instance-id", "", "static group membership: "+who+" restarted with the same id takes its partitions back at once "+
		"instead of after the group's 10s session timeout ("+unique+")")
}

// Command is ddnn connector with its flags: one tier's connector.
type Command struct {
	command.Role
	Serving
	Tier, Replicas, ReplicasURL string
}

// Flags binds c to ddnn connector's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	c.Role.Flags(fs)
	fs.StringVar(&c.Tier, "tier", "", "tier whose input topic to consume (required)")
	fs.StringVar(&c.Replicas, "replicas", "", "inference replica base URLs, comma-separated (fixed set)")
	fs.StringVar(&c.ReplicasURL, "replicas-url", "", "URL serving the live replica set as JSON [{\"url\":…}] (what ddnn up serves), polled twice a second")
	c.Serving.flags(fs, "a connector", "unique per connector of a tier")
}

// Run runs the tier's connector on the Kafka of the tier's site (or
// --brokers) until ctx ends.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.Tier == "" || (c.Replicas == "") == (c.ReplicasURL == "") {
		return command.Usagef("--tier and one of --replicas or --replicas-url are required")
	}
	p, log, err := c.Load(stderr, "connector")
	if err != nil {
		return err
	}
	site := p.Sites()[0].Name
	if s := p.SiteOf(c.Tier); s != nil {
		site = s.Name
	}
	// The tier's site's Kafka, unless --brokers names another.
	if _, err := c.OnSite(p, site); err != nil {
		return err
	}
	return c.Serving.run(ctx, stdout, "connector "+c.Tier, telemetry.Process{Pipeline: p.Name, Role: "connector", Site: site, Tier: c.Tier}, Config{
		Pipeline:    p,
		Tier:        c.Tier,
		Replicas:    command.SplitList(c.Replicas),
		ReplicasURL: c.ReplicasURL,
		Logger:      log.With("tier", c.Tier),
	}, c.LoadPipeline)
}

// UplinkCommand is ddnn uplink with its flags: the uplink of one link.
type UplinkCommand struct {
	command.Role
	Serving
	From, To, ToURL string
}

// Flags binds c to ddnn uplink's flags.
func (c *UplinkCommand) Flags(fs *flag.FlagSet) {
	c.Role.Flags(fs)
	fs.StringVar(&c.From, "from", "", "the sending site: its queue for --to is consumed from its Kafka (required)")
	fs.StringVar(&c.To, "to", "", "the receiving site: its funnel (sites[].funnel.url) takes the records (required)")
	fs.StringVar(&c.ToURL, "to-url", "", "base URL of the receiving site's funnel (default: its sites[].funnel.url)")
	c.Serving.flags(fs, "an uplink", "unique per uplink of a link")
}

// Run runs the uplink until ctx ends.
func (c *UplinkCommand) Run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.From == "" || c.To == "" {
		return command.Usagef("--from and --to are required")
	}
	p, log, err := c.Load(stderr, "uplink")
	if err != nil {
		return err
	}
	if _, err := c.OnSite(p, c.From); err != nil {
		return err
	}
	if c.ToURL != "" {
		for i := range p.SiteList {
			if p.SiteList[i].Name == c.To {
				p.SiteList[i].Funnel.URL = strings.TrimSuffix(c.ToURL, "/")
			}
		}
	}
	return c.Serving.run(ctx, stdout, "uplink "+c.From+" -> "+c.To, telemetry.Process{Pipeline: p.Name, Role: "uplink", Site: c.From}, Config{
		Pipeline: p,
		Link:     &pipeline.Link{From: c.From, To: c.To},
		Logger:   log.With("from", c.From, "to", c.To),
	}, c.LoadPipeline)
}

// run builds the connector of cfg with s's settings and runs it, serving
// its admin routes; name says which in the announcement, proc in traces.
// load reads the pipeline file again, at each SIGHUP.
func (s *Serving) run(ctx context.Context, stdout io.Writer, name string, proc telemetry.Process, cfg Config, load func() (*pipeline.Pipeline, error)) error {
	var err error
	if cfg.Tracing, err = telemetry.Start(cfg.Pipeline.Telemetry, proc, cfg.Logger); err != nil {
		return err
	}
	defer cfg.Tracing.Shutdown()
	reg, wrapped := command.NewRegistry(cfg.Pipeline)
	cfg.DrainTimeout, cfg.InstanceID, cfg.Registerer = s.DrainTimeout, s.InstanceID, wrapped
	if cfg.Service, err = auth.LoadTokens(cfg.Pipeline.ServiceTokenPath()); err != nil {
		return err
	}
	if cfg.Link == nil && len(cfg.Pipeline.Tiers) > 0 && cfg.Tier == cfg.Pipeline.Tiers[0].Name {
		if cfg.Claims, err = auth.LoadDeviceClaims(cfg.Pipeline, cfg.Service); err != nil {
			return err
		}
	}
	c, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := socket.Listen(s.Admin)
	if err != nil {
		return fmt.Errorf("%s admin: %w", name, err)
	}
	fmt.Fprintf(stdout, "%s: admin on http://%s (metrics, healthz, readyz)\n", name, ln.Addr())
	// SIGHUP re-reads the file: batching, attempts, backoff and the
	// request timeout change in place.
	defer command.Reloader{Load: load, Apply: c.Reload, Log: cfg.Logger}.OnSIGHUP(ctx)()
	return command.WithAdmin(ctx, ln, command.AdminMux(reg, c.Ready), c.Run)
}
