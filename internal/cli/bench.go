package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/bench"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/models"
)

const benchSynopsis = `bench -f FILE [--workload paper|constant|step|burst] [--protocol http|coap|kafka]
                  [--devices N] [--time-scale F] [--rate R] [--duration D] [--count N]
                  [--out DIR] [--attach] [--compare] [--json]

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

By default bench starts the pipeline of -f (ddnn up) and stops it afterwards;
--attach runs against one already running. --compare runs the same workload
against the pipeline and against 'ddnn monolith' (all tiers in one process,
fed over Kafka) and reports both with their ratios.`

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
	devices := fs.Int("devices", 1, "simulated devices, each with its own connection")
	scale := fs.Float64("time-scale", 1, "multiply every rate (and divide every duration) by this")
	rate := fs.Float64("rate", 0, "total messages/s over all devices (constant, step, burst; default 100, 50, 1000)")
	duration := fs.Duration("duration", 0, "how long constant and step send (default 30s, 40s)")
	steps := fs.Int("steps", 4, "steps of a step workload")
	count := fs.Int("count", 0, "messages of a burst (default 3000)")
	out := fs.String("out", "", "write summary.json, samples.csv, the PNG plots and the pipeline's log into this directory")
	attach := fs.Bool("attach", false, "run against a pipeline already running instead of starting it")
	compare := fs.Bool("compare", false, "also run the workload against 'ddnn monolith' and report both")
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

	p, err := pipeline.Load(*file)
	if err != nil {
		return err
	}
	if err := p.CheckOneSite(); err != nil {
		return err
	}
	if p.Eval.Images == "" {
		return fmt.Errorf("%w: bench sends the pipeline's eval.images; set eval.images and eval.labels in %s", errUsage, *file)
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
		Pipeline: p, Target: "pipeline", Protocol: *protocol, Workload: w,
		Samples: samples, Labels: ds.Labels, Drain: *drain,
		AdminURL: "http://" + p.Admin.Listen, Progress: stderr, TTY: isTerminal(stderr),
	}
	if *workload == bench.WorkloadBurst {
		cfg.Observe = scaleDownWindow(p)
		fmt.Fprintf(stderr, "burst: watching replicas for %s after the last send (scale-down window)\n", cfg.Observe)
	}

	b := benchRun{file: *file, out: *out, attach: *attach, compare: *compare, stderr: stderr}
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

	if *protocol != bench.ProtocolKafka {
		fmt.Fprintf(stderr, "bench: the monolith has no funnel: its devices produce to Kafka, the pipeline's use %s\n", *protocol)
	}
	pipe, err := b.run(ctx, cfg)
	if err != nil {
		if pipe != nil { // interrupted: the partial report
			pipe.Print(stdout)
		}
		return err
	}
	mcfg := cfg
	mcfg.Target, mcfg.Protocol, mcfg.AdminURL = "monolith", bench.ProtocolKafka, ""
	mono, err := b.run(ctx, mcfg)
	if err != nil {
		if mono != nil {
			mono.Print(stdout)
		}
		return err
	}
	cmp := comparison(pipe.Summary, mono.Summary)
	if *out != "" {
		if err := writeJSON(filepath.Join(*out, "compare.json"), cmp); err != nil {
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
	printComparison(stdout, cmp)
	return nil
}

// benchRun starts what it measures (unless attached), runs and writes.
type benchRun struct {
	file    string
	out     string
	attach  bool
	compare bool // write into out/<target>
	stderr  io.Writer
}

// run measures cfg.Target ("pipeline": ddnn up; "monolith": ddnn monolith).
func (b benchRun) run(ctx context.Context, cfg bench.Config) (*bench.Result, error) {
	target := cfg.Target
	dir := b.out
	if dir != "" && b.compare {
		dir = filepath.Join(b.out, target)
	}
	if !b.attach {
		stop, err := b.start(ctx, target, cfg.Pipeline, dir)
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

// start runs `ddnn up` or `ddnn monolith` for the pipeline, waits until it
// is ready and returns how to stop it. Its output goes to dir/<target>.log
// (or a temporary file), whose tail is shown if it fails.
func (b benchRun) start(ctx context.Context, target string, p *pipeline.Pipeline, dir string) (func(), error) {
	for _, addr := range []string{p.Admin.Listen, p.Funnel.Listen} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("bench: %s is in use: is a pipeline already running? stop it, or use --attach to measure it", addr)
		}
		ln.Close()
	}
	logDir := dir
	if logDir == "" {
		logDir = os.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%s.log", p.Name, target))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// A measurement starts from an empty broker, whatever an earlier run
	// left in the pipeline's data directory.
	args := []string{"up", "-f", b.file, "--ephemeral"}
	if target == "monolith" {
		args = []string{"monolith", "-f", b.file}
	}
	c := proc.New(target, "http://"+p.Admin.Listen+"/readyz", logf, nil, args...)
	fmt.Fprintf(b.stderr, "bench: starting 'ddnn %s' (log: %s)\n", strings.Join(args, " "), logPath)
	if err := c.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	stop := func() {
		c.Stop(30 * time.Second)
		logf.Close()
	}
	if err := c.WaitReady(ctx, 90*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("bench: %w; its log ends:\n%s", err, tail(logPath, 15))
	}
	return stop, nil
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

func comparison(p, m bench.Summary) Comparison {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return Comparison{Pipeline: p, Monolith: m, Ratios: map[string]float64{
		"throughput_per_s": ratio(p.ThroughputPerS, m.ThroughputPerS),
		"elapsed_s":        ratio(p.ElapsedS, m.ElapsedS),
		"p50_ms":           ratio(p.All.P50, m.All.P50),
		"p95_ms":           ratio(p.All.P95, m.All.P95),
		"p99_ms":           ratio(p.All.P99, m.All.P99),
		"accuracy":         ratio(p.Accuracy, m.Accuracy),
	}}
}

func printComparison(w io.Writer, c Comparison) {
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
	row("accuracy", "accuracy", p.Accuracy, m.Accuracy)
	fmt.Fprintf(tw, "refused\t%d\t%d\t\t\n", p.Refused, m.Refused)
	fmt.Fprintf(tw, "lost (accepted, no result)\t%d\t%d\t\t\n", p.Lost, m.Lost)
	tw.Flush()
}
