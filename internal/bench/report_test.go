package bench

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestResult builds a report from a hand-made run: one message lost, one
// refused, one duplicated, one wrong class; replicas 1 → 3 → 2.
func TestResult(t *testing.T) {
	p := &pipeline.Pipeline{Tiers: []pipeline.Tier{{Name: "edge"}, {Name: "cloud"}}}
	start := time.Now()
	r := &run{
		cfg:   Config{Pipeline: p, Target: "pipeline", Protocol: "http", Workload: Workload{Kind: WorkloadConstant, Devices: 2, TimeScale: 1}, Labels: []int{1, 2, 3, 4, 5}},
		sends: []Send{{0, 0}, {100 * time.Millisecond, 1}, {200 * time.Millisecond, 0}, {300 * time.Millisecond, 1}, {400 * time.Millisecond, 0}, {500 * time.Millisecond, 1}},
		start: start,
	}
	r.sent = make([]sendState, len(r.sends))
	r.results = make([]resultState, len(r.sends))
	for i := range 5 { // the sixth is never sent (interrupted)
		r.sent[i] = sendState{sent: r.sends[i].At, ack: time.Millisecond, done: true}
	}
	r.sent[3].refused, r.sent[3].err = "http 503", "http 503: kafka down"
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	r.results[0] = resultState{n: 1, tier: "edge", class: 1, at: at(10), hops: []wire.Hop{{Tier: "edge", At: at(5)}}}
	r.results[1] = resultState{n: 2, tier: "cloud", class: 2, at: at(130), hops: []wire.Hop{{Tier: "edge", At: at(105)}, {Tier: "cloud", At: at(120)}}}
	r.results[2] = resultState{n: 1, tier: "edge", class: 0, at: at(220), hops: []wire.Hop{{Tier: "edge", At: at(205)}}}
	// results[3]: refused at ingest; results[4]: lost.
	r.replicas = map[string][]ReplicaPoint{"edge": {{0, 1}, {time.Second, 3}, {2 * time.Second, 2}}}

	res := r.result(true)
	s := res.Summary
	if s.Planned != 6 || s.Sent != 5 || s.Accepted != 4 || s.Refused != 1 || s.RefusedBy["http 503"] != 1 || s.Results != 3 || s.Lost != 1 || s.Duplicates != 1 || !s.Interrupted {
		t.Errorf("counts: %+v", s)
	}
	if s.Accuracy < 0.666 || s.Accuracy > 0.667 {
		t.Errorf("accuracy %v, want 2/3", s.Accuracy)
	}
	if s.Tiers["edge"].Count != 2 || s.Tiers["cloud"].Count != 1 || s.Tiers["cloud"].P50 != 30 || s.All.Max != 30 {
		t.Errorf("tiers %+v all %+v", s.Tiers, s.All)
	}
	if s.ExitRatios["edge"] < 0.666 || s.ExitRatios["cloud"] < 0.333 {
		t.Errorf("exit ratios %v", s.ExitRatios)
	}
	if rr := s.Replicas["edge"]; rr != (ReplicaRange{Min: 1, Max: 3, Final: 2}) {
		t.Errorf("replicas %+v", rr)
	}
	if s.ElapsedS != 0.4 || len(s.Errors) != 1 {
		t.Errorf("elapsed %v (the last send at 0.4 s), errors %v", s.ElapsedS, s.Errors)
	}
	edge := 0
	for _, n := range res.Processed["edge"] {
		edge += n
	}
	if edge != 3 {
		t.Errorf("edge took %d messages, want 3", edge)
	}

	dir := t.TempDir()
	if err := res.Write(dir); err != nil {
		t.Fatal(err)
	}
	var back Summary
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &back); err != nil || back.Lost != 1 || back.Refused != 1 || back.RefusedBy["http 503"] != 1 {
		t.Errorf("summary.json: %v %s", err, b)
	}
	f, _ := os.Open(filepath.Join(dir, "samples.csv"))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 7 || rows[2][7] != "cloud" || rows[2][8] != "30.000" || rows[4][5] != "http 503: kafka down" || rows[6][3] != "" {
		t.Errorf("samples.csv: %v %v", err, rows)
	}
	for _, name := range []string{PlotLatency, PlotLatencyBox, PlotThroughput, PlotReplicas} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", name, err)
		}
	}

	// With a network: cut markers on the latency plot, and both comparison
	// plots.
	res.Summary.Cuts = []CutSummary{{Links: []string{"edge->cloud"}, AtS: 0.1, ForS: 0.1}}
	res.Summary.Links = []LinkSummary{{From: "edge", To: "cloud", Bytes: 1e6, WAN: true}}
	res.Summary.WANBytes = 1e6
	mono := *res
	mono.Summary.Links = []LinkSummary{{From: "edge", To: "cloud", Bytes: 5e6, WAN: true}}
	dir = t.TempDir()
	if err := res.Write(dir); err != nil {
		t.Fatal(err)
	}
	if err := PlotComparison(dir, res, &mono); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{PlotLatency, PlotCompareLatency, PlotCompareLinks} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestResultSync: with a wait, the sends answered with their result give
// the synchronous round trip, per exit tier and overall; those answered
// 202 do not.
func TestResultSync(t *testing.T) {
	p := &pipeline.Pipeline{Tiers: []pipeline.Tier{{Name: "edge"}, {Name: "cloud"}}}
	start := time.Now()
	r := &run{
		cfg:   Config{Pipeline: p, Target: "pipeline", Protocol: "http", Wait: 2 * time.Second, Workload: Workload{Kind: WorkloadConstant, Devices: 1, TimeScale: 1}},
		sends: []Send{{0, 0}, {100 * time.Millisecond, 0}, {200 * time.Millisecond, 0}},
		start: start,
	}
	r.sent = []sendState{
		{sent: 0, ack: 4 * time.Millisecond, done: true, answered: true},
		{sent: 100 * time.Millisecond, ack: 20 * time.Millisecond, done: true, answered: true},
		{sent: 200 * time.Millisecond, ack: 2 * time.Second, done: true}, // 202 at the wait's end
	}
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	r.results = []resultState{
		{n: 1, tier: "edge", at: at(3), accepted: true},
		{n: 1, tier: "cloud", at: at(119), accepted: true},
		{n: 1, tier: "cloud", at: at(2500), accepted: true},
	}
	s := r.result(false).Summary
	if s.WaitMS != 2000 || s.Sync == nil || s.Sync.Count != 2 || s.Sync.Max != 20 {
		t.Fatalf("sync %+v (wait %v ms), want 2 answers, at most 20 ms", s.Sync, s.WaitMS)
	}
	if e, c := s.SyncTiers["edge"], s.SyncTiers["cloud"]; e.Count != 1 || e.P50 != 4 || c.Count != 1 || c.P50 != 20 {
		t.Errorf("sync per tier %+v", s.SyncTiers)
	}
	if s.Tiers["edge"].P50 != 3 || s.Tiers["cloud"].Count != 2 {
		t.Errorf("the round trips to the results topic changed: %+v", s.Tiers)
	}
}
