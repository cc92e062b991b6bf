package monolith

import (
	"context"
	"flag"
	"fmt"
	"io"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// Synopsis is ddnn monolith's usage line and help.
const Synopsis = `monolith -f FILE [--site NAME] [--tiers-on SITE] [--workers N] [--admin ADDR]

The baseline: consumes the first tier's topic, runs every tier in this
process with a fixed number of workers, produces results. Every tier must
be on one site (--tiers-on SITE places them there: the cloud-only
baseline); it runs on that site's Kafka, and results for a results site
elsewhere go to the site's queue of the link there, as a connector writes
them. When the site has no brokers it runs its embedded broker in
memory, like ddnn up --ephemeral.`

// Command is ddnn monolith with its flags.
type Command struct {
	command.Role
	Site, ORTLib, Admin string
	Workers, MaxBatch   int
}

// Flags binds c to ddnn monolith's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	c.Role.Flags(fs)
	fs.StringVar(&c.Site, "site", "", "the site the monolith runs on (default: the one site every tier is placed on)")
	onnx.LibFlag(fs, &c.ORTLib)
	fs.IntVar(&c.Workers, "workers", goruntime.NumCPU(), "batches run at once, each worker with its own session per tier")
	fs.IntVar(&c.MaxBatch, "max-batch", 0, "samples per batch (default: the first tier's connector.max_batch)")
	fs.StringVar(&c.Admin, "admin", "", "address of /metrics, /healthz and /readyz (default: the site's admin.listen)")
}

// Run runs the monolith until ctx ends.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.Workers < 1 {
		return command.Usagef("--workers must be at least 1")
	}
	p, log, err := c.Load(stderr, "monolith")
	if err != nil {
		return err
	}
	site, err := tiersSite(p)
	if err != nil {
		return err
	}
	if c.Site != "" && c.Site != site {
		return command.Usagef("--site %s: every tier of pipeline %q is on site %q (--tiers-on %s places them on %s)",
			c.Site, p.Name, site, c.Site, c.Site)
	}
	sp, err := c.OnSite(p, site)
	if err != nil {
		return err
	}
	if len(p.SiteList) > 1 {
		log = log.With("site", site)
	}
	if _, err := onnx.Init(c.ORTLib); err != nil {
		return err
	}
	admin := c.Admin
	if admin == "" {
		admin = sp.Admin.Listen
	}
	ln, err := socket.Listen(admin)
	if err != nil {
		return fmt.Errorf("monolith admin: %w", err)
	}
	defer ln.Close()
	topics := p.TopicsOn(site)
	if len(sp.Kafka.Brokers) == 0 {
		s, err := p.Site(site)
		if err != nil {
			return err
		}
		b, err := kafka.StartSiteBroker(p, s, sp.Kafka.EmbeddedListen, true, log)
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Fprintf(stdout, "embedded Kafka broker on %s (in memory: data is lost when it stops)\n", b.Addr())
	}
	reg, wrapped := command.NewRegistry(p)
	// Ready once its sessions are loaded (New), while it runs, and while
	// its consumer is a member of the group.
	var running, joined atomic.Bool
	cl, err := kafka.NewClient(&sp.Kafka, "monolith", wrapped, log, ClientOptions(sp, joined.Store)...)
	if err != nil {
		return fmt.Errorf("monolith: kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = kafka.EnsureTopics(tctx, cl, &sp.Kafka, topics...)
	cancel()
	if err != nil {
		return err
	}
	service, err := auth.LoadTokens(p.ServiceTokenPath())
	if err != nil {
		return err
	}
	claims, err := auth.LoadDeviceClaims(p, service)
	if err != nil {
		return err
	}
	m, err := New(Config{
		Pipeline: p, Site: site, Client: cl, Workers: c.Workers, MaxBatch: c.MaxBatch, Registerer: wrapped, Logger: log, Claims: claims,
		Load: func(i int) (*inference.Session, error) {
			return inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: p.Tiers[i].Inference.IntraOpThreads})
		},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	names := make([]string, len(p.Tiers))
	for i, t := range p.Tiers {
		names[i] = t.Name
	}
	results := p.ResultsTopic()
	if d := records.DestinationOf(p, site, ""); d.Uplink() {
		results = fmt.Sprintf("%s (for %s on site %q)", d.Topic, p.ResultsTopic(), p.ResultsSite().Name)
	}
	fmt.Fprintf(stdout, "monolith: consuming %s (group %s), tiers %s in one process with %d workers, results to %s, bad records to %s; metrics on http://%s/metrics\n",
		p.InputTopic(p.Tiers[0].Name), Group(p), strings.Join(names, " → "), c.Workers, results, p.DLQTopic(p.Tiers[0].Name), ln.Addr())
	running.Store(true)
	ready := func() bool { return running.Load() && joined.Load() }
	err = command.WithAdmin(ctx, ln, command.AdminMux(reg, ready), func(ctx context.Context) error {
		defer running.Store(false)
		return m.Run(ctx)
	})
	log.Info("monolith stopped")
	return err
}

// tiersSite is the one site every tier of p is placed on; tiers on
// several sites are an error naming each tier's site.
func tiersSite(p *pipeline.Pipeline) (string, error) {
	var where []string
	sites := map[string]bool{}
	site := ""
	for _, t := range p.Tiers {
		s := p.SiteOf(t.Name).Name
		if site == "" {
			site = s
		}
		sites[s] = true
		where = append(where, fmt.Sprintf("%s on %s", t.Name, s))
	}
	if len(sites) > 1 {
		last := p.SiteOf(p.Tiers[len(p.Tiers)-1].Name).Name
		return "", command.Usagef("the monolith runs every tier on one site, and pipeline %q places them on %d (%s): "+
			"--tiers-on SITE places them all on SITE (the cloud-only baseline: --tiers-on %s)",
			p.Name, len(sites), strings.Join(where, ", "), last)
	}
	return site, nil
}
