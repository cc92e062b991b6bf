package results

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// produceTo writes a result of id to the results topic on the broker at
// addr, with a client of its own (the broker may have restarted).
func produceTo(t *testing.T, addr, id string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t0 := time.Now()
	b, err := wire.AppendResult(nil, &wire.Result{ID: id, Device: "cam-1", Tier: "edge", Label: "cat", SentAt: t0, ExitedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestFollowBrokerLost: a followed read whose broker stops says so on
// stderr once, keeps retrying, says when the broker (restarted on the same
// address with its data) answers again, and prints the results that come
// after.
func TestFollowBrokerLost(t *testing.T) {
	dir := t.TempDir()
	b, err := kafka.StartBroker("127.0.0.1:0", 3, []string{topic}, nil, kafka.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	defer func() { b.Close() }()

	var out, warn testsupport.Buffer
	cfg := Config{Kafka: pipeline.Kafka{Brokers: []string{addr}}, Topic: topic, Out: &out, Warn: &warn,
		Follow: true, StallAfter: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Read(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Read: %v", err)
		}
	}()
	waitFor(t, &out, "LATENCY")
	produceTo(t, addr, "before")
	waitFor(t, &out, "before ")
	if warn.String() != "" {
		t.Fatalf("stderr with the broker there: %s", warn.String())
	}

	b.Close()
	waitFor(t, &warn, "results: lost the Kafka broker ("+addr)
	waitFor(t, &warn, "retrying until it answers")

	if b, err = kafka.StartBroker(addr, 3, []string{topic}, nil, kafka.DataDir(dir)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &warn, "results: the Kafka broker answers again after ")
	produceTo(t, addr, "after")
	waitFor(t, &out, "after ")

	lines := strings.Split(strings.TrimSuffix(warn.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "results: lost") || !strings.HasPrefix(lines[1], "results: the Kafka broker answers again") {
		t.Errorf("want one line when lost and one when back:\n%s", warn.String())
	}
	t.Logf("stderr:\n%s", warn.String())
}

// TestBrokerWatchStall: a broker that keeps its connections but answers no
// fetch (stopped, hung) is said lost once StallAfter passed without an
// answered fetch while the reader waited, reminded of every 30s with the
// attempts so far, and said back at the next fetch answered; failures
// while it is lost add attempts, not lines. A reader that does not wait
// (busy printing) sees no stall.
func TestBrokerWatchStall(t *testing.T) {
	var warn testsupport.Buffer
	w := newBrokerWatch(&warn, 15*time.Second)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0
	w.now = func() time.Time { return now }
	w.answered()
	w.polling(true)
	const t0Shift = 36 * time.Second // where the stalls begin
	for _, step := range []struct {
		at   time.Duration
		do   func()
		want string // the line it prints, or ""
	}{
		{0, func() { w.polling(false) }, ""},
		{20 * time.Second, w.check, ""}, // busy: the client fetches no more
		{21 * time.Second, func() { w.polling(true) }, ""},
		{35 * time.Second, w.check, ""},
		{36 * time.Second, func() { w.polling(false); w.answered(); w.polling(true) }, ""},
		{t0Shift + 14*time.Second, w.check, ""},
		{t0Shift + 15*time.Second, w.check, "results: lost the Kafka broker (no fetch answered for 15s); retrying until it answers (Ctrl-C stops)\n"},
		{t0Shift + 16*time.Second, w.check, ""},
		{t0Shift + 20*time.Second, func() { w.failed("127.0.0.1:9092: i/o timeout") }, ""},
		{t0Shift + 25*time.Second, func() { w.failed("127.0.0.1:9092: i/o timeout") }, ""},
		{t0Shift + 44*time.Second, w.check, ""},
		{t0Shift + 45*time.Second, w.check, "results: still no Kafka broker after 30s, 2 failed attempts (last: 127.0.0.1:9092: i/o timeout); retrying\n"},
		{t0Shift + 50*time.Second, w.answered, "results: the Kafka broker answers again after 35s (2 failed attempts); following\n"},
		{t0Shift + 60*time.Second, w.check, ""},
		{t0Shift + 61*time.Second, func() { w.failed("127.0.0.1:9092: connection refused") }, "results: lost the Kafka broker (127.0.0.1:9092: connection refused); retrying until it answers (Ctrl-C stops)\n"},
		{t0Shift + 62*time.Second, w.answered, "results: the Kafka broker answers again after 1s (1 failed attempt); following\n"},
	} {
		before := warn.String()
		now = t0.Add(step.at)
		step.do()
		if got := strings.TrimPrefix(warn.String(), before); got != step.want {
			t.Errorf("at %s: printed %q, want %q", step.at, got, step.want)
		}
	}
	w.stop()
	w.failed("127.0.0.1:9092: client closing")
	if strings.Contains(warn.String(), "closing") {
		t.Error("a failure after stop was reported")
	}
}
