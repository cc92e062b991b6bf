package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/bench"
	"github.com/ddnn-continuum/ddnn/internal/wan"
	"github.com/ddnn-continuum/ddnn/models"
)

const benchSynopsis = `bench -f FILE [--workload paper|constant|step|burst] [--protocol http|coap|kafka]
                  [--devices N] [--time-scale F] [--rate R] [--duration D] [--count N]
                  [--steps S] [--encoding raw|json] [--drain D] [--out DIR]
                  [--attach] [--compare] [--network FILE] [--json]

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

	p, err := loadPipeline(*file)
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
		if err := bench.CheckNetwork(p, spec, *protocol); err != nil {
			return fmt.Errorf("%w: --network: %v", errUsage, err)
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
		Pipeline: p, Target: bench.TargetPipeline, Protocol: *protocol, Encoding: *encoding, Workload: w,
		Samples: samples, Labels: ds.Labels, Drain: *drain,
		Progress: stderr, TTY: isTerminal(stderr),
	}
	if *workload == bench.WorkloadBurst {
		cfg.Observe = bench.ScaleDownWindow(p)
		fmt.Fprintf(stderr, "burst: watching replicas for %s after the last send (scale-down window)\n", cfg.Observe)
	}

	b := bench.Runner{File: *file, Out: *out, Attach: *attach, Compare: *compare, WAN: spec, Log: stderr}
	if !*compare {
		res, err := b.Run(ctx, cfg)
		if res != nil {
			if *asJSON {
				json.NewEncoder(stdout).Encode(res.Summary)
			} else {
				res.Print(stdout)
			}
		}
		return err
	}

	pipe, err := b.Run(ctx, cfg)
	if err != nil {
		if pipe != nil { // interrupted: the partial report
			pipe.Print(stdout)
		}
		return err
	}
	mcfg := cfg
	mcfg.Target = bench.TargetMonolith
	mono, err := b.Run(ctx, mcfg)
	if err != nil {
		if mono != nil {
			mono.Print(stdout)
		}
		return err
	}
	cmp := bench.Compare(pipe, mono)
	if *out != "" {
		if err := bench.WriteComparison(*out, cmp, pipe, mono); err != nil {
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
	cmp.Print(stdout)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
