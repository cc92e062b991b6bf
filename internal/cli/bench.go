package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/bench"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/wan"
	"github.com/ddnn-continuum/ddnn/models"
)

const benchSynopsis = `bench -f FILE [--workload paper|constant|step|burst] [--protocol http|coap|kafka]
                  [--devices N] [--time-scale F] [--rate R] [--duration D] [--count N]
                  [--out DIR] [--attach] [--compare] [--network FILE] [--json]

Simulated devices, each with its own connection, send the pipeline's labeled
test images on an open-loop schedule; the bench reads the results topic and
reports each message's round trip (send to result) per exit tier, lost and
duplicated results, accuracy, throughput and replicas per tier over time.

Workloads:
  paper     per device 100 messages at 1/s, then 100 at 2/s, 3/s and 4/s (208 s)
  constant  --rate R messages/s in total for --duration D
  step      --steps S steps of --duration D/S at R, 2R, … S·R messages/s in total
  burst     --count N messages at --rate R in total, then quiet until the
            scale-down window has passed (replicas rise and return)
--time-scale F multiplies every rate and divides every duration.

By default bench starts the pipeline of -f (ddnn up, every site) and stops it
afterwards; --attach runs against one already running. Devices send to the
first tier's site; results are read on the results site.

--compare runs the same workload, over the same protocol, against the
pipeline and against the cloud-only baseline (ddnn up --monolith: every tier
in one process on the last tier's site, fed by that site's funnel) and
reports both with their ratios.

--network FILE emulates a WAN (docs/wan.md): a proxy on the devices' link
(HTTP devices) and on every link between sites, with latency, jitter,
bandwidth and scheduled cuts from the first send. The report adds the bytes
and messages that crossed each link and, per cut, the round trips of the
messages sent during it against those sent before it.`

// benchDefaults are each workload's rate, duration and count unless set.
var benchDefaults = map[string]struct {
	rate     float64
	duration time.Duration
	count    int
}{
	bench.WorkloadPaper:    {},
	bench.WorkloadConstant: {rate: 100, duration: 30 * time.Second},
	bench.WorkloadStep:     {rate: 50, duration: 40 * time.Second},
	bench.WorkloadBurst:    {rate: 1000, count: 3000},
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", benchSynopsis, stderr)
	file := fileFlag(fs)
	workload := fs.String("workload", bench.WorkloadPaper, "paper, constant, step or burst")
	protocol := fs.String("protocol", bench.ProtocolHTTP, "how devices send: http, coap or kafka")
	encoding := fs.String("encoding", bench.EncodingRaw, "how devices encode a sample: raw (its elements) or json (the JSON ingest form; a JSON message on kafka)")
	devices := fs.Int("devices", 1, "simulated devices, each with its own connection")
	scale := fs.Float64("time-scale", 1, "multiply every rate (and divide every duration) by this")
	rate := fs.Float64("rate", 0, "total messages/s over all devices (constant, step, burst; default 100, 50, 1000)")
	duration := fs.Duration("duration", 0, "how long constant and step send (default 30s, 40s)")
	steps := fs.Int("steps", 4, "steps of a step workload")
	count := fs.Int("count", 0, "messages of a burst (default 3000)")
	out := fs.String("out", "", "write summary.json, samples.csv, the PNG plots and the pipeline's log into this directory")
	attach := fs.Bool("attach", false, "run against a pipeline already running instead of starting it")
	compare := fs.Bool("compare", false, "also run the workload against 'ddnn monolith' and report both")
	network := fs.String("network", "", "emulate the WAN of this network file (deploy/examples/wan.yaml): proxies on the devices' link and between sites, with latency, bandwidth and cuts")
	drain := fs.Duration("drain", 60*time.Second, "how long to wait for results after the last send")
	asJSON := fs.Bool("json", false, "print summary.json to stdout instead of the table")
	if err := parse(fs, args); err != nil {
		return err
	}
	def, ok := benchDefaults[*workload]
	if !ok {
		return fmt.Errorf("%w: --workload %q: want one of %v", errUsage, *workload, bench.Workloads)
	}
	if !slices.Contains(bench.Protocols, *protocol) {
		return fmt.Errorf("%w: --protocol %q: want one of %v", errUsage, *protocol, bench.Protocols)
	}
	if !slices.Contains(bench.Encodings, *encoding) {
		return fmt.Errorf("%w: --encoding %q: want one of %v", errUsage, *encoding, bench.Encodings)
	}
	if *compare && *attach {
		return fmt.Errorf("%w: --compare starts the pipeline and the monolith itself; drop --attach", errUsage)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *workload == bench.WorkloadPaper && (set["rate"] || set["duration"] || set["count"]) {
		return fmt.Errorf("%w: the paper workload has a fixed schedule; change it with --devices and --time-scale", errUsage)
	}
	w := bench.Workload{Kind: *workload, Devices: *devices, Rate: *rate, Duration: *duration, Steps: *steps, Count: *count, TimeScale: *scale}
	if !set["rate"] {
		w.Rate = def.rate
	}
	if !set["duration"] {
		w.Duration = def.duration
	}
	if !set["count"] {
		w.Count = def.count
	}
	if _, err := w.Schedule(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	if *network != "" && *attach {
		return fmt.Errorf("%w: --network routes the sites' links through its proxies, so bench must start the pipeline: drop --attach", errUsage)
	}

	p, err := pipeline.Load(*file)
	if err != nil {
		return err
	}
	if p.Eval.Images == "" {
		return fmt.Errorf("%w: bench sends the pipeline's eval.images; set eval.images and eval.labels in %s", errUsage, *file)
	}
	var spec *wan.Spec
	if *network != "" {
		if spec, err = wan.Load(*network); err != nil {
			return err
		}
		if err := checkNetwork(p, spec, *protocol); err != nil {
			return err
		}
	}
	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		return err
	}
	// The samples as a device sends them, in the pipeline's input dtype.
	msgs, err := models.Messages(p, ds)
	if err != nil {
		return err
	}
	samples := make([][]byte, len(msgs))
	for i := range msgs {
		samples[i] = msgs[i].Tensor.Data
	}
	cfg := bench.Config{
		Pipeline: p, Target: targetPipeline, Protocol: *protocol, Encoding: *encoding, Workload: w,
		Samples: samples, Labels: ds.Labels, Drain: *drain,
		Progress: stderr, TTY: isTerminal(stderr),
	}
	if *workload == bench.WorkloadBurst {
		cfg.Observe = scaleDownWindow(p)
		fmt.Fprintf(stderr, "burst: watching replicas for %s after the last send (scale-down window)\n", cfg.Observe)
	}

	b := benchRun{file: *file, out: *out, attach: *attach, compare: *compare, spec: spec, stderr: stderr}
	if !*compare {
		res, err := b.run(ctx, cfg)
		if res != nil {
			if *asJSON {
				json.NewEncoder(stdout).Encode(res.Summary)
			} else {
				res.Print(stdout)
			}
		}
		return err
	}

	pipe, err := b.run(ctx, cfg)
	if err != nil {
		if pipe != nil { // interrupted: the partial report
			pipe.Print(stdout)
		}
		return err
	}
	mcfg := cfg
	mcfg.Target = targetMonolith
	mono, err := b.run(ctx, mcfg)
	if err != nil {
		if mono != nil {
			mono.Print(stdout)
		}
		return err
	}
	cmp := comparison(pipe, mono)
	if *out != "" {
		if err := writeJSON(filepath.Join(*out, "compare.json"), cmp); err != nil {
			return err
		}
		if err := bench.PlotComparison(*out, pipe, mono); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(cmp)
	}
	pipe.Print(stdout)
	fmt.Fprintln(stdout)
	mono.Print(stdout)
	fmt.Fprintln(stdout)
	printComparison(stdout, cmp, pipe.TierOrder)
	return nil
}

// What a bench run measures: the pipeline (ddnn up), or the cloud-only
// baseline (ddnn up --monolith: every tier in one process on the last
// tier's site, fed by that site's funnel).
const (
	targetPipeline = "pipeline"
	targetMonolith = "monolith"
)

// checkNetwork refuses a network file the run cannot use: devices reach
// the proxy of their link over TCP, so only HTTP devices cross it (CoAP is
// UDP, and Kafka clients follow the broker's own advertised address).
func checkNetwork(p *pipeline.Pipeline, spec *wan.Spec, protocol string) error {
	sites := map[string]bool{bench.Devices: true}
	for _, s := range p.Sites() {
		sites[s.Name] = true
	}
	var errs []error
	for _, l := range spec.Links {
		for _, end := range []string{l.From, l.To} {
			if !sites[end] {
				errs = append(errs, fmt.Errorf("link %s: %q is neither %q nor a site of pipeline %q (%s)",
					l.Name(), end, bench.Devices, p.Name, strings.Join(siteNames(p), ", ")))
			}
		}
		if l.From == bench.Devices && protocol != bench.ProtocolHTTP {
			errs = append(errs, fmt.Errorf("link %s: devices cross an emulated link only over HTTP (CoAP is UDP, and Kafka clients connect to the broker's own address): use --protocol http", l.Name()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: --network: %v", errUsage, err)
	}
	return nil
}

func siteNames(p *pipeline.Pipeline) []string {
	var names []string
	for _, s := range p.Sites() {
		names = append(names, s.Name)
	}
	return names
}

// benchRun starts what it measures (unless attached), runs and writes.
type benchRun struct {
	file    string
	out     string
	attach  bool
	compare bool      // write into out/<target>
	spec    *wan.Spec // the emulated network, or nil
	stderr  io.Writer
}

// run measures cfg.Target ("pipeline": ddnn up; "monolith": ddnn up
// --monolith) across the network, if any.
func (b benchRun) run(ctx context.Context, cfg bench.Config) (*bench.Result, error) {
	target := cfg.Target
	dir := b.out
	if dir != "" && b.compare {
		dir = filepath.Join(b.out, target)
	}
	p := cfg.Pipeline
	if target == targetMonolith {
		if p = monolithPlacement(p); p == nil {
			return nil, fmt.Errorf("bench: pipeline %q cannot be placed on its last tier's site", cfg.Pipeline.Name)
		}
	}
	cfg.Pipeline = p
	sites := runningSites(p)
	if target == targetPipeline {
		cfg.AdminURLs = map[string]string{}
		for _, t := range p.Tiers {
			cfg.AdminURLs[t.Name] = "http://" + p.SiteOf(t.Name).Admin.Listen
		}
	}
	var upArgs []string
	if b.spec != nil {
		n, args, err := b.startNetwork(ctx, p, cfg.Protocol)
		if err != nil {
			return nil, err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.Net.Stop(sctx); err != nil {
				fmt.Fprintf(b.stderr, "bench: %v\n", err)
			}
		}()
		for _, s := range sites {
			n.Metrics = append(n.Metrics, "http://"+s.Admin.Listen+"/metrics")
		}
		cfg.Network, upArgs = n, args
		for i, f := range n.Flows {
			if f.From == bench.Devices && n.Routes[i] != nil {
				cfg.IngestAddr = n.Net.Addr(n.Routes[i][0])
			}
		}
	}
	if !b.attach {
		stop, err := b.start(ctx, target, sites, dir, upArgs)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	fmt.Fprintf(b.stderr, "bench: %s, %s over %s, %d devices\n", target, cfg.Workload.Kind, cfg.Protocol, cfg.Workload.Devices)
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		if !b.attach {
			return nil, err
		}
		return nil, fmt.Errorf("%w (is the pipeline running? start it with 'ddnn up -f %s', or drop --attach to let bench start it)", err, b.file)
	}
	if dir != "" {
		if err := res.Write(dir); err != nil {
			return res, fmt.Errorf("bench: writing %s: %w", dir, err)
		}
		fmt.Fprintf(b.stderr, "bench: wrote %s\n", strings.Join([]string{
			filepath.Join(dir, "summary.json"), "samples.csv", bench.PlotLatency, bench.PlotLatencyBox, bench.PlotThroughput, bench.PlotReplicas}, ", "))
	}
	if res.Summary.Interrupted {
		return res, errors.New("interrupted: the report is partial")
	}
	return res, nil
}

// monolithPlacement is p as ddnn up --monolith runs it: every tier on the
// last tier's site, the results where they were.
func monolithPlacement(p *pipeline.Pipeline) *pipeline.Pipeline {
	q := *p
	q.Tiers = slices.Clone(p.Tiers)
	if err := q.PlaceAllOn(p.SiteOf(p.Tiers[len(p.Tiers)-1].Name).Name); err != nil {
		return nil
	}
	return &q
}

// runningSites are the sites ddnn up runs for p: those with tiers, the
// results site, and the ends of its links.
func runningSites(p *pipeline.Pipeline) []pipeline.Site {
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

// startNetwork starts the network's proxies for the run's flows: the
// devices to the first tier's site (HTTP devices only) and every link of
// p. It returns the network and the ddnn up arguments that route each
// uplink through its link's proxy.
func (b benchRun) startNetwork(ctx context.Context, p *pipeline.Pipeline, protocol string) (*bench.Network, []string, error) {
	var flows []wan.Flow
	if protocol == bench.ProtocolHTTP {
		in := p.SiteOf(p.Tiers[0].Name)
		flows = append(flows, wan.Flow{From: bench.Devices, To: in.Name, Addr: in.Funnel.Listen})
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
	targets, routes, err := b.spec.Plan(flows)
	if err != nil {
		return nil, nil, err
	}
	n, err := wan.Start(ctx, b.spec, targets, wan.WithLogger(slog.New(slog.NewTextHandler(b.stderr, nil))))
	if err != nil {
		return nil, nil, err
	}
	var args []string
	for i, f := range flows {
		switch {
		case routes[i] == nil:
			fmt.Fprintf(b.stderr, "bench: no link of the network joins %s: not emulated\n", f.Name())
		case f.From != bench.Devices:
			args = append(args, "--link-url", f.Name()+"=http://"+n.Addr(routes[i][0]))
		}
	}
	return &bench.Network{Net: n, Spec: b.spec, Flows: flows, Routes: routes}, args, nil
}

// start runs `ddnn up` (with --monolith for the baseline) for the sites,
// waits until each is ready and returns how to stop it. Its output goes to
// dir/<name>-<target>.log (or a new temporary file), whose tail is shown
// if it fails.
func (b benchRun) start(ctx context.Context, target string, sites []pipeline.Site, dir string, upArgs []string) (func(), error) {
	for _, s := range sites {
		addrs := []string{s.Admin.Listen, s.Funnel.Listen}
		if len(s.Kafka.Brokers) == 0 {
			addrs = append(addrs, s.Kafka.EmbeddedListen)
		}
		for _, addr := range addrs {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, fmt.Errorf("bench: %s is in use: is a pipeline already running? stop it, or use --attach to measure it", addr)
			}
			ln.Close()
		}
	}
	var logf *os.File
	var err error
	if dir == "" {
		logf, err = os.CreateTemp("", "ddnn-bench-"+target+"-*.log")
	} else if err = os.MkdirAll(dir, 0o755); err == nil {
		logf, err = os.Create(filepath.Join(dir, target+".log"))
	}
	if err != nil {
		return nil, err
	}
	logPath := logf.Name()
	// A measurement starts from empty brokers, whatever an earlier run
	// left in the pipeline's data directories.
	args := []string{"up", "-f", b.file, "--ephemeral"}
	if target == targetMonolith {
		args = append(args, "--monolith")
	}
	args = append(args, upArgs...)
	c := proc.New(target, "http://"+sites[0].Admin.Listen+"/readyz", logf, nil, args...)
	fmt.Fprintf(b.stderr, "bench: starting 'ddnn %s' (log: %s)\n", strings.Join(args, " "), logPath)
	if err := c.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	stop := func() {
		c.Stop(30 * time.Second)
		logf.Close()
	}
	ready := c.WaitReady(ctx, 90*time.Second)
	for _, s := range sites[1:] {
		if ready == nil {
			ready = waitReady(ctx, "http://"+s.Admin.Listen+"/readyz", 30*time.Second)
		}
	}
	if ready != nil {
		stop()
		return nil, fmt.Errorf("bench: %w; its log ends:\n%s", ready, tail(logPath, 15))
	}
	return stop, nil
}

// waitReady polls url until it answers 200 or timeout passes.
func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s", url, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// scaleDownWindow is how long a burst watches after its last send: the
// longest stabilization window of a scaled tier, a few polls, and margin.
func scaleDownWindow(p *pipeline.Pipeline) time.Duration {
	var d time.Duration
	for _, t := range p.Tiers {
		if t.Replicas.Min != t.Replicas.Max {
			d = max(d, t.Scaling.StabilizationWindow+5*t.Scaling.PollInterval)
		}
	}
	return d + 5*time.Second
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Comparison is compare.json: both summaries and pipeline/monolith ratios.
type Comparison struct {
	Pipeline bench.Summary      `json:"pipeline"`
	Monolith bench.Summary      `json:"monolith"`
	Ratios   map[string]float64 `json:"ratios_pipeline_over_monolith"`
}

func comparison(pipe, mono *bench.Result) Comparison {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	p, m := pipe.Summary, mono.Summary
	c := Comparison{Pipeline: p, Monolith: m, Ratios: map[string]float64{
		"throughput_per_s": ratio(p.ThroughputPerS, m.ThroughputPerS),
		"elapsed_s":        ratio(p.ElapsedS, m.ElapsedS),
		"p50_ms":           ratio(p.All.P50, m.All.P50),
		"p95_ms":           ratio(p.All.P95, m.All.P95),
		"p99_ms":           ratio(p.All.P99, m.All.P99),
		"accuracy":         ratio(p.Accuracy, m.Accuracy),
	}}
	if len(p.Links) > 0 {
		c.Ratios["wan_bytes"] = ratio(float64(p.WANBytes), float64(m.WANBytes))
	}
	return c
}

// printComparison writes both sides side by side: totals, the round trip
// per exit tier, and the bytes on every emulated link.
func printComparison(w io.Writer, c Comparison, tiers []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tpipeline\tmonolith\tpipeline/monolith\t")
	row := func(name, key string, a, b float64) {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t\n", name, a, b, c.Ratios[key])
	}
	p, m := c.Pipeline, c.Monolith
	row("throughput results/s", "throughput_per_s", p.ThroughputPerS, m.ThroughputPerS)
	row("elapsed s", "elapsed_s", p.ElapsedS, m.ElapsedS)
	row("round trip p50 ms", "p50_ms", p.All.P50, m.All.P50)
	row("round trip p95 ms", "p95_ms", p.All.P95, m.All.P95)
	row("round trip p99 ms", "p99_ms", p.All.P99, m.All.P99)
	for _, t := range tiers {
		pt, mt := p.Tiers[t], m.Tiers[t]
		fmt.Fprintf(tw, "exit %s: results\t%d\t%d\t\t\n", t, pt.Count, mt.Count)
		fmt.Fprintf(tw, "exit %s: p50 / p99 ms\t%.1f / %.1f\t%.1f / %.1f\t\t\n", t, pt.P50, pt.P99, mt.P50, mt.P99)
	}
	row("accuracy", "accuracy", p.Accuracy, m.Accuracy)
	fmt.Fprintf(tw, "refused\t%d\t%d\t\t\n", p.Refused, m.Refused)
	fmt.Fprintf(tw, "lost (accepted, no result)\t%d\t%d\t\t\n", p.Lost, m.Lost)
	if len(p.Links) > 0 {
		fmt.Fprintf(tw, "WAN bytes (between sites)\t%d\t%d\t%.2f\t\n", p.WANBytes, m.WANBytes, c.Ratios["wan_bytes"])
		bytesOn := func(ls []bench.LinkSummary, name string) int64 {
			for _, l := range ls {
				if l.From+"->"+l.To == name {
					return l.Bytes
				}
			}
			return 0
		}
		for _, l := range p.Links {
			name := l.From + "->" + l.To
			fmt.Fprintf(tw, "bytes %s\t%d\t%d\t\t\n", name, l.Bytes, bytesOn(m.Links, name))
		}
	}
	tw.Flush()
}
