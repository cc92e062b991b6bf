package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestOversizedRecordDeadLettered produces, with kcat, a record just under
// the broker's limit into the first tier's topic: its dead-letter copy
// would be over the limit with the headers added, so it is truncated; it
// reaches the DLQ within 5s with its reason and original size, and the
// partition moves on (an image produced after it gets a result).
func TestOversizedRecordDeadLettered(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat; make deps installs it)")
	}
	tp := writePipeline(t, "bigrec", 1, "")
	up(t, tp)
	dir := t.TempDir()
	big := make([]byte, 1_048_000)
	rand.Read(big)
	bigFile := filepath.Join(dir, "s.bin")
	if err := os.WriteFile(bigFile, big, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, testSet(t).Samples[0], 0o644); err != nil {
		t.Fatal(err)
	}
	topic := tp.name + ".edge.in"
	// One partition, so the image is behind the big record.
	kcatP := func(key, file string) {
		t.Helper()
		out, err := exec.Command("kcat", "-P", "-b", tp.broker, "-t", topic, "-p", "0", "-k", key,
			"-X", "message.max.bytes=10000000", file).CombinedOutput()
		if err != nil {
			t.Fatalf("kcat -P %s: %v: %s", key, err, out)
		}
	}
	start := time.Now()
	kcatP("big-1", bigFile)
	kcatP("after-big", img)

	var dlq string
	testsupport.WaitFor(t, 5*time.Second, "the big record on the DLQ", func() bool {
		out, _ := exec.Command("kcat", "-C", "-b", tp.broker, "-t", tp.name+".edge.dlq", "-o", "beginning", "-e", "-q",
			"-X", "fetch.message.max.bytes=10000000", "-f", "%k %S %h\n").Output()
		dlq = string(out)
		return strings.Contains(dlq, "big-1")
	})
	took := time.Since(start)
	for _, want := range []string{
		"ddnn-reason=undecodable record: raw value has 1048000 bytes, want 784",
		"ddnn-original-size=1048000",
		"ddnn-source-topic=" + topic,
		"ddnn-source-partition=0",
		"ddnn-truncated=value cut to ",
	} {
		if !strings.Contains(dlq, want) {
			t.Errorf("dead letter lacks %q: %s", want, dlq)
		}
	}
	got := collectResults(t, tp.broker, tp.name+".results", "after-big", 1, 30*time.Second)
	if len(got["after-big"]) != 1 {
		t.Errorf("the image after the big record has %d results, want 1", len(got["after-big"]))
	}
	t.Logf("dead-lettered in %s: %s", took.Round(time.Millisecond), fmt.Sprint(strings.Fields(dlq)[:2]))
}

// TestDeadLettersOfARunningPipeline poisons a running pipeline's first tier
// with 50 records of 3 kinds, produced straight to its topic: 20 values
// of the wrong size, 20 with an invalid id and 10 tensors of a shape the
// model refuses. `ddnn dlq list` counts them by kind; `replay --dry-run`, with
// nothing fixed, lists all 50. Then good images arrive under 10 of the
// poisoned ids and get results; two replays later (nothing fixed, so the
// rest is parked again) those 10 still have exactly one result each and
// no other poisoned id has any.
func TestDeadLettersOfARunningPipeline(t *testing.T) {
	tp := writePipeline(t, "dlqlive", 1, "")
	up(t, tp)
	topic, dlqTopic := tp.name+".edge.in", tp.name+".edge.dlq"
	images := testSet(t).Samples
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(tp.broker), kgo.RequiredAcks(kgo.AllISRAcks()))
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var poison []*kgo.Record
	for i := range 20 {
		poison = append(poison, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "short-%d", i), Value: images[i][:100]})
	}
	for i := range 20 {
		poison = append(poison, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "bad id %d", i), Value: images[i]})
	}
	for i := range 10 { // a float32 tensor of the wrong shape: the edge model refuses it
		m := wire.Message{ID: fmt.Sprintf("shape-%d", i), Tensor: wire.Float32Tensor([]int{1, 2}, []float32{1, 2})}
		rec, err := records.Message(records.Destination{Topic: topic}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		poison = append(poison, rec)
	}
	produce(poison...)
	adm := kadm.NewClient(cl)
	dlqLen := func() int64 { return topicLen(t, tp.broker, dlqTopic) }
	testsupport.WaitFor(t, 30*time.Second, "50 dead letters", func() bool { return dlqLen() >= 50 })

	dlq := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ddnn, append(append([]string{"dlq"}, args...), "-f", tp.file, "--tier", "edge")...).CombinedOutput()
		if err != nil {
			t.Fatalf("ddnn dlq %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := dlq("list")
	t.Logf("ddnn dlq list:\n%s", list)
	for _, want := range []string{`50 dead letters in dlqlive\.edge\.dlq`, `(?m)^20\s+undecodable record\s`, `(?m)^20\s+invalid id\s`, `(?m)^10\s+function rejected the record\s`} {
		if !regexp.MustCompile(want).MatchString(list) {
			t.Errorf("list lacks %s", want)
		}
	}
	if dry := dlq("replay", "--dry-run", "--limit", "1000"); !strings.Contains(dry, "would replay 50 of 50 dead letters") {
		t.Errorf("dry run with nothing fixed:\n%s", dry)
	}

	// Good images under 10 of the poisoned ids: they get results.
	results := countResults(t, tp.broker, tp.name+".results")
	var good []string
	for i := range 10 {
		id := fmt.Sprintf("short-%d", i)
		good = append(good, id)
		produce(&kgo.Record{Topic: topic, Key: []byte(id), Value: images[i]})
	}
	if missing := results.waitAll(good, 30*time.Second); len(missing) > 0 {
		t.Fatalf("no result for %v", missing)
	}
	first := dlq("replay", "--limit", "1000")
	testsupport.WaitFor(t, 30*time.Second, "the first replay parked again", func() bool { return dlqLen() >= 90 })
	second := dlq("replay", "--limit", "1000")
	testsupport.WaitFor(t, 30*time.Second, "the second replay parked again", func() bool { return dlqLen() >= 130 })
	t.Logf("first replay: %ssecond replay: %s", first, second)
	for _, out := range []string{first, second} {
		if !strings.Contains(out, "replayed 40 of ") || !strings.Contains(out, "skipped 10 whose message has a result") {
			t.Errorf("a replay did not send the 40 without a result:\n%s", out)
		}
	}
	results.waitEnd(t, adm, 10*time.Second)
	for _, p := range poison {
		id := string(p.Key)
		want := 0
		if slices.Contains(good, id) {
			want = 1
		}
		if n := results.count(id); n != want {
			t.Errorf("%s has %d results, want %d", id, n, want)
		}
	}
	if n := dlqLen(); n != 130 {
		t.Errorf("%d dead letters after two replays, want 130 (50 + 40 + 40)", n)
	}
}
