// Package bench owns `ddnn bench`: simulated devices send labeled test
// images to a pipeline over HTTP, CoAP or Kafka on an open-loop schedule (the
// source paper's per-device workload, a constant rate, steps or a burst); the
// bench reads the results topic and reports each message's round trip from
// its send until its result reaches the bench's consumer, per exit tier;
// sends the pipeline refused (by reason), accepted messages that never got
// a result (lost) and duplicated results; accuracy, throughput, and the
// replicas each tier ran over time. Reports are a summary table,
// summary.json, samples.csv and PNG plots.
//
// Open loop: send times come from the schedule, not from responses; a
// device sends from a pool of goroutines on its connection that grows to
// as many sends as it has in flight (at most Config.MaxInFlight). The bench talks
// to a pipeline only through its public surfaces: the funnel (HTTP, CoAP),
// the first tier's topic, the results topic, and the supervisor's replica
// lists.
//
// Run measures a pipeline that runs. A Runner also starts and stops what it
// measures: `ddnn up` (or `ddnn up --monolith`, the cloud-only baseline) as
// a child of the running binary (Start), after checking that the sites'
// addresses are free and until every site is ready, and the emulated WAN in
// front of it; Compare sets a pipeline's result against the monolith's.
// Flags and printing belong to internal/cli.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Config is one bench run.
type Config struct {
	Pipeline *pipeline.Pipeline
	// Target names what runs the pipeline in the report: "pipeline" or
	// "monolith".
	Target   string
	Protocol string
	// Encoding is how devices send a sample: EncodingRaw (default) or
	// EncodingJSON.
	Encoding string
	Workload Workload
	// Samples and Labels are the images to send, cycled.
	Samples [][]byte
	Labels  []int
	// Drain bounds the wait for results after the last send.
	Drain time.Duration
	// Observe keeps sampling replicas until this long after the last send
	// (a burst's scale-down).
	Observe time.Duration
	// AdminURLs maps a tier to the admin base URL of the supervisor that
	// runs it (its site's), for replica lists; a tier without one has no
	// replicas in the report.
	AdminURLs map[string]string
	// IngestAddr, when set, is the host:port HTTP devices post to instead
	// of the funnel of the first tier's site: the devices' link of a
	// Network.
	IngestAddr string
	// Network, when set, is the emulated WAN the run crosses: its cuts
	// run from the first send, and the report gains what crossed each
	// link and the round trips around each cut.
	Network *Network
	// Progress receives the progress bar (nil: none); TTY redraws it in
	// place, otherwise a line every 5 s.
	Progress io.Writer
	TTY      bool
	// MaxInFlight bounds a device's outstanding sends (default 256); a send
	// that has to wait for one is late, which the report counts.
	MaxInFlight int
	// Wait, when set, makes HTTP and CoAP devices ask the funnel to wait
	// that long for each result (?wait=): a send answered with its
	// result measures the synchronous round trip (Summary.Sync).
	Wait time.Duration
}

// sendState is what happened to one send; only its sender writes it.
type sendState struct {
	// sent is when the schedule released it, from the start: a send that
	// then waits for a free in-flight slot counts the wait in its round
	// trip, so an overloaded pipeline cannot hide behind a slow device.
	sent time.Duration
	ack  time.Duration // sent to acceptance or refusal
	done bool
	// answered says the funnel's answer carried the result (Config.Wait):
	// ack is then the synchronous round trip.
	answered bool
	// refused is why the pipeline did not accept it ("" when accepted),
	// err the whole error.
	refused, err string
}

// resultState is the first result of a message and how many came, and
// whether the pipeline accepted its send (guarded by run.mu).
type resultState struct {
	n        int
	tier     string
	class    int
	at       time.Time // when the bench's consumer got it
	hops     []wire.Hop
	accepted bool
}

// run is one bench run's shared state.
type run struct {
	cfg    Config
	prefix string
	sends  []Send
	start  time.Time

	sent     []sendState
	nsent    atomic.Int64
	nacked   atomic.Int64
	nrefused atomic.Int64
	late     atomic.Int64

	mu      sync.Mutex
	results []resultState
	// awaited counts the accepted messages without a result yet: the
	// drain waits for it to reach 0. Counting results instead would let
	// a result of a refused send (one the funnel took though the answer
	// failed) stand for an accepted message's missing one.
	awaited  int
	got      chan struct{} // a result or an acceptance changed awaited
	nresults atomic.Int64
	replicas map[string][]ReplicaPoint // per tier
}

// newRun is the state of a run of cfg that sends sends.
func newRun(cfg Config, sends []Send) *run {
	return &run{
		cfg:      cfg,
		prefix:   "b" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-",
		sends:    sends,
		sent:     make([]sendState, len(sends)),
		results:  make([]resultState, len(sends)),
		got:      make(chan struct{}, 1),
		replicas: map[string][]ReplicaPoint{},
	}
}

// Run drives the workload and returns its report. When ctx ends early it
// stops sending, waits briefly for results in flight, and returns the
// partial report with Interrupted set.
//
// Devices send to the first tier's site, and results are read on the
// results site: with sites: they may be two different sites.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	ingest, err := cfg.Pipeline.OnTierSite(cfg.Pipeline.Tiers[0].Name)
	if err != nil {
		return nil, err
	}
	results, err := cfg.Pipeline.OnSite(cfg.Pipeline.ResultsSite().Name)
	if err != nil {
		return nil, err
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 256
	}
	sends, err := cfg.Workload.Schedule()
	if err != nil {
		return nil, err
	}
	r := newRun(cfg, sends)

	// Reach the pipeline before anything is sent: fail fast and clearly.
	consumer, err := r.resultsConsumer(ctx, results)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	devices := make([]device, cfg.Workload.Devices)
	defer func() {
		for _, d := range devices {
			if d != nil {
				d.close()
			}
		}
	}()
	for i := range devices {
		if devices[i], err = dial(ingest, cfg.Protocol, cfg.Encoding, cfg.IngestAddr, i, cfg.Wait); err != nil {
			return nil, fmt.Errorf("bench: device %d: %w", i, err)
		}
	}
	if err := probe(ctx, devices[0], cfg.Samples[0]); err != nil {
		return nil, fmt.Errorf("bench: the pipeline does not accept messages over %s: %w", cfg.Protocol, err)
	}

	// Results and replicas are watched past the user's ctx, so an
	// interrupted run still sees what was in flight.
	r.start = time.Now()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	watchers.Add(1)
	go func() { defer watchers.Done(); r.collect(watchCtx, consumer) }()
	if len(cfg.AdminURLs) > 0 {
		watchers.Add(1)
		go func() { defer watchers.Done(); r.sampleReplicas(watchCtx) }()
	}
	if cfg.Network != nil {
		watchers.Add(1)
		go func() { defer watchers.Done(); cfg.Network.Net.Run(watchCtx) }()
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() { defer close(progressDone); r.progress(stopProgress) }()

	r.sendAll(ctx, devices)

	interrupted := r.drain(ctx, cfg.Drain)
	for until := r.start.Add(Length(sends) + cfg.Observe); !interrupted && time.Now().Before(until); {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	interrupted = interrupted || ctx.Err() != nil
	stopWatch()
	watchers.Wait()
	close(stopProgress)
	<-progressDone
	return r.result(interrupted), nil
}

// probe sends one message that is not measured: the pipeline must take it.
func probe(ctx context.Context, d device, sample []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := d.send(ctx, "bench-probe-"+strconv.FormatInt(time.Now().UnixNano(), 36), sample)
	return err
}

// resultsConsumer reads the results topic on site (the results site) from
// its current end, partition by partition, so nothing of this run is
// missed and nothing earlier read.
func (r *run) resultsConsumer(ctx context.Context, site *pipeline.SiteView) (*kgo.Client, error) {
	p := site.Pipeline
	cl, err := kafka.NewClient(&site.Kafka, "bench", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(lctx, p.ResultsTopic())
	cl.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within 5s")
		}
		return nil, fmt.Errorf("bench: kafka %v unreachable or without topic %s: %w", site.Kafka.SeedBrokers(), p.ResultsTopic(), err)
	}
	from := map[string]map[int32]kgo.Offset{p.ResultsTopic(): {}}
	ends.Each(func(o kadm.ListedOffset) { from[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	return kafka.NewClient(&site.Kafka, "bench", nil, nil, kgo.ConsumePartitions(from))
}

// collect records the results of this run's messages.
func (r *run) collect(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		// The round trip ends when the result reaches a consumer: record
		// timestamps have only millisecond resolution.
		now := time.Now()
		for _, rec := range fs.Records() {
			res, err := wire.DecodeResult(rec.Value)
			if err != nil || len(res.ID) <= len(r.prefix) || res.ID[:len(r.prefix)] != r.prefix {
				continue
			}
			i, err := strconv.Atoi(res.ID[len(r.prefix):])
			if err != nil || i < 0 || i >= len(r.results) {
				continue
			}
			r.gotResult(i, res, now)
		}
	}
}

// gotResult records a result of message i that reached the consumer at
// now.
func (r *run) gotResult(i int, res wire.Result, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.results[i]
	s.n++
	if s.n > 1 {
		return
	}
	s.tier, s.class, s.at, s.hops = res.Tier, res.Class, now, res.Hops
	r.nresults.Add(1)
	if s.accepted {
		r.awaited--
		r.changed()
	}
}

// accepted records that the pipeline accepted message i's send.
func (r *run) accepted(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.results[i]
	s.accepted = true
	if s.n == 0 { // its result may have come before the answer
		r.awaited++
		r.changed()
	}
}

// changed wakes the drain; r.mu is held.
func (r *run) changed() {
	select {
	case r.got <- struct{}{}:
	default:
	}
}

// drain waits, once every send is done, until every accepted message has
// a result or wait passed; when ctx ends (at once or meanwhile) it waits
// 2s more at most. It reports whether ctx ended.
func (r *run) drain(ctx context.Context, wait time.Duration) (interrupted bool) {
	interrupted = ctx.Err() != nil
	if interrupted {
		wait = 2 * time.Second
	}
	end := time.Now().Add(wait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	done := ctx.Done()
	for {
		r.mu.Lock()
		awaited := r.awaited
		r.mu.Unlock()
		if awaited == 0 {
			return interrupted
		}
		select {
		case <-r.got:
		case <-deadline.C:
			return interrupted
		case <-done:
			interrupted, done = true, nil
			if soon := time.Now().Add(2 * time.Second); soon.Before(end) {
				deadline.Reset(time.Until(soon))
			}
		}
	}
}

// sendAll runs every device's schedule.
func (r *run) sendAll(ctx context.Context, devices []device) {
	perDevice := make([][]int, len(devices))
	for i, s := range r.sends {
		perDevice[s.Device] = append(perDevice[s.Device], i)
	}
	var wg sync.WaitGroup
	for d, idx := range perDevice {
		wg.Go(func() { r.runDevice(ctx, devices[d], idx) })
	}
	wg.Wait()
}

// runDevice releases sends idx of device d on schedule. An idle sender of
// the device takes each; when all are busy a new one starts, up to
// MaxInFlight; beyond that the send waits for one and is late.
func (r *run) runDevice(ctx context.Context, d device, idx []int) {
	type job struct {
		i        int
		released time.Time
	}
	jobs := make(chan job)
	var senders sync.WaitGroup
	defer func() {
		close(jobs)
		senders.Wait()
	}()
	sender := func(j job) {
		r.sendOne(ctx, d, j.i, j.released)
		for j := range jobs {
			r.sendOne(ctx, d, j.i, j.released)
		}
	}
	n := 0
	due := time.NewTimer(0)
	defer due.Stop()
	for _, i := range idx {
		if wait := time.Until(r.start.Add(r.sends[i].At)); wait > 0 {
			due.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-due.C:
			}
		}
		j := job{i, time.Now()}
		select {
		case jobs <- j:
			continue
		default:
		}
		if n < r.cfg.MaxInFlight {
			n++
			senders.Go(func() { sender(j) })
			continue
		}
		r.late.Add(1)
		select {
		case jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// sendOne sends message i, released by the schedule at t0.
func (r *run) sendOne(ctx context.Context, d device, i int, t0 time.Time) {
	s := &r.sent[i]
	s.sent = t0.Sub(r.start)
	r.nsent.Add(1)
	answered, err := d.send(ctx, r.prefix+strconv.Itoa(i), r.cfg.Samples[i%len(r.cfg.Samples)])
	s.ack, s.done, s.answered = time.Since(t0), true, answered
	if err != nil {
		s.refused, s.err = refusal(err), err.Error()
		r.nrefused.Add(1)
		return
	}
	r.accepted(i)
	r.nacked.Add(1)
}
