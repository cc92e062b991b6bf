package bench

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// Summary is summary.json.
type Summary struct {
	Target    string  `json:"target"`
	Protocol  string  `json:"protocol"`
	Encoding  string  `json:"encoding"`
	Workload  string  `json:"workload"`
	Devices   int     `json:"devices"`
	TimeScale float64 `json:"time_scale"`
	// Planned is how many messages the schedule holds; Sent how many went
	// out (fewer when interrupted).
	Planned int `json:"planned"`
	Sent    int `json:"sent"`
	// Accepted were taken by the pipeline: the funnel answered 2xx (HTTP)
	// or 2.01 (CoAP), or Kafka acknowledged them.
	Accepted int `json:"accepted"`
	// Refused are the other sends: the funnel answered an error, or the
	// send failed or timed out; RefusedBy counts them by reason ("http
	// 503", "coap 5.03", "timeout", "connection refused", "kafka <error>",
	// "interrupted" when the bench stopped first, ...).
	Refused   int            `json:"refused"`
	RefusedBy map[string]int `json:"refused_by"`
	// Results are sent messages with at least one result, RefusedResults
	// those of them whose send was refused: the funnel took the message
	// but its answer was lost (a connection reset after the write, a
	// timeout). Accepted = Results - RefusedResults + Lost.
	Results        int `json:"results"`
	RefusedResults int `json:"refused_results"`
	// Lost are accepted messages without a result: what the pipeline
	// promised and did not deliver.
	Lost       int `json:"lost"`
	Duplicates int `json:"duplicates"`
	// LateSends had to wait for a free in-flight slot on their device.
	LateSends   int  `json:"late_sends"`
	Interrupted bool `json:"interrupted"`
	// ElapsedS is from the first send to the last result.
	ElapsedS       float64 `json:"elapsed_s"`
	ScheduleS      float64 `json:"schedule_s"`
	ThroughputPerS float64 `json:"throughput_per_s"`
	Accuracy       float64 `json:"accuracy"`
	// Tiers is the round trip, from the send until the result reached
	// the bench's consumer, per exit tier.
	Tiers map[string]Percentiles `json:"tiers"`
	// ExitRatios is the share of results that exited at each tier.
	ExitRatios map[string]float64 `json:"exit_ratios"`
	All        Percentiles        `json:"all"`
	// Ingest is send to acceptance (the funnel's answer or Kafka's ack).
	Ingest Percentiles `json:"ingest"`
	// WaitMS is the wait devices asked the funnel for (--wait), 0 for
	// none; Sync is then the synchronous round trip, send to the funnel's
	// answer carrying the result, of the sends so answered (a send whose
	// wait ended without its result was answered 202 and is not in it),
	// and SyncTiers the same per exit tier.
	WaitMS    float64                 `json:"wait_ms,omitempty"`
	Sync      *Percentiles            `json:"sync,omitempty"`
	SyncTiers map[string]Percentiles  `json:"sync_tiers,omitempty"`
	Replicas  map[string]ReplicaRange `json:"replicas"`
	// Errors are the first distinct refusals in full.
	Errors []string `json:"errors,omitempty"`
	// Links is what crossed each emulated link (--network), WANBytes the
	// sum over the links between sites.
	Links    []LinkSummary `json:"links,omitempty"`
	WANBytes int64         `json:"wan_bytes,omitempty"`
	// Cuts compare round trips during each outage with those before it.
	Cuts []CutSummary `json:"cuts,omitempty"`
}

// Percentiles of round trips in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// ReplicaRange is what a tier ran during the run.
type ReplicaRange struct {
	Min   int `json:"min"`
	Max   int `json:"max"`
	Final int `json:"final"`
}

// Row is one message: a line of samples.csv.
type Row struct {
	Index    int
	Device   int
	Due      time.Duration
	Done     bool // sent (and answered or failed)
	Sent     time.Duration
	Ack      time.Duration
	Err      string
	Results  int
	Tier     string
	Class    int
	Label    int
	Latency  time.Duration // send to result
	ResultAt time.Duration // from the start
}

// Result is a run's summary, its messages and its time series.
type Result struct {
	Summary Summary
	Rows    []Row
	// TierOrder is the pipeline's tiers in order.
	TierOrder []string
	// Processed counts messages each tier took per Bucket, from the
	// results' hops.
	Processed map[string][]int
	Bucket    time.Duration
	// ReplicaSeries is the ready replicas per tier over time.
	ReplicaSeries map[string][]ReplicaPoint
	// Plots are the plot files Write wrote; Unplotted the others, each
	// with why ("replicas.png (no replica lists: ...)"): a figure without
	// data is not drawn.
	Plots, Unplotted []string
}

// ReplicaPoint is a tier's ready replicas at a time from the start.
type ReplicaPoint struct {
	At    time.Duration
	Ready int
}

// sampleReplicas asks the supervisor for each tier's ready replicas every
// 250 ms.
func (r *run) sampleReplicas(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		for _, tier := range r.cfg.Pipeline.Tiers {
			admin, ok := r.cfg.AdminURLs[tier.Name]
			if !ok {
				continue
			}
			list, err := httpapi.ReadReplicas(ctx, client, admin+httpapi.ReplicasPath(tier.Name))
			if err != nil {
				continue
			}
			r.mu.Lock()
			r.replicas[tier.Name] = append(r.replicas[tier.Name], ReplicaPoint{time.Since(r.start), len(list)})
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// result builds the report once every sender and watcher stopped.
func (r *run) result(interrupted bool) *Result {
	cfg := r.cfg
	s := Summary{
		Target: cfg.Target, Protocol: cfg.Protocol, Encoding: cmp.Or(cfg.Encoding, EncodingRaw), Workload: cfg.Workload.Kind,
		Devices: cfg.Workload.Devices, TimeScale: cfg.Workload.TimeScale,
		Planned: len(r.sends), LateSends: int(r.late.Load()), Interrupted: interrupted,
		ScheduleS: Length(r.sends).Seconds(),
		RefusedBy: map[string]int{},
		Tiers:     map[string]Percentiles{}, ExitRatios: map[string]float64{}, Replicas: map[string]ReplicaRange{},
	}
	res := &Result{Processed: map[string][]int{}, ReplicaSeries: r.replicas}
	for _, t := range cfg.Pipeline.Tiers {
		res.TierOrder = append(res.TierOrder, t.Name)
	}
	var all, ingest, sync []time.Duration
	byTier, syncByTier := map[string][]time.Duration{}, map[string][]time.Duration{}
	correct := 0
	var last time.Duration
	seenErr := map[string]bool{}
	for i, sd := range r.sent {
		rs := r.results[i]
		row := Row{Index: i, Device: r.sends[i].Device, Due: r.sends[i].At, Label: -1, Class: -1}
		if cfg.Labels != nil {
			row.Label = cfg.Labels[i%len(cfg.Labels)]
		}
		if sd.done {
			s.Sent++
			row.Done, row.Sent, row.Ack, row.Err = true, sd.sent, sd.ack, sd.err
			if sd.refused == "" {
				s.Accepted++
				ingest = append(ingest, sd.ack)
				if sd.answered && rs.n > 0 {
					sync = append(sync, sd.ack)
					syncByTier[rs.tier] = append(syncByTier[rs.tier], sd.ack)
				}
			} else {
				s.Refused++
				s.RefusedBy[sd.refused]++
				if !seenErr[sd.err] && len(s.Errors) < 5 {
					seenErr[sd.err] = true
					s.Errors = append(s.Errors, sd.err)
				}
			}
			last = max(last, sd.sent)
		}
		if rs.n > 0 && sd.done {
			s.Results++
			if sd.refused != "" {
				s.RefusedResults++
			}
			s.Duplicates += rs.n - 1
			row.Results, row.Tier, row.Class = rs.n, rs.tier, rs.class
			row.ResultAt = rs.at.Sub(r.start)
			row.Latency = row.ResultAt - sd.sent
			all = append(all, row.Latency)
			byTier[rs.tier] = append(byTier[rs.tier], row.Latency)
			if row.Class == row.Label {
				correct++
			}
			last = max(last, row.ResultAt)
		} else if sd.done && sd.refused == "" {
			s.Lost++
		}
		res.Rows = append(res.Rows, row)
	}
	s.ElapsedS = last.Seconds()
	if s.Results > 0 {
		s.Accuracy = float64(correct) / float64(s.Results)
		if s.ElapsedS > 0 {
			s.ThroughputPerS = float64(s.Results) / s.ElapsedS
		}
	}
	s.All, s.Ingest = percentiles(all), percentiles(ingest)
	if cfg.Wait > 0 {
		p := percentiles(sync)
		s.WaitMS, s.Sync, s.SyncTiers = ms(cfg.Wait), &p, map[string]Percentiles{}
		for t, ds := range syncByTier {
			s.SyncTiers[t] = percentiles(ds)
		}
	}
	for _, t := range res.TierOrder {
		if len(byTier[t]) > 0 {
			s.Tiers[t] = percentiles(byTier[t])
			s.ExitRatios[t] = float64(len(byTier[t])) / float64(s.Results)
		}
	}

	// Tier throughput from the hops of each first result.
	res.Bucket = bucketWidth(last)
	nb := int(last/res.Bucket) + 1
	for _, t := range res.TierOrder {
		res.Processed[t] = make([]int, nb)
	}
	for i := range r.results {
		for _, h := range r.results[i].hops {
			b := int(h.At.Sub(r.start) / res.Bucket)
			if c, ok := res.Processed[h.Tier]; ok && b >= 0 && b < nb {
				c[b]++
			}
		}
	}

	for tier, pts := range res.ReplicaSeries {
		rr := ReplicaRange{Min: pts[0].Ready, Max: pts[0].Ready, Final: pts[len(pts)-1].Ready}
		for _, p := range pts {
			rr.Min, rr.Max = min(rr.Min, p.Ready), max(rr.Max, p.Ready)
		}
		s.Replicas[tier] = rr
	}
	if n := cfg.Network; n != nil {
		devices := int64(s.Accepted) + 1 // and the probe
		s.Links = n.linkSummaries(devices, 500*time.Millisecond)
		s.WANBytes = WANBytes(s.Links)
		s.Cuts = n.cutSummaries(res.Rows, res.TierOrder)
	}
	res.Summary = s
	return res
}

// bucketWidth picks about 100 buckets, at least 100 ms each.
func bucketWidth(d time.Duration) time.Duration {
	return max(100*time.Millisecond, (d / 100).Round(100*time.Millisecond))
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	q := func(f float64) float64 { return ms(ds[min(len(ds)-1, int(f*float64(len(ds))))]) }
	return Percentiles{Count: len(ds), P50: q(0.5), P95: q(0.95), P99: q(0.99), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Print writes the summary table.
func (res *Result) Print(w io.Writer) {
	s := res.Summary
	state := ""
	if s.Interrupted {
		state = " (INTERRUPTED: partial)"
	}
	fmt.Fprintf(w, "%s over %s (%s), workload %s, %s, time scale %g%s\n", s.Target, s.Protocol, s.Encoding, s.Workload, devices(s.Devices), s.TimeScale, state)
	taken := ""
	if s.RefusedResults > 0 {
		taken = fmt.Sprintf(" (%d of them of refused sends: taken, the answer lost)", s.RefusedResults)
	}
	fmt.Fprintf(w, "sent %d of %d (late %d); accepted %d; refused %d%s; results %d%s; lost %d (accepted without a result); duplicates %d; accuracy %.4f\n",
		s.Sent, s.Planned, s.LateSends, s.Accepted, s.Refused, byReason(s.RefusedBy), s.Results, taken, s.Lost, s.Duplicates, s.Accuracy)
	fmt.Fprintf(w, "elapsed %.2fs (schedule %.2fs); throughput %.1f results/s; ingest p50 %.2fms p99 %.2fms\n",
		s.ElapsedS, s.ScheduleS, s.ThroughputPerS, s.Ingest.P50, s.Ingest.P99)
	if s.Sync != nil {
		fmt.Fprintf(w, "sync (?wait=%gms): %d of %d accepted answered with their result (the rest 202 at the wait's end)\n", s.WaitMS, s.Sync.Count, s.Accepted)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "exit tier\tresults\tp50 ms\tp95 ms\tp99 ms\tmax ms\treplicas min-max (final)\t")
	row := func(name string, p Percentiles, reps string) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", name, p.Count, p.P50, p.P95, p.P99, p.Max, reps)
	}
	for _, t := range res.TierOrder {
		reps := "-"
		if rr, ok := s.Replicas[t]; ok {
			reps = fmt.Sprintf("%d-%d (%d)", rr.Min, rr.Max, rr.Final)
		}
		row(t, s.Tiers[t], reps)
	}
	row("all", s.All, "")
	if s.Sync != nil {
		fmt.Fprintln(tw, "sync: exit tier\tanswers\tp50 ms\tp95 ms\tp99 ms\tmax ms\t\t")
		for _, t := range res.TierOrder {
			row(t, s.SyncTiers[t], "")
		}
		row("all", *s.Sync, "")
	}
	tw.Flush()
	printLinks(w, s, res.TierOrder)
	for _, e := range s.Errors {
		fmt.Fprintf(w, "refused: %s\n", e)
	}
}

// byReason is " (reason n, ...)" with the most frequent first, or "".
func byReason(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	reasons := slices.Collect(maps.Keys(m))
	slices.SortFunc(reasons, func(a, b string) int { return cmp.Or(m[b]-m[a], strings.Compare(a, b)) })
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, m[r])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// Write writes summary.json, samples.csv and the plots into dir.
func (res *Result) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res.Summary, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := res.writeCSV(filepath.Join(dir, "samples.csv")); err != nil {
		return err
	}
	return res.plot(dir)
}

func (res *Result) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"index", "device", "due_s", "sent_s", "ingest_ms", "error", "results", "exit_tier", "latency_ms", "class", "label", "correct"})
	fl := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, r := range res.Rows {
		rec := []string{strconv.Itoa(r.Index), strconv.Itoa(r.Device), fl(r.Due.Seconds()), "", "", r.Err, strconv.Itoa(r.Results), r.Tier, "", "", strconv.Itoa(r.Label), ""}
		if r.Done {
			rec[3], rec[4] = fl(r.Sent.Seconds()), fl(ms(r.Ack))
		}
		if r.Results > 0 {
			rec[8], rec[9], rec[11] = fl(ms(r.Latency)), strconv.Itoa(r.Class), strconv.FormatBool(r.Class == r.Label)
		}
		w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// devices is "n devices", or "1 device".
func devices(n int) string {
	if n == 1 {
		return "1 device"
	}
	return fmt.Sprintf("%d devices", n)
}
