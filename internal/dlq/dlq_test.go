package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// poisoned writes the sample pipeline with its Kafka on a broker of its
// own, and parks 50 records of 3 kinds on the fog tier's dead-letter
// topic, as the connector does: 30 rejected by the function, 15 that
// exhausted their attempts, 5 undecodable (one of them cut to fit).
func poisoned(t *testing.T) string {
	file, _ := poisonedWith(t)
	return file
}

// poisonedWith is poisoned, also returning a client of the broker.
func poisonedWith(t *testing.T) (string, *kgo.Client) {
	t.Helper()
	file, broker := testsupport.SamplePipeline(t, "")
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(broker))
	var recs []*kgo.Record
	park := func(n int, reason func(i int) string, value []byte) {
		for i := range n {
			m := wire.Message{ID: fmt.Sprintf("m%d", len(recs)), Tensor: wire.Float32Tensor([]int{2}, []float32{1, 2})}
			src, err := records.Message(records.Destination{Topic: p.InputTopic("fog")}, wire.Binary, &m)
			if err != nil {
				t.Fatal(err)
			}
			if value != nil {
				src.Value = value
			}
			src.Partition, src.Offset = 1, int64(100+len(recs))
			recs = append(recs, records.DeadLetter(p.DLQTopic("fog"), src, reason(i), p.Kafka.MaxRecordBytes))
		}
	}
	park(30, func(i int) string { return fmt.Sprintf("function rejected the record: tensor has %d elements", i) }, nil)
	park(15, func(int) string { return "attempts exhausted: replica http://127.0.0.1:1: status 500" }, nil)
	park(4, func(int) string { return "undecodable record: value of 3 bytes is neither a binary nor a JSON message" }, []byte("abc"))
	park(1, func(int) string { return "undecodable record: too large" }, bytes.Repeat([]byte{'x'}, 2*p.Kafka.MaxRecordBytes))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return file, cl
}

func run(t *testing.T, c *Command) string {
	t.Helper()
	var out bytes.Buffer
	if err := c.Run(context.Background(), &out, &out); err != nil {
		t.Fatalf("%+v: %v\n%s", c, err, out.String())
	}
	return out.String()
}

// TestListCountsByKind: list counts the 50 dead letters by kind of
// reason, most first; --reason and --since narrow it; a tier without
// dead letters says so.
func TestListCountsByKind(t *testing.T) {
	file := poisoned(t)
	out := run(t, &Command{File: file, Tier: "fog"})
	for _, want := range []string{
		`50 dead letters in fmnist\.fog\.dlq \(site local\)`,
		`(?m)^30\s+function rejected the record\s`,
		`(?m)^15\s+attempts exhausted\s`,
		`(?m)^5\s+undecodable record\s`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("list lacks %s:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "function rejected"), strings.Index(out, "attempts exhausted"); i > j {
		t.Errorf("not most first:\n%s", out)
	}
	if out := run(t, &Command{File: file, Tier: "fog", Reason: "status 500"}); !strings.Contains(out, "15 dead letters") {
		t.Errorf("--reason: %s", out)
	}
	if out := run(t, &Command{File: file, Tier: "fog", Since: time.Hour}); !strings.Contains(out, "50 dead letters") {
		t.Errorf("--since 1h: %s", out)
	}
	if out := run(t, &Command{File: file, Tier: "edge"}); !strings.Contains(out, "no dead letters in fmnist.edge.dlq") {
		t.Errorf("a tier without dead letters: %s", out)
	}
}

// TestShowWhatEachParks: show gives each dead letter's id, source, size
// and reason, and what was cut from a copy, within --limit; --json is
// one object per dead letter.
func TestShowWhatEachParks(t *testing.T) {
	file := poisoned(t)
	out := run(t, &Command{File: file, Tier: "fog", Show: true, Limit: 100, JSON: true})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	var cut int
	for _, l := range lines {
		var e Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(e.ID, "m") || e.SourceTopic != "fmnist.fog.in" || e.SourcePartition != 1 || e.SourceOffset < 100 || e.Size == 0 || e.Reason == "" {
			t.Errorf("entry %+v", e)
		}
		if e.Truncated != "" {
			cut++
		}
	}
	if cut != 1 {
		t.Errorf("%d entries say they were cut, want 1", cut)
	}
	out = run(t, &Command{File: file, Tier: "fog", Show: true, Limit: 2, Reason: "too large"})
	for _, want := range []string{"id:      m49", "source:  fmnist.fog.in[1] offset 149", "cut:     value cut to", "reason:  undecodable record: too large"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

func TestKind(t *testing.T) {
	for reason, want := range map[string]string{
		"attempts exhausted: replica x: status 500":                                "attempts exhausted",
		"decision record of 9000 bytes (results) over kafka.max_record_bytes 4096": "decision record of N bytes (results) over kafka.max_record_bytes N",
	} {
		if got := Kind(reason); got != want {
			t.Errorf("Kind(%q) = %q, want %q", reason, got, want)
		}
	}
}

// TestRunRefusesBadFlags: no tier, an unknown tier, a zero limit are
// usage errors naming the flag.
func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		c    Command
		want string
	}{
		{Command{File: "../../deploy/pipeline.yaml"}, "--tier is required"},
		{Command{File: "../../deploy/pipeline.yaml", Tier: "mist"}, "--tier"},
		{Command{File: "../../deploy/pipeline.yaml", Tier: "fog", Show: true}, "--limit must be at least 1"},
	} {
		if err := tc.c.Run(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

// giveResults writes a result for each id, as an exit tier would.
func giveResults(t *testing.T, cl *kgo.Client, ids []string) {
	t.Helper()
	var recs []*kgo.Record
	for _, id := range ids {
		rec, err := records.Result(records.Destination{Topic: "fmnist.results"}, &wire.Result{ID: id, Tier: "fog", Label: "Bag", ExitedAt: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestReplay: replay sends the parked records back to the tier's input
// as they were, marked with the dead letter they came from, but not those
// whose message has a result nor the one cut to fit; --dry-run sends
// nothing; once the replayed messages have results, a second replay
// sends none of them again.
func TestReplay(t *testing.T) {
	file, cl := poisonedWith(t)
	var first10 []string
	for i := range 10 {
		first10 = append(first10, fmt.Sprintf("m%d", i))
	}
	giveResults(t, cl, first10)

	out := run(t, &Command{File: file, Tier: "fog", Replay: true, Limit: 1000, DryRun: true})
	if want := "would replay 39 of 50 dead letters of fmnist.fog.dlq to fmnist.fog.in; skipped 10 whose message has a result, 1 cut, 0 repeating an id"; !strings.Contains(out, want) {
		t.Errorf("dry run lacks %q:\n%s", want, out)
	}
	if n := count(t, cl, "fmnist.fog.in"); n != 0 {
		t.Fatalf("the dry run sent %d records", n)
	}

	out = run(t, &Command{File: file, Tier: "fog", Replay: true, Limit: 1000})
	if !strings.Contains(out, "replayed 39 of 50") {
		t.Errorf("replay: %s", out)
	}
	var replayed []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.Scan(ctx, &kafkaOf(t, file).Kafka, "fmnist.fog.in", func(r *kgo.Record) bool {
		m, err := records.DecodeMessage(r, nil)
		from := ""
		for _, h := range r.Headers {
			switch h.Key {
			case records.HeaderReplayedFrom:
				from = string(h.Value)
			case wire.HeaderReason, records.HeaderSourceTopic, records.HeaderOriginalSize:
				t.Errorf("replayed record keeps dead-letter header %s", h.Key)
			}
		}
		id := records.ReadDeadLetter(r).ID      // the id header, as the record had it
		undecodable := string(r.Value) == "abc" // parked so: replayed as it is
		if !strings.HasPrefix(from, "fmnist.fog.dlq/") || (!undecodable && (err != nil || m.ID != id || m.Tensor.Len() != 2)) {
			t.Errorf("replayed record %s %+v from %q: %v", id, m, from, err)
		}
		replayed = append(replayed, id)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(replayed) != 39 {
		t.Fatalf("%d records on the input, want 39", len(replayed))
	}

	// The pipeline processed them: a second replay gives none a second
	// result.
	giveResults(t, cl, replayed)
	out = run(t, &Command{File: file, Tier: "fog", Replay: true, Limit: 1000})
	if want := "replayed 0 of 50 dead letters of fmnist.fog.dlq to fmnist.fog.in; skipped 49 whose message has a result, 1 cut"; !strings.Contains(out, want) {
		t.Errorf("second replay lacks %q:\n%s", want, out)
	}
	if n := count(t, cl, "fmnist.fog.in"); n != 39 {
		t.Errorf("%d records on the input after the second replay, want 39", n)
	}
	if out := run(t, &Command{File: file, Tier: "edge", Replay: true, Limit: 1000}); !strings.Contains(out, "no dead letters in fmnist.edge.dlq that match: nothing to replay") {
		t.Errorf("a tier without dead letters: %s", out)
	}
}

// count is how many records topic holds.
func count(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// kafkaOf is the view of file's only site.
func kafkaOf(t *testing.T, file string) *pipeline.SiteView {
	t.Helper()
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.OnSite(p.Sites()[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
