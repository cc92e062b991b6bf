package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/wan"
	"github.com/ddnn-continuum/ddnn/models"
)

// Synopsis is ddnn bench's usage line and help.
const Synopsis = `bench -f FILE [--workload paper|constant|step|burst] [--protocol http|coap|kafka]
                  [--devices N] [--time-scale F] [--rate R] [--duration D] [--count N]
                  [--steps S] [--encoding raw|json] [--wait D] [--drain D]
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

--wait D makes HTTP and CoAP devices ask the funnel to wait up to D for each
result (POST /v1/ingest?wait=D) and adds the synchronous round trip, send to
the answer that carries the result, to the report; the round trips per exit
tier stay send to the result read from the results topic.

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

// workloadDefaults are each workload's rate, duration and count unless set.
var workloadDefaults = map[string]struct {
	rate     float64
	duration time.Duration
	count    int
}{
	WorkloadPaper:    {},
	WorkloadConstant: {rate: 100, duration: 30 * time.Second},
	WorkloadStep:     {rate: 50, duration: 40 * time.Second},
	WorkloadBurst:    {rate: 1000, count: 3000},
}

// Command is ddnn bench with its flags.
type Command struct {
	File, Workload, Protocol, Encoding string
	Devices, Steps, Count              int
	TimeScale, Rate                    float64
	Duration, Drain, Wait              time.Duration
	Out, Network                       string
	Attach, Compare, JSON              bool
}

// Flags binds o to ddnn bench's flags. Rate, Duration and Count left 0
// take the workload's defaults.
func (o *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &o.File)
	fs.StringVar(&o.Workload, "workload", WorkloadPaper, "paper, constant, step or burst")
	fs.StringVar(&o.Protocol, "protocol", ProtocolHTTP, "how devices send: http, coap or kafka")
	fs.StringVar(&o.Encoding, "encoding", EncodingRaw, "how devices encode a sample: raw (its elements) or json (the JSON ingest form; a JSON message on kafka)")
	fs.IntVar(&o.Devices, "devices", 1, "simulated devices, each with its own connection")
	fs.Float64Var(&o.TimeScale, "time-scale", 1, "multiply every rate (and divide every duration) by this")
	fs.Float64Var(&o.Rate, "rate", 0, "total messages/s over all devices (constant, step, burst; default 100, 50, 1000)")
	fs.DurationVar(&o.Duration, "duration", 0, "how long constant and step send (default 30s, 40s)")
	fs.IntVar(&o.Steps, "steps", 4, "steps of a step workload")
	fs.IntVar(&o.Count, "count", 0, "messages of a burst (default 3000)")
	fs.StringVar(&o.Out, "out", "", "write summary.json, samples.csv, the PNG plots and the pipeline's log into this directory")
	fs.BoolVar(&o.Attach, "attach", false, "run against a pipeline already running instead of starting it")
	fs.BoolVar(&o.Compare, "compare", false, "also run the workload against 'ddnn monolith' and report both")
	fs.StringVar(&o.Network, "network", "", "emulate the WAN of this network file (deploy/examples/wan.yaml): proxies on the devices' link and between sites, with latency, bandwidth and cuts")
	fs.DurationVar(&o.Wait, "wait", 0, "devices ask the funnel to wait up to this for each result (?wait=; http and coap) and the report adds the synchronous round trip")
	fs.DurationVar(&o.Drain, "drain", 60*time.Second, "how long to wait for results after the last send")
	fs.BoolVar(&o.JSON, "json", false, "print summary.json to stdout instead of the table")
}

// workload checks o's flags and is the workload they describe, with the
// workload's defaults for what is not set.
func (o *Command) workload() (Workload, error) {
	def, ok := workloadDefaults[o.Workload]
	switch {
	case !ok:
		return Workload{}, command.Usagef("--workload %q: want one of %v", o.Workload, Workloads)
	case !slices.Contains(Protocols, o.Protocol):
		return Workload{}, command.Usagef("--protocol %q: want one of %v", o.Protocol, Protocols)
	case !slices.Contains(Encodings, o.Encoding):
		return Workload{}, command.Usagef("--encoding %q: want one of %v", o.Encoding, Encodings)
	case o.Compare && o.Attach:
		return Workload{}, command.Usagef("--compare starts the pipeline and the monolith itself; drop --attach")
	case o.Network != "" && o.Attach:
		return Workload{}, command.Usagef("--network routes the sites' links through its proxies, so bench must start the pipeline: drop --attach")
	case o.Wait < 0 || o.Wait >= sendTimeout:
		return Workload{}, command.Usagef("--wait %s: want more than 0 and under a send's timeout of %s (the funnel's funnel.wait.max bounds it too)", o.Wait, sendTimeout)
	case o.Wait > 0 && o.Protocol == ProtocolKafka:
		return Workload{}, command.Usagef("--wait: a device that produces to Kafka gets no answer to wait for; use --protocol http or coap")
	case o.Workload == WorkloadPaper && (o.Rate != 0 || o.Duration != 0 || o.Count != 0):
		return Workload{}, command.Usagef("the paper workload has a fixed schedule; change it with --devices and --time-scale")
	}
	w := Workload{Kind: o.Workload, Devices: o.Devices, Rate: o.Rate, Duration: o.Duration, Steps: o.Steps, Count: o.Count, TimeScale: o.TimeScale}
	if w.Rate == 0 {
		w.Rate = def.rate
	}
	if w.Duration == 0 {
		w.Duration = def.duration
	}
	if w.Count == 0 {
		w.Count = def.count
	}
	if _, err := w.Schedule(); err != nil {
		return w, command.Usagef("%v", err)
	}
	return w, nil
}

// Run runs the bench o describes and prints its report to stdout;
// progress goes to stderr.
func (o *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	w, err := o.workload()
	if err != nil {
		return err
	}
	p, err := command.LoadPipeline(o.File)
	if err != nil {
		return err
	}
	if p.Eval.Images == "" {
		return command.Usagef("bench sends the pipeline's eval.images; set eval.images and eval.labels in %s", o.File)
	}
	var spec *wan.Spec
	if o.Network != "" {
		if spec, err = wan.Load(o.Network); err != nil {
			return err
		}
		if err := CheckNetwork(p, spec, o.Protocol); err != nil {
			return command.Usagef("--network: %v", err)
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
	cfg := Config{
		Pipeline: p, Target: TargetPipeline, Protocol: o.Protocol, Encoding: o.Encoding, Workload: w,
		Samples: samples, Labels: ds.Labels, Drain: o.Drain, Wait: o.Wait,
		Progress: stderr, TTY: command.IsTerminal(stderr),
	}
	if o.Workload == WorkloadBurst {
		cfg.Observe = ScaleDownWindow(p)
		fmt.Fprintf(stderr, "burst: watching replicas for %s after the last send (scale-down window)\n", cfg.Observe)
	}
	b := Runner{File: o.File, Out: o.Out, Attach: o.Attach, Compare: o.Compare, WAN: spec, Log: stderr}
	pipe, err := b.Run(ctx, cfg)
	if !o.Compare || err != nil {
		if pipe != nil { // on an error, the partial report
			o.print(stdout, pipe)
		}
		return err
	}
	cfg.Target = TargetMonolith
	mono, err := b.Run(ctx, cfg)
	if err != nil {
		if mono != nil {
			o.print(stdout, mono)
		}
		return err
	}
	cmp := Compare(pipe, mono)
	if o.Out != "" {
		if err := WriteComparison(o.Out, cmp, pipe, mono); err != nil {
			return err
		}
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(cmp)
	}
	pipe.Print(stdout)
	fmt.Fprintln(stdout)
	mono.Print(stdout)
	fmt.Fprintln(stdout)
	cmp.Print(stdout)
	return nil
}

// print writes one run's report, as JSON with --json.
func (o *Command) print(w io.Writer, r *Result) {
	if o.JSON {
		json.NewEncoder(w).Encode(r.Summary)
		return
	}
	r.Print(w)
}
