package testsupport

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
