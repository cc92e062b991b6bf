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
// This is the one place that knows every component; the components do not
// know about it.
package up

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
	"github.com/ddnn-continuum/ddnn/internal/socket"
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
	site       pipeline.Site
	tiers      []pipeline.Tier // placed on the site
	links      []pipeline.Link // leaving the site
	log        *slog.Logger
	broker     *kafka.Broker
	dataDir    string // the embedded broker's, "" in memory or with real brokers
	brokers    string
	funnel     *proc.Child
	runtimes   map[string]runtime.Runtime // by tier
	connectors []*proc.Child
	monolith   *proc.Child // in place of the replicas and connectors with Config.Monolith
	uplinks    []*proc.Child
	admin      *http.Server
	mu         sync.Mutex  // guards funnel, runtimes, connectors, monolith and uplinks, read by the admin server
	started    atomic.Bool // every part started once
	reg        prometheus.Registerer
	kafkaReg   prometheus.Registerer

	// bg runs what lives as long as the pipeline: child supervision, the
	// admin server and the scaler. One of them failing stops the pipeline.
	bg         *errgroup.Group
	supervise  context.Context // ends before the children are stopped
	stopScaler func()          // stops the scaler and waits for it

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
	switch a := cfg.Pipeline.Auth; a.Service {
	case pipeline.AuthToken:
		cfg.ServiceTokenFile = cfg.Pipeline.Path(a.ServiceTokenFile)
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

// runSite runs one site's supervisor until ctx ends. Its stop marks
// uplinksStopped done once its uplinks are down, and waits for the other
// sites' before stopping its funnel.
func runSite(ctx context.Context, cfg Config, site pipeline.Site, placement string, uplinksStopped *sync.WaitGroup) error {
	p := cfg.Pipeline
	s := &Supervisor{cfg: cfg, p: p, site: site, log: cfg.Logger.With("component", "up"), runtimes: map[string]runtime.Runtime{},
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
	bg, bgCtx := errgroup.WithContext(context.Background())
	supervise, stopSupervising := context.WithCancel(bgCtx)
	s.bg, s.supervise = bg, supervise
	err := s.start(ctx)
	if err == nil {
		s.started.Store(true)
		s.announce()
		select {
		case <-ctx.Done():
		case <-bgCtx.Done(): // a background part failed; bg.Wait says which
		}
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

// tiersOn are the flags that tell a child the placement: --tiers-on with
// Config.Monolith, else none.
func (s *Supervisor) tiersOn() []string {
	if !s.cfg.Monolith {
		return nil
	}
	return []string{"--tiers-on", s.placement}
}

// childName is name, led by the site's when the pipeline has several.
func (s *Supervisor) childName(name string) string {
	if s.severalSites() {
		return s.site.Name + "/" + name
	}
	return name
}

func (s *Supervisor) start(ctx context.Context) error {
	p, k := s.p, &s.site.Kafka
	if k.Embedded() {
		b, err := s.startBroker()
		if err != nil {
			return err
		}
		s.broker, s.brokers, s.dataDir = b, b.Addr(), b.DataDir()
	} else {
		s.brokers = strings.Join(k.Brokers, ",")
		if err := s.ensureTopics(ctx); err != nil {
			return err
		}
	}
	if s.dataDir != "" || !k.Embedded() {
		cl, err := s.kafkaClient("up", nil)
		if err != nil {
			return err
		}
		s.reportBacklog(ctx, kadm.NewClient(cl), "left from the last run; processing them now")
		cl.Close()
	}
	if err := s.serveAdmin(); err != nil {
		return err
	}
	// Replicas deliver to the delivery zone, which is also where the
	// funnel's readiness is asked (the device zone may be HTTPS).
	delivery := "http://" + s.site.Funnel.DeliveryListen
	args := append([]string{"funnel", "-f", s.cfg.File}, s.tiersOn()...)
	if s.severalSites() {
		args = append(args, "--site", s.site.Name)
	}
	fc := s.newChild(s.childName("funnel"), delivery+"/readyz",
		append(args, "--brokers", s.brokers, "--listen", s.site.Funnel.Listen, "--delivery-listen", s.site.Funnel.DeliveryListen)...)
	if err := s.passFunnelSockets(fc); err != nil {
		fc.Stop(0) // closes what it was passed
		return err
	}
	s.mu.Lock()
	s.funnel = fc
	s.mu.Unlock()
	if err := s.launch(ctx, s.funnel); err != nil {
		return err
	}
	if s.cfg.Monolith {
		return s.startMonolith(ctx)
	}
	// Replicas first (they load models), then the connectors that call
	// them; the connectors follow each tier's live replica set. Every
	// replica delivers to its own site's funnel.
	for _, t := range s.tiers {
		rt, err := replicas.New(ctx, p, &t, replicas.Options{
			File: s.cfg.File, FunnelURL: delivery, ServiceTokenFile: s.cfg.ServiceTokenFile, LogLevel: s.cfg.LogLevel,
			ORTLib: s.cfg.ORTLib, Out: s.cfg.Out, Logger: s.log,
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.runtimes[t.Name] = rt
		s.mu.Unlock()
		if err := rt.Scale(ctx, t.Replicas.Min); err != nil {
			return err
		}
	}
	for _, t := range s.tiers {
		if err := s.waitReplicas(ctx, t.Name, t.Replicas.Min); err != nil {
			return err
		}
	}
	for _, t := range s.tiers {
		c, err := s.newServingChild(s.childName("connector-"+t.Name), func(admin string) []string {
			return []string{"connector", "-f", s.cfg.File, "--tier", t.Name,
				"--replicas-url", "http://" + s.site.Admin.Listen + runtime.ListPath(t.Name),
				"--admin", admin, "--brokers", s.brokers, "--drain-timeout", "3s",
				// One connector per tier: a restarted one rejoins at once.
				"--instance-id", "up-" + t.Name}
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.connectors = append(s.connectors, c)
		s.mu.Unlock()
	}
	if err := s.addUplinks(); err != nil {
		return err
	}
	s.mu.Lock()
	cs := append(append([]*proc.Child(nil), s.connectors...), s.uplinks...)
	s.mu.Unlock()
	if err := s.launch(ctx, cs...); err != nil {
		return err
	}
	return s.startScaler()
}

// addUplinks makes one uplink per link leaving the site, which ships its
// queue to the remote site's funnel (or to the link's URL in
// Config.LinkURLs).
func (s *Supervisor) addUplinks() error {
	for _, l := range s.links {
		args := append([]string{"uplink", "-f", s.cfg.File}, s.tiersOn()...)
		args = append(args, "--from", l.From, "--to", l.To)
		if u, ok := s.cfg.LinkURLs[l]; ok {
			args = append(args, "--to-url", u)
		}
		c, err := s.newServingChild(s.childName("uplink-"+l.To), func(admin string) []string {
			return append(args, "--brokers", s.brokers, "--admin", admin,
				// One uplink per link: a restarted one rejoins at once.
				"--instance-id", "up-uplink-"+l.To)
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.uplinks = append(s.uplinks, c)
		s.mu.Unlock()
	}
	return nil
}

// startMonolith starts, after the funnel, the parts of a site of the
// monolith baseline: the monolith, when the tiers are on the site, and
// the uplinks.
func (s *Supervisor) startMonolith(ctx context.Context) error {
	if len(s.tiers) > 0 {
		c, err := s.newServingChild(s.childName("monolith"), func(admin string) []string {
			args := []string{"monolith", "-f", s.cfg.File, "--tiers-on", s.placement, "--site", s.site.Name,
				"--brokers", s.brokers, "--admin", admin}
			if s.cfg.ORTLib != "" {
				args = append(args, "--ort-lib", s.cfg.ORTLib)
			}
			return args
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.monolith = c
		s.mu.Unlock()
	}
	if err := s.addUplinks(); err != nil {
		return err
	}
	s.mu.Lock()
	cs := append([]*proc.Child(nil), s.uplinks...)
	if s.monolith != nil {
		cs = append(cs, s.monolith)
	}
	s.mu.Unlock()
	return s.launch(ctx, cs...)
}

// startBroker starts the site's embedded broker with the topics that live
// on the site, on disk in its SiteDataDir unless ephemeral.
func (s *Supervisor) startBroker() (*kafka.Broker, error) {
	return kafka.StartSiteBroker(s.p, &s.site, "", s.cfg.Ephemeral, s.log)
}

// waitReplicas waits until n replicas of tier are ready.
func (s *Supervisor) waitReplicas(ctx context.Context, tier string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	for {
		reps, _ := s.runtime(tier).List(ctx)
		ready := 0
		for _, r := range reps {
			if r.Ready {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tier %q: %d of %d replicas ready within %s", tier, ready, n, s.cfg.ReadyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startScaler runs the scaler for the tiers whose replicas may change.
func (s *Supervisor) startScaler() error {
	var targets []scaler.Target
	for _, t := range s.tiers {
		if !t.Replicas.Scaled() {
			continue
		}
		targets = append(targets, scaler.Target{
			Tier: t.Name, Group: s.p.ConsumerGroup(t.Name), Topic: s.p.InputTopic(t.Name),
			Min: t.Replicas.Min, Max: t.Replicas.Max,
			Settings: t.Scaling,
			Runtime:  s.runtime(t.Name),
		})
	}
	if len(targets) == 0 {
		return nil
	}
	cl, err := s.kafkaClient("scaler", s.kafkaReg)
	if err != nil {
		return err
	}
	sc, err := scaler.New(scaler.Config{Admin: kadm.NewClient(cl), Targets: targets, Registerer: s.reg, Logger: s.cfg.Logger})
	if err != nil {
		cl.Close()
		return err
	}
	ctx, cancel := context.WithCancel(s.supervise)
	var g errgroup.Group
	g.Go(func() error {
		defer cl.Close()
		return sc.Run(ctx)
	})
	s.stopScaler = func() {
		cancel()
		g.Wait()
	}
	s.bg.Go(g.Wait) // its error, if any, stops the pipeline
	return nil
}

// kafkaClient is a client of the site's brokers, embedded or not.
func (s *Supervisor) kafkaClient(role string, reg prometheus.Registerer) (*kgo.Client, error) {
	k := s.site.Kafka
	k.Brokers = strings.Split(s.brokers, ",")
	cl, err := kafka.NewClient(&k, role, reg, s.log)
	if err != nil {
		return nil, fmt.Errorf("%s: kafka client: %w", role, err)
	}
	return cl, nil
}

func (s *Supervisor) ensureTopics(ctx context.Context) error {
	cl, err := kafka.NewClient(&s.site.Kafka, "up", nil, s.log)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return kafka.EnsureTopics(tctx, cl, &s.site.Kafka, s.p.TopicsOn(s.site.Name)...)
}

// newChild makes a child of the same binary; every child gets the log
// level and the service token file.
func (s *Supervisor) newChild(name, readyURL string, args ...string) *proc.Child {
	return proc.New(name, readyURL, s.cfg.Out, s.log, append(args, s.childArgs()...)...)
}

// passFunnelSockets binds the funnel's HTTP sockets and passes them to
// fc: a taken port fails the start at once, and a restarted funnel keeps
// its ports, with the requests made meanwhile waiting in their backlog.
// Nothing is bound beyond what the pipeline's auth allows (the funnel
// checks it too, as it may run on its own).
func (s *Supervisor) passFunnelSockets(fc *proc.Child) error {
	for _, l := range []struct{ zone, what, key, addr string }{
		{"device", "funnel listener", "funnel.listen", s.site.Funnel.Listen},
		{"delivery", "funnel delivery listener", "funnel.delivery_listen", s.site.Funnel.DeliveryListen},
	} {
		if err := s.p.CheckExposure(l.zone, l.what, l.addr); err != nil {
			return err
		}
		sock, err := socket.Bind(l.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", l.key, err)
		}
		fc.Pass(sock)
	}
	return nil
}

// newServingChild makes a child whose admin server listens on a socket
// bound here and passed down (see socket.Socket); args gets its address.
func (s *Supervisor) newServingChild(name string, args func(admin string) []string) (*proc.Child, error) {
	admin, err := socket.New()
	if err != nil {
		return nil, fmt.Errorf("%s admin: %w", name, err)
	}
	c := s.newChild(name, "http://"+admin.Addr+"/readyz", args(admin.Addr)...)
	c.Pass(admin)
	return c, nil
}

// childArgs are the arguments every child and replica gets.
func (s *Supervisor) childArgs() []string {
	args := []string{"--log-level", cmp.Or(s.cfg.LogLevel, "info")}
	if s.cfg.ServiceTokenFile != "" {
		args = append(args, "--service-token-file", s.cfg.ServiceTokenFile)
	}
	return args
}

// serviceClient is an HTTP client presenting the service token.
func (s *Supervisor) serviceClient(timeout time.Duration) (*http.Client, error) {
	var tokens *auth.Tokens
	if s.cfg.ServiceTokenFile != "" {
		var err error
		if tokens, err = auth.LoadTokens(s.cfg.ServiceTokenFile); err != nil {
			return nil, err
		}
	}
	return &http.Client{Timeout: timeout, Transport: tokens.Transport(nil)}, nil
}

// launch starts children together, supervises them in bg and waits until
// all are ready.
func (s *Supervisor) launch(ctx context.Context, cs ...*proc.Child) error {
	for _, c := range cs {
		if err := c.Start(); err != nil {
			return err
		}
		s.bg.Go(func() error {
			c.Supervise(s.supervise)
			return nil
		})
	}
	var g errgroup.Group
	for _, c := range cs {
		g.Go(func() error { return c.WaitReady(ctx, s.cfg.ReadyTimeout) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

func (s *Supervisor) announce() {
	w := s.cfg.Announce
	if w == nil {
		return
	}
	p, site := s.p, &s.site
	// One write per site: sites announce concurrently.
	var b strings.Builder
	baseline := ""
	if s.cfg.Monolith {
		baseline = " as the monolith baseline"
	}
	if s.severalSites() {
		names := make([]string, len(s.tiers))
		for i := range s.tiers {
			names[i] = s.tiers[i].Name
		}
		tiers := "tiers"
		if len(names) == 1 {
			tiers = "tier"
		}
		what := fmt.Sprintf("%d %s (%s)", len(names), tiers, strings.Join(names, ", "))
		switch {
		case s.cfg.Monolith && len(names) > 0:
			what = fmt.Sprintf("every tier (%s) in one monolith process", strings.Join(names, ", "))
		case s.cfg.Monolith:
			what = fmt.Sprintf("no tier (every tier on site %q)", s.placement)
		}
		fmt.Fprintf(&b, "pipeline %q site %q is up%s: %s, %s\n", p.Name, site.Name, baseline, what, processes(len(s.children())))
	} else if s.cfg.Monolith {
		fmt.Fprintf(&b, "pipeline %q is up%s: %d tiers in one monolith process, %s\n", p.Name, baseline, len(p.Tiers), processes(len(s.children())))
	} else {
		fmt.Fprintf(&b, "pipeline %q is up: %d tiers, %s\n", p.Name, len(p.Tiers), processes(len(s.children())))
	}
	switch {
	case s.broker != nil && s.dataDir == "":
		fmt.Fprintf(&b, "  kafka:    %s (embedded, in memory with --ephemeral: data is lost when ddnn up stops)\n", s.brokers)
	case s.broker != nil:
		fmt.Fprintf(&b, "  kafka:    %s (embedded, data kept in %s)\n", s.brokers, s.dataDir)
	default:
		fmt.Fprintf(&b, "  kafka:    %s\n", s.brokers)
	}
	first := len(s.tiers) > 0 && s.tiers[0].Name == p.Tiers[0].Name
	if first {
		scheme, cred := "http", ""
		if site.Funnel.TLS.Enabled() {
			scheme = "https"
		}
		if p.Auth.Devices == pipeline.AuthToken {
			cred = ", with a device token: ddnn devices add -f " + p.Auth.DevicesFile + " NAME"
		}
		fmt.Fprintf(&b, "  send:     POST %s://%s%s  (raw %s %v bytes or JSON {\"data\":[…]}%s)\n", scheme, site.Funnel.Listen, funnel.PathIngest, p.Input.DType, p.Input.Shape, cred)
		if site.Funnel.CoAPListen != "off" {
			fmt.Fprintf(&b, "  or:       POST coap://%s%s  (content-format 42 or 50, Block1 for large samples)\n", site.Funnel.CoAPListen, funnel.PathIngest)
		}
		if site.Funnel.CoAPSListen != "off" {
			dcred := ""
			if p.Auth.DevicesPSKKeyFile != "" {
				dcred = ", with a pre-shared key: ddnn devices psk -f " + p.Auth.DevicesFile + " --key " + p.Auth.DevicesPSKKeyFile + " NAME"
			}
			fmt.Fprintf(&b, "  or:       POST coaps://%s%s  (CoAP over DTLS%s)\n", site.Funnel.CoAPSListen, funnel.PathIngest, dcred)
		}
		fmt.Fprintf(&b, "  or:       produce to topic %s\n", p.InputTopic(p.Tiers[0].Name))
	}
	zone := "the service token in " + s.cfg.ServiceTokenFile
	if s.cfg.ServiceTokenFile == "" {
		zone = "no credential: auth.service is none"
	}
	fmt.Fprintf(&b, "  delivery: http://%s  (the pipeline's own routes; %s; other sites use %s)\n", site.Funnel.DeliveryListen, zone, site.Funnel.URL)
	if r := p.ResultsSite(); r == nil || r.Name == site.Name {
		fmt.Fprintf(&b, "  results:  topic %s  (ddnn results -f %s --follow)\n", p.ResultsTopic(), s.cfg.File)
	} else {
		fmt.Fprintf(&b, "  results:  on site %q\n", r.Name)
	}
	for _, l := range s.links {
		url, via := s.cfg.LinkURLs[l], ", from --link-url"
		if url == "" {
			via = ""
			for _, to := range p.Sites() {
				if to.Name == l.To {
					url = to.Funnel.URL
				}
			}
		}
		fmt.Fprintf(&b, "  uplink:   topic %s to site %q (%s%s)\n", p.UplinkTopic(l.To), l.To, url, via)
	}
	fmt.Fprintf(&b, "  metrics:  http://%s/metrics\n", site.Admin.Listen)
	io.WriteString(w, b.String())
}

// processes is "n processes", or "1 process".
func processes(n int) string {
	if n == 1 {
		return "1 process"
	}
	return fmt.Sprintf("%d processes", n)
}

// runtime returns tier's runtime, nil before it exists.
func (s *Supervisor) runtime(tier string) runtime.Runtime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runtimes[tier]
}

// fixedChildren are the funnel, the connectors or the monolith, and the
// uplinks.
func (s *Supervisor) fixedChildren() []*proc.Child {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []*proc.Child
	if s.funnel != nil {
		cs = append(cs, s.funnel)
	}
	cs = append(cs, s.connectors...)
	if s.monolith != nil {
		cs = append(cs, s.monolith)
	}
	return append(cs, s.uplinks...)
}

// children are every child process, replicas included.
func (s *Supervisor) children() []*proc.Child {
	cs := s.fixedChildren()
	for _, t := range s.tiers {
		if rt := s.runtime(t.Name); rt != nil {
			cs = append(cs, childrenOf(rt)...)
		}
	}
	return cs
}

// childrenOf returns a runtime's child processes, if it has any.
func childrenOf(rt runtime.Runtime) []*proc.Child {
	if c, ok := rt.(interface{ Children() []*proc.Child }); ok {
		return c.Children()
	}
	return nil
}

// serveAdmin serves /metrics (the supervisor's and every child's, labeled
// by process), /healthz, /readyz and each tier's live replica set, which
// the connectors follow.
func (s *Supervisor) serveAdmin() error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reg = prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": s.p.Name}, reg)
	s.kafkaReg = s.reg
	restarts := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ddnn_up_child_restarts", Help: "Restarts of ddnn up's child processes since start.",
	}, func() float64 {
		n := 0
		for _, c := range s.children() {
			n += c.Restarts()
		}
		return float64(n)
	})
	s.reg.MustRegister(restarts)
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		gs := prometheus.Gatherers{reg}
		for _, c := range s.children() {
			gs = append(gs, childGatherer{c})
		}
		return gs.Gather()
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		for _, c := range s.fixedChildren() {
			if !c.Ready() {
				http.Error(w, c.Name()+" not ready", http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /v1/tiers/{tier}/replicas", runtime.ListHandler(func(tier string) runtime.Runtime {
		if rt := s.runtime(tier); rt != nil {
			return rt
		}
		return nil // not a typed nil inside the interface
	}))
	ln, err := socket.Listen(s.site.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.bg.Go(func() error {
		if err := s.admin.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	return nil
}

// stop drains in order within StopGrace: intake off, connectors (finish
// in-flight, commit, leave) or the monolith (finishes its poll, commits),
// replicas, uplinks (ship what is queued for
// other sites), funnel (flush) once the uplinks of every site run together
// are down; then it reports what
// is left unprocessed, stops the admin server and the broker. Each step
// stops what it owns in parallel and starts when the one before is done.
func (s *Supervisor) stop() {
	began := time.Now()
	deadline := began.Add(s.cfg.StopGrace)
	share := func(frac float64) time.Duration {
		return max(time.Duration(float64(time.Until(deadline))*frac), 100*time.Millisecond)
	}
	if s.stopScaler != nil {
		s.stopScaler()
	}
	s.mu.Lock()
	funnelChild := s.funnel
	connectors := append([]*proc.Child(nil), s.connectors...)
	if s.monolith != nil {
		connectors = append(connectors, s.monolith)
	}
	uplinks := append([]*proc.Child(nil), s.uplinks...)
	runtimes := make([]runtime.Runtime, 0, len(s.runtimes))
	for _, rt := range s.runtimes {
		runtimes = append(runtimes, rt)
	}
	s.mu.Unlock()
	var adm *kadm.Client
	if s.brokers != "" {
		if cl, err := s.kafkaClient("up", nil); err != nil {
			s.log.Warn("unprocessed messages unknown", "err", err)
		} else {
			defer cl.Close()
			adm = kadm.NewClient(cl)
		}
	}
	if funnelChild != nil {
		client, err := s.serviceClient(500 * time.Millisecond)
		if err == nil {
			var resp *http.Response
			if resp, err = client.Post("http://"+s.site.Funnel.DeliveryListen+funnel.PathDrain, "text/plain", nil); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("funnel answered %s", resp.Status)
				}
			}
		}
		if err != nil {
			s.log.Warn("funnel not drained: devices may send until it stops", "err", err)
		}
	}
	if adm != nil && s.started.Load() {
		s.awaitBacklog(adm, share(0.3))
	}
	stopChildren(connectors, share(0.8))
	var g errgroup.Group
	for _, rt := range runtimes {
		g.Go(func() error { return rt.Close(context.Background()) })
	}
	if err := g.Wait(); err != nil {
		s.log.Warn("stopping replicas", "err", err)
	}
	// The uplinks ship what the last deliveries queued for other sites.
	if len(uplinks) > 0 {
		if adm != nil && s.started.Load() {
			s.awaitBacklog(adm, share(0.3))
		}
		stopChildren(uplinks, share(0.8))
	}
	if s.uplinksStopped != nil {
		s.uplinksStopped.Done()
		s.awaitUplinks(share(0.5))
	}
	if funnelChild != nil {
		stopChildren([]*proc.Child{funnelChild}, share(0.8))
	}
	if adm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), max(time.Until(deadline), time.Second))
		s.reportBacklog(ctx, adm, "")
		cancel()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
	msg := "pipeline stopped"
	if s.severalSites() {
		msg = "site stopped"
	}
	s.log.Info(msg, "took", time.Since(began).Round(time.Millisecond))
}

// awaitUplinks waits up to budget for the uplinks of every site run
// together to stop.
func (s *Supervisor) awaitUplinks(budget time.Duration) {
	done := make(chan struct{})
	go func() {
		s.uplinksStopped.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(budget):
		s.log.Info("stopping the funnel before other sites' uplinks stopped", "waited", budget.Round(time.Millisecond))
	}
}

// stopChildren stops children in parallel, each within grace.
func stopChildren(cs []*proc.Child, grace time.Duration) {
	var g errgroup.Group
	for _, c := range cs {
		g.Go(func() error {
			c.Stop(grace)
			return nil
		})
	}
	g.Wait()
}

// queue is where accepted messages wait on the site: a tier's input topic
// or a link's uplink queue, with the group that consumes it.
type queue struct {
	key, name    string // log attribute: "tier" or "uplink" (the site it goes to)
	group, topic string
}

// queues are the site's tiers' input topics (with Config.Monolith, the
// first tier's, which the monolith consumes), then its uplink queues.
func (s *Supervisor) queues() []queue {
	var qs []queue
	for _, t := range s.tiers {
		if s.cfg.Monolith {
			first := s.p.Tiers[0].Name
			qs = append(qs, queue{"tier", first, monolith.Group(s.p), s.p.InputTopic(first)})
			break
		}
		qs = append(qs, queue{"tier", t.Name, s.p.ConsumerGroup(t.Name), s.p.InputTopic(t.Name)})
	}
	for _, l := range s.links {
		qs = append(qs, queue{"uplink", l.To, s.p.UplinkGroup(l.To), s.p.UplinkTopic(l.To)})
	}
	return qs
}

// awaitBacklog gives the connectors and uplinks up to budget to finish the
// messages accepted before the intake closed, and returns early once no
// queue has any left.
func (s *Supervisor) awaitBacklog(adm *kadm.Client, budget time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	for {
		var left int64
		for _, q := range s.queues() {
			n, err := unprocessed(ctx, adm, q.group, q.topic)
			if err != nil {
				return // the report says so
			}
			left += n
		}
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Info("stopping with accepted messages unprocessed", "waited", budget.Round(time.Millisecond), "unprocessed", left)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reportBacklog logs, per tier and per uplink, how many accepted messages
// wait in its queue, and what becomes of them: at start (when is set) they
// are being processed; at stop they are processed at the next start,
// unless the embedded broker is in memory and they are lost.
func (s *Supervisor) reportBacklog(ctx context.Context, adm *kadm.Client, when string) {
	for _, q := range s.queues() {
		n, err := unprocessed(ctx, adm, q.group, q.topic)
		switch {
		case err != nil:
			s.log.Warn("unprocessed messages unknown", q.key, q.name, "err", err)
		case when != "":
			if n > 0 {
				s.log.Info("accepted messages "+when, q.key, q.name, "unprocessed", n)
			}
		case n == 0:
			s.log.Info("every accepted message processed", q.key, q.name, "unprocessed", 0)
		case s.broker != nil && s.dataDir == "":
			s.log.Warn("accepted messages not processed; they are lost: the embedded broker kept them in memory (--ephemeral)", q.key, q.name, "unprocessed", n)
		case s.broker != nil:
			s.log.Info("accepted messages not processed yet; they will be processed at the next start", q.key, q.name, "unprocessed", n, "data_dir", s.dataDir)
		default:
			s.log.Info("accepted messages not processed yet; they stay in Kafka and will be processed at the next start", q.key, q.name, "unprocessed", n)
		}
	}
}

// unprocessed counts the records of topic past group's committed offsets:
// messages accepted for a tier that its connector has not finished. A
// partition the group never committed counts from its start. (kadm's Lag
// skips such partitions once the group has no members, as after a stop.)
func unprocessed(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("topic %s: start offsets: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("topic %s: end offsets: %w", topic, err)
	}
	commits, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return 0, fmt.Errorf("group %s: committed offsets: %w", group, err)
	}
	var n int64
	var errs []error
	ends.Each(func(end kadm.ListedOffset) {
		from := int64(0)
		if st, ok := starts.Lookup(topic, end.Partition); ok {
			from = st.Offset
		}
		if c, ok := commits.Lookup(topic, end.Partition); ok {
			if c.Err != nil {
				errs = append(errs, fmt.Errorf("group %s: %s[%d]: %w", group, topic, end.Partition, c.Err))
				return
			}
			if c.At >= 0 {
				from = max(from, c.At)
			}
		}
		n += max(end.Offset-from, 0)
	})
	return n, errors.Join(errs...)
}

// childGatherer reads a child's /metrics and labels every series with the
// child's name.
type childGatherer struct{ c *proc.Child }

func (g childGatherer) Gather() ([]*dto.MetricFamily, error) {
	url := g.c.BaseURL() + "/metrics"
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", g.c.Name(), err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", g.c.Name(), err)
	}
	name, label := "process", g.c.Name()
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		// Runtime metrics of every child would collide with the
		// supervisor's own; keep ddnn's.
		if !strings.HasPrefix(f.GetName(), "ddnn_") {
			continue
		}
		for _, m := range f.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: &name, Value: &label})
		}
		out = append(out, f)
	}
	return out, nil
}

// localServiceToken is .run/<name>/service.token under the working
// directory, made (mode 0600, in a directory only this user may enter) if
// it is missing. Several `ddnn up --site` starting at once agree on one:
// each writes a candidate and links it into place, and the first wins.
func localServiceToken(p *pipeline.Pipeline) (string, error) {
	dir, err := filepath.Abs(filepath.Join(".run", p.Name))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "service.token")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	os.Remove(tmp)
	if _, err := auth.WriteTokenFile(tmp); err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return path, nil
}
