// Package up owns `ddnn up`: it runs a pipeline's sites on one machine.
// One site's supervisor is the unit: it starts the site's embedded
// Kafka-protocol broker (unless the site has real brokers), which keeps its
// data on disk unless it is ephemeral, and creates the topics that live on
// the site, then starts the site's funnel, the inference replicas and
// connectors of the tiers placed there and one uplink per link leaving the
// site, as child processes of the same binary on 127.0.0.1, each ready only
// once its /readyz answers, and serves the site's admin address. Children
// that die are restarted; children die with the supervisor. On stop it
// drains in order within a deadline: intake off, connectors finish and
// commit, replicas, uplinks, funnel; then it reports per tier and per link
// the accepted messages left unprocessed and whether the next start will
// process them, and stops the broker.
//
// Run runs one site (a pipeline without sites: is one implicit site, and
// Config.Site picks one of several) or every site at once, each with its
// own supervisor: the continuum in miniature.
//
// With Config.Monolith it runs the cloud-only baseline instead: every tier
// placed on the last tier's site, where one `ddnn monolith` child takes
// the place of the tiers' replicas, connectors and scaler; the sites keep
// their brokers, funnels and uplinks, and a site left with nothing to run
// is skipped.
//
// `ddnn up` holds the sockets devices and operators reach (each site's
// funnel listeners, its CoAP socket, its admin address) for its whole
// life, so that they outlive a funnel's restart and its own in-place
// restart on RestartSignal, which hands them to the binary it executes.
//
// This is the one place that knows every component; the components do not
// know about it.
package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/scaler"
)

// Config is what `ddnn up` needs.
type Config struct {
	Pipeline *pipeline.Pipeline
	// File is the pipeline YAML, handed to every child.
	File string
	// ORTLib, when set, is passed to inference children.
	ORTLib string
	// Out receives the children's output, each line led by the child's name.
	Out io.Writer
	// Announce receives the lines that tell a person where to send data.
	Announce io.Writer
	Logger   *slog.Logger
	// ReadyTimeout bounds each child's start (default 60s).
	ReadyTimeout time.Duration
	// StopGrace bounds the whole stop (default 9s).
	StopGrace time.Duration
	// Ephemeral keeps the embedded brokers in memory: what they hold is
	// lost when the pipeline stops. By default each keeps topics, records
	// and committed offsets in its site's SiteDataDir.
	Ephemeral bool
	// TrustData keeps the records of a data directory written by a broker
	// that required less security than the site's does now (see
	// kafka.TrustData); by default such a start is refused.
	TrustData bool
	// Site, when set, runs only that site of a pipeline with sites:;
	// unset, every site runs on this machine.
	Site string
	// Monolith runs the cloud-only baseline: every tier is placed on the
	// last tier's site (pipeline.PlaceAllOn; the results stay on their
	// site), which runs one `ddnn monolith` child in place of the tiers'
	// replicas, connectors and scaler. Every child is told the placement
	// (--tiers-on). Sites with nothing to run under it are skipped.
	Monolith bool
	// LinkURLs are, by link, the base URLs its uplink posts to instead of
	// the receiving site's funnel.url, such as a WAN proxy in front of it.
	// A link the pipeline does not have (after the Monolith placement) is
	// a *LinkError.
	LinkURLs map[pipeline.Link]string
	// LogLevel is every child's and replica's --log-level (default info).
	LogLevel string
	// ServiceTokenFile is the service token file every child presents and
	// checks on the delivery zone. Run sets it: the pipeline's
	// auth.service_token_file, or, when auth.service is unset,
	// .run/<name>/service.token under the working directory, made at the
	// first start (so that sites started by separate `ddnn up --site` on
	// one machine share it); "" with auth.service: none.
	ServiceTokenFile string

	// handover holds the listening sockets across Runs and says whether
	// a stop is a restart's (RestartSignal); Run makes one when unset.
	handover *handover
}

// LinkError is a LinkURLs entry for a link the pipeline does not have.
type LinkError struct {
	Pipeline string
	Link     pipeline.Link
	Links    []pipeline.Link // the pipeline's links
	// Placement is the site every tier was placed on, "" as declared.
	Placement string
}

func (e *LinkError) Error() string {
	names := make([]string, len(e.Links))
	for i, l := range e.Links {
		names[i] = l.String()
	}
	list := strings.Join(names, ", ")
	if list == "" {
		list = "none"
	}
	links := "links"
	if e.Placement != "" {
		links = fmt.Sprintf("links with every tier on site %q", e.Placement)
	}
	return fmt.Sprintf("pipeline %q has no link %s (%s: %s)", e.Pipeline, e.Link, links, list)
}

// Supervisor is one running site.
type Supervisor struct {
	cfg        Config
	p          *pipeline.Pipeline
	site       pipeline.SiteView // of p
	tiers      []pipeline.Tier   // placed on the site
	links      []pipeline.Link   // leaving the site
	log        *slog.Logger
	broker     *kafka.Broker
	dataDir    string // the embedded broker's, "" in memory or with real brokers
	brokers    string
	funnel     *proc.Child
	runtimes   map[string]runtime.Runtime // by tier
	canaries   canaries                   // the tiers' canaries' runtimes
	connectors []*proc.Child
	monolith   *proc.Child // in place of the replicas and connectors with Config.Monolith
	uplinks    []*proc.Child
	admin      *http.Server
	mu         sync.Mutex            // guards funnel, runtimes, connectors, monolith and uplinks, read by the admin server
	started    atomic.Bool           // every part started once
	registry   *prometheus.Registry  // served by the admin server
	reg        prometheus.Registerer // registry, labeled with the pipeline
	kafkaReg   prometheus.Registerer

	// bg runs what lives as long as the pipeline: child supervision, the
	// admin server and the scaler. One of them failing stops the pipeline.
	bg        *errgroup.Group
	supervise context.Context // ends before the children are stopped
	status    lastStatus      // the site's status as last read (siteStatus)
	// applied is the pipeline as last applied, at start or by a reload
	// (guarded by mu).
	applied *apply.Spec
	// models are applied's models as a rollout needs them (readModels),
	// or why they could not be read (guarded by mu).
	models     map[string]tierModel
	modelsErr  error
	reloadMu   sync.Mutex     // one reload at a time (a SIGHUP, an apply)
	reloading  time.Time      // when the last reload began (guarded by mu)
	stopScaler func()         // stops the scaler and waits for it
	scaler     *scaler.Scaler // nil without a tier to scale

	// uplinksStopped counts down, across the sites run together, the
	// sites whose uplinks are stopped; nil for a lone site.
	uplinksStopped *sync.WaitGroup
	// placement is the site every tier runs on with Config.Monolith.
	placement string
}

// Run starts the pipeline's sites (Config.Site, or all of them) and blocks
// until ctx ends, then stops them. A start failure stops what was started
// and is returned; with several sites, one site failing stops the others.
func Run(ctx context.Context, cfg Config) error {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 9 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.handover == nil {
		cfg.handover = newHandover(cfg.Logger.With("component", "up"))
		defer cfg.handover.close()
	}
	defer cfg.handover.released()
	placement := ""
	if cfg.Monolith {
		// The caller's pipeline keeps its placement.
		p := *cfg.Pipeline
		p.Tiers = slices.Clone(p.Tiers)
		placement = p.SiteOf(p.Tiers[len(p.Tiers)-1].Name).Name
		if err := p.PlaceAllOn(placement); err != nil {
			return err
		}
		cfg.Pipeline = &p
	}
	if err := checkLinkURLs(cfg.Pipeline, cfg.LinkURLs, placement); err != nil {
		return err
	}
	sites, err := sitesToRun(cfg.Pipeline, cfg.Site)
	if err != nil {
		return err
	}
	switch cfg.ServiceTokenFile = cfg.Pipeline.ServiceTokenPath(); cfg.Pipeline.Auth.Service {
	case "":
		// The children still authenticate each other: the delivery zone
		// and the replicas are never open, even on loopback.
		if cfg.ServiceTokenFile, err = localServiceToken(cfg.Pipeline); err != nil {
			return fmt.Errorf("service token: %w", err)
		}
	}
	if cfg.Monolith {
		if sites = skipIdle(cfg, sites, placement); len(sites) == 0 {
			return nil
		}
	}
	// The funnels outlive every uplink: an uplink stops by delivering what
	// it holds to another site's funnel.
	var uplinksStopped sync.WaitGroup
	uplinksStopped.Add(len(sites))
	cfg.handover.starting(len(sites))
	if len(sites) == 1 {
		return runSite(ctx, cfg, sites[0], placement, &uplinksStopped)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, site := range sites {
		g.Go(func() error {
			if err := runSite(gctx, cfg, site, placement, &uplinksStopped); err != nil {
				return fmt.Errorf("site %q: %w", site.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// checkLinkURLs checks that every link of urls is one of p's.
func checkLinkURLs(p *pipeline.Pipeline, urls map[pipeline.Link]string, placement string) error {
	links := p.Links()
	for l := range urls {
		if !slices.Contains(links, l) {
			return &LinkError{Pipeline: p.Name, Link: l, Links: links, Placement: placement}
		}
	}
	return nil
}

// skipIdle drops, with a line of announcement each, the sites that run
// nothing with every tier on placement: no tier, not the results site, on
// no link.
func skipIdle(cfg Config, sites []pipeline.Site, placement string) []pipeline.Site {
	p := cfg.Pipeline
	var run []pipeline.Site
	for _, site := range sites {
		busy := site.Name == placement || p.ResultsSite().Name == site.Name
		for _, l := range p.Links() {
			busy = busy || l.From == site.Name || l.To == site.Name
		}
		if busy {
			run = append(run, site)
			continue
		}
		if cfg.Announce != nil {
			fmt.Fprintf(cfg.Announce, "pipeline %q site %q is skipped: nothing runs there in the monolith baseline, every tier on site %q and the results on %q\n",
				p.Name, site.Name, placement, p.ResultsSite().Name)
		}
	}
	return run
}

// sitesToRun is the site called name, or every site when name is empty.
func sitesToRun(p *pipeline.Pipeline, name string) ([]pipeline.Site, error) {
	sites := p.Sites()
	if name == "" {
		return sites, nil
	}
	if len(p.SiteList) == 0 {
		return nil, fmt.Errorf("site %q: pipeline %q declares no sites: (run it without a site)", name, p.Name)
	}
	var names []string
	for _, s := range sites {
		if s.Name == name {
			return []pipeline.Site{s}, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("site %q unknown (sites: %s)", name, strings.Join(names, ", "))
}

// siteStarted, when set (only tests set it, see export_test.go), is told
// each site that started, with its tiers' runtimes.
var siteStarted func(site string, runtime func(tier string) runtime.Runtime)

// runSite runs one site's supervisor until ctx ends. Its stop marks
// uplinksStopped done once its uplinks are down, and waits for the other
// sites' before stopping its funnel.
func runSite(ctx context.Context, cfg Config, site pipeline.Site, placement string, uplinksStopped *sync.WaitGroup) error {
	p := cfg.Pipeline
	s := &Supervisor{cfg: cfg, p: p, site: pipeline.SiteView{Site: site, Pipeline: p}, log: cfg.Logger.With("component", "up"), runtimes: map[string]runtime.Runtime{},
		uplinksStopped: uplinksStopped, placement: placement}
	if s.severalSites() {
		s.log = s.log.With("site", site.Name)
	}
	for i := range p.Tiers {
		if ts := p.SiteOf(p.Tiers[i].Name); ts != nil && ts.Name == site.Name {
			s.tiers = append(s.tiers, p.Tiers[i])
		}
	}
	for _, l := range p.Links() {
		if l.From == site.Name {
			s.links = append(s.links, l)
		}
	}
	s.newRegistry()
	bg, bgCtx := errgroup.WithContext(context.Background())
	supervise, stopSupervising := context.WithCancel(bgCtx)
	s.bg, s.supervise = bg, supervise
	err := s.start(ctx)
	cfg.handover.siteStarted()
	if err == nil {
		s.started.Store(true)
		s.announce()
		if siteStarted != nil {
			siteStarted(site.Name, s.runtime)
		}
		stopReload := func() {}
		if cfg.File != "" {
			stopReload = s.reloadOnSIGHUP(ctx)
		}
		select {
		case <-ctx.Done():
		case <-bgCtx.Done(): // a background part failed; bg.Wait says which
		}
		stopReload()
	}
	// Children that die from now on stay down: they are being stopped.
	stopSupervising()
	s.stop()
	if berr := bg.Wait(); err == nil {
		err = berr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// severalSites reports whether the pipeline has several sites. A pipeline
// on one site (implicit or declared) runs exactly as before sites: its
// top-level sections hold the site's settings and its children are not
// told a site.
func (s *Supervisor) severalSites() bool { return len(s.p.SiteList) > 1 }

// childName is name, led by the site's when the pipeline has several.
func (s *Supervisor) childName(name string) string {
	if s.severalSites() {
		return s.site.Name + "/" + name
	}
	return name
}
