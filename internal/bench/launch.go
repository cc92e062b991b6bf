package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/wan"
)

// What a bench run measures: the pipeline (ddnn up), or the cloud-only
// baseline (ddnn up --monolith: every tier in one process on the last
// tier's site, fed by that site's funnel).
const (
	TargetPipeline = "pipeline"
	TargetMonolith = "monolith"
)

// Runner measures one target at a time: it emulates the network (if any),
// starts what it measures (unless attached), runs the workload, writes the
// reports and stops what it started.
type Runner struct {
	// File is the pipeline YAML `ddnn up -f` runs.
	File string
	// Out is where the reports and ddnn up's log go ("" writes no reports
	// and logs to a temporary file); with Compare, into Out/<target>.
	Out     string
	Compare bool
	// Attach measures a pipeline already running instead of starting it.
	Attach bool
	// WAN is the network file to emulate (--network), or nil: Run starts
	// its proxies and routes the devices and the sites' uplinks through
	// them.
	WAN *wan.Spec
	// Log receives what the runner does and the proxies' log (nil
	// discards it).
	Log io.Writer
}

// Run measures cfg.Target (TargetPipeline or TargetMonolith) with cfg's
// workload. An interrupted run returns its partial result with an error.
func (r Runner) Run(ctx context.Context, cfg Config) (*Result, error) {
	log := r.Log
	if log == nil {
		log = io.Discard
	}
	target := cfg.Target
	dir := r.Out
	if dir != "" && r.Compare {
		dir = filepath.Join(r.Out, target)
	}
	p := cfg.Pipeline
	if target == TargetMonolith {
		if p = MonolithPlacement(p); p == nil {
			return nil, fmt.Errorf("bench: pipeline %q cannot be placed on its last tier's site", cfg.Pipeline.Name)
		}
	}
	cfg.Pipeline = p
	sites := RunningSites(p)
	if target == TargetPipeline {
		cfg.AdminURLs = map[string]string{}
		for _, t := range p.Tiers {
			cfg.AdminURLs[t.Name] = "http://" + p.SiteOf(t.Name).Admin.Listen
		}
	}
	var upArgs []string
	if r.WAN != nil {
		n, args, err := startNetwork(ctx, r.WAN, p, cfg.Protocol, log)
		if err != nil {
			return nil, err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.Net.Stop(sctx); err != nil {
				fmt.Fprintf(log, "bench: %v\n", err)
			}
		}()
		for _, s := range sites {
			n.Metrics = append(n.Metrics, "http://"+s.Admin.Listen+"/metrics")
		}
		cfg.Network, upArgs = n, args
		for i, f := range n.Flows {
			if f.From == Devices && n.Routes[i] != nil {
				cfg.IngestAddr = n.Net.Addr(n.Routes[i][0])
			}
		}
	}
	if !r.Attach {
		up, err := Start(ctx, Launch{File: r.File, Target: target, Sites: sites, LogDir: dir, Args: upArgs, Log: log})
		if err != nil {
			return nil, err
		}
		defer up.Stop()
	}
	fmt.Fprintf(log, "bench: %s, %s over %s, %s\n", target, cfg.Workload.Kind, cfg.Protocol, devices(cfg.Workload.Devices))
	res, err := Run(ctx, cfg)
	if err != nil {
		if !r.Attach {
			return nil, err
		}
		return nil, fmt.Errorf("%w (is the pipeline running? start it with 'ddnn up -f %s', or drop --attach to let bench start it)", err, r.File)
	}
	if dir != "" {
		if err := res.Write(dir); err != nil {
			return res, fmt.Errorf("bench: writing %s: %w", dir, err)
		}
		fmt.Fprintf(log, "bench: wrote %s\n", strings.Join(append([]string{filepath.Join(dir, "summary.json"), "samples.csv"}, res.Plots...), ", "))
		if len(res.Unplotted) > 0 {
			fmt.Fprintf(log, "bench: not drawn, no data: %s\n", strings.Join(res.Unplotted, "; "))
		}
	}
	if res.Summary.Interrupted {
		return res, errors.New("interrupted: the report is partial")
	}
	return res, nil
}

// MonolithPlacement is p as ddnn up --monolith runs it: every tier on the
// last tier's site, the results where they were. It is nil when the tiers
// cannot be placed there.
func MonolithPlacement(p *pipeline.Pipeline) *pipeline.Pipeline {
	q := *p
	q.Tiers = slices.Clone(p.Tiers)
	if err := q.PlaceAllOn(p.SiteOf(p.Tiers[len(p.Tiers)-1].Name).Name); err != nil {
		return nil
	}
	return &q
}

// RunningSites are the sites ddnn up runs for p, in p's order: those with
// tiers, the results site, and the ends of its links.
func RunningSites(p *pipeline.Pipeline) []pipeline.Site {
	used := map[string]bool{p.ResultsSite().Name: true}
	for _, t := range p.Tiers {
		used[p.SiteOf(t.Name).Name] = true
	}
	for _, l := range p.Links() {
		used[l.From], used[l.To] = true, true
	}
	var sites []pipeline.Site
	for _, s := range p.Sites() {
		if used[s.Name] {
			sites = append(sites, s)
		}
	}
	return sites
}

// CheckNetwork refuses a network file a run over protocol cannot use: a
// link must join the devices or sites of p, and devices reach the proxy of
// their link over TCP, so only HTTP devices cross it (CoAP is UDP, and
// Kafka clients follow the broker's own advertised address). It reports
// every problem.
func CheckNetwork(p *pipeline.Pipeline, spec *wan.Spec, protocol string) error {
	sites := map[string]bool{Devices: true}
	var names []string
	for _, s := range p.Sites() {
		sites[s.Name] = true
		names = append(names, s.Name)
	}
	var errs []error
	for _, l := range spec.Links {
		for _, end := range []string{l.From, l.To} {
			if !sites[end] {
				errs = append(errs, fmt.Errorf("link %s: %q is neither %q nor a site of pipeline %q (%s)",
					l.Name(), end, Devices, p.Name, strings.Join(names, ", ")))
			}
		}
		if l.From == Devices && protocol != ProtocolHTTP {
			errs = append(errs, fmt.Errorf("link %s: devices cross an emulated link only over HTTP (CoAP is UDP, and Kafka clients connect to the broker's own address): use --protocol http", l.Name()))
		}
	}
	return errors.Join(errs...)
}

// ScaleDownWindow is how long a burst watches after its last send: the
// longest stabilization window of a scaled tier, a few polls, and margin.
func ScaleDownWindow(p *pipeline.Pipeline) time.Duration {
	var d time.Duration
	for _, t := range p.Tiers {
		if t.Replicas.Min != t.Replicas.Max {
			d = max(d, t.Scaling.StabilizationWindow+5*t.Scaling.PollInterval)
		}
	}
	return d + 5*time.Second
}

// startNetwork starts the network's proxies for the run's flows: the
// devices to the first tier's site (HTTP devices only) and every link of
// p. It returns the network and the ddnn up arguments that route each
// uplink through its link's proxy.
func startNetwork(ctx context.Context, spec *wan.Spec, p *pipeline.Pipeline, protocol string, log io.Writer) (*Network, []string, error) {
	var flows []wan.Flow
	if protocol == ProtocolHTTP {
		in := p.SiteOf(p.Tiers[0].Name)
		flows = append(flows, wan.Flow{From: Devices, To: in.Name, Addr: in.Funnel.Listen})
	}
	for _, l := range p.Links() {
		to, err := p.Site(l.To)
		if err != nil {
			return nil, nil, err
		}
		u, err := url.Parse(to.Funnel.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("site %s: funnel.url: %w", l.To, err)
		}
		flows = append(flows, wan.Flow{From: l.From, To: l.To, Addr: u.Host})
	}
	targets, routes, err := spec.Plan(flows)
	if err != nil {
		return nil, nil, err
	}
	n, err := wan.Start(ctx, spec, targets, wan.WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	if err != nil {
		return nil, nil, err
	}
	var args []string
	for i, f := range flows {
		switch {
		case routes[i] == nil:
			fmt.Fprintf(log, "bench: no link of the network joins %s: not emulated\n", f.Name())
		case f.From != Devices:
			args = append(args, "--link-url", f.Name()+"=http://"+n.Addr(routes[i][0]))
		}
	}
	return &Network{Net: n, Spec: spec, Flows: flows, Routes: routes}, args, nil
}

// Readiness bounds of a started ddnn up: its first site starts the broker
// and every child; each further site is then given a shorter while.
const (
	firstSiteReady = 90 * time.Second
	siteReady      = 30 * time.Second
)

// Launch is a `ddnn up` for the bench to start.
type Launch struct {
	// File is the pipeline YAML; Target TargetPipeline or TargetMonolith
	// (ddnn up --monolith).
	File   string
	Target string
	// Sites are the sites it runs (RunningSites); their admin, funnel and
	// embedded broker addresses must be free, and each site's /readyz is
	// awaited in turn.
	Sites []pipeline.Site
	// LogDir receives its output as <target>.log ("" for a new temporary
	// file).
	LogDir string
	// Args are more ddnn up arguments (--link-url ...).
	Args []string
	// Log receives what Start does (nil discards it).
	Log io.Writer
	// ReadyTimeout bounds the wait for each site's readiness (default 90s
	// for the first, 30s for each further one).
	ReadyTimeout time.Duration
}

// Up is a `ddnn up` the bench started.
type Up struct {
	child *proc.Child
	logf  *os.File
}

// Start checks that the sites' addresses are free, starts `ddnn up` (the
// running binary) with its output in a log file, and waits until every
// site is ready. If one is not, it stops the process and its error ends
// with the log's last lines.
func Start(ctx context.Context, l Launch) (*Up, error) {
	if len(l.Sites) == 0 {
		return nil, errors.New("bench: no site to start")
	}
	if err := checkFree(l.Sites); err != nil {
		return nil, err
	}
	log := l.Log
	if log == nil {
		log = io.Discard
	}
	var logf *os.File
	var err error
	if l.LogDir == "" {
		logf, err = os.CreateTemp("", "ddnn-bench-"+l.Target+"-*.log")
	} else if err = os.MkdirAll(l.LogDir, 0o755); err == nil {
		logf, err = os.Create(filepath.Join(l.LogDir, l.Target+".log"))
	}
	if err != nil {
		return nil, err
	}
	// A measurement starts from empty brokers, whatever an earlier run
	// left in the pipeline's data directories.
	args := []string{"up", "-f", l.File, "--ephemeral"}
	if l.Target == TargetMonolith {
		args = append(args, "--monolith")
	}
	args = append(args, l.Args...)
	u := &Up{child: proc.New(l.Target, "http://"+l.Sites[0].Admin.Listen+"/readyz", logf, nil, args...), logf: logf}
	fmt.Fprintf(log, "bench: starting 'ddnn %s' (log: %s)\n", strings.Join(args, " "), logf.Name())
	if err := u.child.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	first, further := firstSiteReady, siteReady
	if l.ReadyTimeout > 0 {
		first, further = l.ReadyTimeout, l.ReadyTimeout
	}
	ready := u.child.WaitReady(ctx, first)
	for _, s := range l.Sites[1:] {
		if ready == nil {
			ready = u.child.WaitReadyAt(ctx, "http://"+s.Admin.Listen+"/readyz", further)
		}
	}
	if ready != nil {
		u.Stop()
		return nil, fmt.Errorf("bench: %w; its log ends:\n%s", ready, tail(logf.Name(), 15))
	}
	return u, nil
}

// LogPath is the file ddnn up's output goes to.
func (u *Up) LogPath() string { return u.logf.Name() }

// PID is ddnn up's process id.
func (u *Up) PID() int { return u.child.PID() }

// Stop stops ddnn up (SIGTERM, then SIGKILL after 30s) and closes its log.
func (u *Up) Stop() {
	u.child.Stop(30 * time.Second)
	u.logf.Close()
}

// checkFree fails on the first address of the sites (admin, funnel, and
// the embedded broker of a site without brokers) something already
// listens on: a pipeline still running.
func checkFree(sites []pipeline.Site) error {
	for _, s := range sites {
		addrs := []string{s.Admin.Listen, s.Funnel.Listen}
		if len(s.Kafka.Brokers) == 0 {
			addrs = append(addrs, s.Kafka.EmbeddedListen)
		}
		for _, addr := range addrs {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("bench: %s is in use: is a pipeline already running? stop it, or use --attach to measure it", addr)
			}
			ln.Close()
		}
	}
	return nil
}

// tail returns the last n lines of the file at path ("" when it cannot be
// read).
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
