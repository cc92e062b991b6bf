package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	t.Helper()
	root, _ := filepath.Abs("../..")
	b, err := os.ReadFile(filepath.Join(root, "deploy/pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	broker, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	y := strings.ReplaceAll(string(b), "../models/", filepath.Join(root, "models")+"/") + "kafka:\n  brokers: [" + broker.Addr() + "]\n"
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = pipeline.Load(file); err != nil {
		t.Fatal(err)
	}
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(broker.Addr()))
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
	return file
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
