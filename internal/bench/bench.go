// Package bench owns `ddnn bench`: it drives a running pipeline with
// labeled test images over the HTTP funnel, reads the results topic, and
// reports throughput, end-to-end latency per exit tier, lost and duplicated
// results, and accuracy.
//
// Sends are either open-loop at a fixed total rate (send times come from the
// schedule, not from responses) or closed-loop (each sender sends its next
// image as soon as the previous one was accepted), to find the sustained
// rate. Latency is from the send time to the result record's timestamp on
// the results topic. It talks to the pipeline only through its public
// surfaces: the funnel's HTTP ingest and the results topic.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
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
	// Images and Labels are the samples to send, cycled.
	Images [][]byte
	Labels []int
	// Count is how many messages to send.
	Count int
	// Rate is the total send rate per second for an open-loop run; 0 runs
	// closed-loop as fast as the senders can.
	Rate float64
	// Senders is the number of concurrent HTTP senders.
	Senders int
	// Timeout bounds the wait for results after the last send.
	Timeout time.Duration
}

// Report is a bench run's outcome.
type Report struct {
	Mode        string        `json:"mode"`
	Sent        int           `json:"sent"`
	Accepted    int           `json:"accepted"`
	Rejected    int           `json:"rejected"`
	Results     int           `json:"results"`
	Lost        int           `json:"lost"`
	Duplicates  int           `json:"duplicates"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	SendRate    float64       `json:"send_rate"`
	ResultRate  float64       `json:"result_rate"`
	Accuracy    float64       `json:"accuracy"`
	Latency     Latency       `json:"latency"`
	TierLatency []TierLatency `json:"tiers"`
}

// Latency summarizes end-to-end latencies.
type Latency struct {
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// TierLatency is the latency of results that exited at one tier.
type TierLatency struct {
	Tier    string  `json:"tier"`
	Exited  int     `json:"exited"`
	Latency Latency `json:"latency"`
}

// Run sends, collects and reports.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	p := cfg.Pipeline
	if cfg.Senders < 1 {
		cfg.Senders = 1
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	// Read the results topic from its current end, partition by partition,
	// so no result of this run is missed and none of an earlier run read.
	admCl, err := kgo.NewClient(kafka.ClientOptions(&p.Kafka, "bench-admin", nil)...)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, p.ResultsTopic())
	admCl.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("bench: end offsets of %s: %w", p.ResultsTopic(), err)
	}
	from := map[string]map[int32]kgo.Offset{p.ResultsTopic(): {}}
	ends.Each(func(o kadm.ListedOffset) { from[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(append(kafka.ClientOptions(&p.Kafka, "bench", nil), kgo.ConsumePartitions(from))...)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	defer cl.Close()

	sentAt := make([]time.Time, cfg.Count)
	type res struct {
		r  wire.Result
		at time.Time
	}
	var (
		mu      sync.Mutex
		results = map[int][]res{}
	)
	collectCtx, stopCollect := context.WithCancel(ctx)
	collected := make(chan struct{})
	var nresults atomic.Int64
	go func() {
		defer close(collected)
		for {
			fs := cl.PollFetches(collectCtx)
			if collectCtx.Err() != nil {
				return
			}
			for _, rec := range fs.Records() {
				r, err := wire.DecodeResult(rec.Value)
				if err != nil || len(r.ID) <= len(run) || r.ID[:len(run)] != run {
					continue
				}
				i, err := strconv.Atoi(r.ID[len(run):])
				if err != nil || i < 0 || i >= cfg.Count {
					continue
				}
				mu.Lock()
				results[i] = append(results[i], res{r, rec.Timestamp})
				mu.Unlock()
				nresults.Add(1)
			}
		}
	}()

	start := time.Now()
	accepted, rejected := send(ctx, cfg, run, sentAt, start)
	sendDur := time.Since(start)
	deadline := time.Now().Add(cfg.Timeout)
	for int(nresults.Load()) < accepted && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopCollect()
	<-collected

	rep := &Report{Mode: "closed-loop", Sent: cfg.Count, Accepted: accepted, Rejected: rejected, Elapsed: elapsed}
	if cfg.Rate > 0 {
		rep.Mode = fmt.Sprintf("open-loop %.0f/s", cfg.Rate)
	}
	rep.SendRate = float64(cfg.Count) / sendDur.Seconds()
	var all []time.Duration
	byTier := map[string][]time.Duration{}
	correct, last := 0, start
	for i := 0; i < cfg.Count; i++ {
		rs := results[i]
		if len(rs) == 0 {
			if !sentAt[i].IsZero() {
				rep.Lost++
			}
			continue
		}
		rep.Results++
		rep.Duplicates += len(rs) - 1
		r := rs[0]
		lat := r.at.Sub(sentAt[i])
		all = append(all, lat)
		byTier[r.r.Tier] = append(byTier[r.r.Tier], lat)
		if cfg.Labels != nil && r.r.Class == cfg.Labels[i%len(cfg.Labels)] {
			correct++
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	if rep.Results > 0 {
		rep.Accuracy = float64(correct) / float64(rep.Results)
		rep.ResultRate = float64(rep.Results) / last.Sub(start).Seconds()
	}
	rep.Latency = summarize(all)
	for _, t := range p.Tiers {
		rep.TierLatency = append(rep.TierLatency, TierLatency{Tier: t.Name, Exited: len(byTier[t.Name]), Latency: summarize(byTier[t.Name])})
	}
	return rep, nil
}

// send posts every message, open- or closed-loop, recording send times.
func send(ctx context.Context, cfg Config, run string, sentAt []time.Time, start time.Time) (accepted, rejected int) {
	url := "http://" + cfg.Pipeline.Funnel.Listen + "/v1/ingest"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Senders}}
	var next atomic.Int64
	var acc, rej atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < cfg.Senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Count {
					return
				}
				if cfg.Rate > 0 {
					due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(cfg.Images[i%len(cfg.Images)]))
				req.Header.Set("Content-Type", "application/octet-stream")
				req.Header.Set("X-Message-Id", run+strconv.Itoa(i))
				sentAt[i] = time.Now()
				resp, err := client.Do(req)
				if err != nil {
					rej.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					acc.Add(1)
				} else {
					rej.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(acc.Load()), int(rej.Load())
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[min(len(ds)-1, int(f*float64(len(ds))))] }
	return Latency{P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: ds[len(ds)-1]}
}

// Print writes the report as text.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%s: sent %d (accepted %d, rejected %d) at %.0f/s; results %d, lost %d, duplicates %d\n",
		r.Mode, r.Sent, r.Accepted, r.Rejected, r.SendRate, r.Results, r.Lost, r.Duplicates)
	fmt.Fprintf(w, "results at %.0f/s; accuracy %.4f; elapsed %s\n", r.ResultRate, r.Accuracy, r.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "exit tier\tresults\tp50\tp90\tp99\tmax\t")
	row := func(name string, n int, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", name, n, rnd(l.P50), rnd(l.P90), rnd(l.P99), rnd(l.Max))
	}
	for _, t := range r.TierLatency {
		row(t.Tier, t.Exited, t.Latency)
	}
	row("all", r.Results, r.Latency)
	tw.Flush()
}

func rnd(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
