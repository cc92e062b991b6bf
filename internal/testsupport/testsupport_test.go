package testsupport

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestBuffer: writers and a reader at once (run with -race), and Cut.
func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 400) {
		t.Fatalf("buffer holds %d bytes, want 400", len(got))
	}
	if rest := b.Cut(390); rest != strings.Repeat("x", 10) || len(b.String()) != 390 {
		t.Errorf("Cut(390) = %q, leaving %d bytes", rest, len(b.String()))
	}
}

// TestWaitFor: a condition that comes true ends the wait; one that never
// does fails the test after the deadline.
func TestWaitFor(t *testing.T) {
	start := time.Now()
	WaitFor(t, 5*time.Second, "the condition", func() bool { return time.Since(start) > 20*time.Millisecond })

	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitFor(ft, 30*time.Millisecond, "what never happens", func() bool { return false })
	}()
	<-done
	if !strings.Contains(ft.msg, "waited 30ms for what never happens") {
		t.Errorf("failure %q", ft.msg)
	}
}

// fatalRecorder records a Fatalf and ends the goroutine, as testing does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestKafka: a record produced to the cluster's topic is read back.
func TestKafka(t *testing.T) {
	c := KafkaCluster(t, 2, "t")
	cl := KafkaClient(t, kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"), kgo.DefaultProduceTopic("t"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil || fs.NumRecords() != 1 || string(fs.Records()[0].Value) != "v" {
		t.Fatalf("fetched %d records, %v", fs.NumRecords(), err)
	}
}

// TestSiteClusters: each declared site gets a cluster of its own holding
// its topics, and its kafka.brokers point at it.
func TestSiteClusters(t *testing.T) {
	p, err := pipeline.Parse([]byte(`
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
sites:
  - {name: edge, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
  - {name: cloud, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: 127.0.0.1:0}}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, site: cloud, model: c.onnx, exit: {output: o}}
`))
	if err != nil {
		t.Fatal(err)
	}
	addrs := SiteClusters(t, p)
	if addrs["edge"] == "" || addrs["edge"] == addrs["cloud"] {
		t.Fatalf("addresses %v: want one cluster per site", addrs)
	}
	for _, s := range p.SiteList {
		if len(s.Kafka.Brokers) != 1 || s.Kafka.Brokers[0] != addrs[s.Name] {
			t.Errorf("site %s: brokers %v, want [%s]", s.Name, s.Kafka.Brokers, addrs[s.Name])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		topics, err := kadm.NewClient(KafkaClient(t, kgo.SeedBrokers(addrs[s.Name]))).ListTopics(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := topics.Names(), p.TopicsOn(s.Name); !reflect.DeepEqual(sorted(got), sorted(want)) {
			t.Errorf("site %s: topics %v, want %v", s.Name, got, want)
		}
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// TestShipped: every file a shipped pipeline names is made absolute and
// exists; nothing else changes.
func TestShipped(t *testing.T) {
	for _, rel := range []string{"deploy/pipeline.yaml", "deploy/examples/continuum.yaml"} {
		y := Shipped(t, rel)
		ms := relativePath.FindAllStringSubmatch(y, -1)
		if len(ms) != 0 {
			t.Errorf("%s: still relative: %v", rel, ms)
		}
		abs := regexp.MustCompile(`(?m)^\s*(?:model|images|labels):\s*(/\S+)$`).FindAllStringSubmatch(y, -1)
		if len(abs) != 5 {
			t.Errorf("%s: %d absolute files, want 5 (3 models, images, labels)", rel, len(abs))
		}
		for _, m := range abs {
			if _, err := os.Stat(m[1]); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
		}
	}
}
