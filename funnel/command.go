package funnel

import (
	"context"
	"flag"
	"io"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// Synopsis is ddnn funnel's usage line.
const Synopsis = "funnel -f FILE [--site NAME] [--listen ADDR] [--delivery-listen ADDR] [--brokers H:P,...]"

// Command is ddnn funnel with its flags.
type Command struct {
	command.Role
	Site, Listen, DeliveryListen string
}

// Flags binds c to ddnn funnel's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	c.Role.Flags(fs)
	fs.StringVar(&c.Listen, "listen", "", "address of the device zone: ingest and health (default: the site's funnel.listen)")
	fs.StringVar(&c.DeliveryListen, "delivery-listen", "", "address of the delivery zone: the pipeline's own routes and metrics (default: the site's funnel.delivery_listen)")
	fs.StringVar(&c.Site, "site", "", "the site whose funnel this is (required when the pipeline has several sites)")
}

// Run runs the site's funnel until ctx ends.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	p, log, err := c.Load(stderr, "funnel")
	if err != nil {
		return err
	}
	site, err := command.Site(p, c.Site)
	if err != nil {
		return err
	}
	view, err := c.OnSite(p, site)
	if err != nil {
		return err
	}
	tr, err := telemetry.Start(p.Telemetry, telemetry.Process{Pipeline: p.Name, Role: "funnel", Site: site}, log)
	if err != nil {
		return err
	}
	defer tr.Shutdown()
	reg, wrapped := command.NewRegistry(p)
	// The funnel reads the site's device, TLS and Kafka credentials: it
	// says when one of them could no longer be read at a restart.
	wrapped.MustRegister(auth.NewFilesCollector(auth.SiteCredentialFiles(view, p.ServiceTokenPath())))
	s, err := Start(ctx, p, Options{Site: site, Listen: c.Listen, DeliveryListen: c.DeliveryListen,
		Registerer: wrapped, Gatherer: reg, Logger: log, Tracing: tr})
	if err != nil {
		return err
	}
	// SIGHUP re-reads the file: the device rate limit changes in place.
	defer command.Reloader{Load: c.LoadPipeline, Apply: s.Reload, Log: log}.OnSIGHUP(ctx)()
	s.Announce(stdout)
	return s.Run(ctx)
}
