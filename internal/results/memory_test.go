package results

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// readerEnv makes the test binary a `ddnn results` of its own: it reads
// the results topic on the broker the variable names to its end, as a
// table on stdout (see readChild), so a test can measure its memory.
const readerEnv = "DDNN_RESULTS_TEST_READER"

// readChild is the test binary run with readerEnv: a full read, as `ddnn
// results` does without flags.
func readChild(addr string) int {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	cfg := Config{Kafka: pipeline.Kafka{Brokers: []string{addr}}, Topic: topic, Out: out, Timeout: 5 * time.Minute}
	if err := Read(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// TestFullReadMemoryBounded: a full read of a topic with many results
// prints them as it goes: its peak memory does not grow with the topic.
// The read runs as a process of its own, whose maximum resident set the
// kernel reports when it exits. (Holding the whole table for alignment,
// with kgo's default fetch sizes, the read of 200,000 results peaked at
// 210-220 MB, 655 MB with the race detector; printed a chunk at a time
// with fetches bounded, at 50-65 MB, about 150 MB with the race detector,
// of which about 20 MB is the process' size reading 10 results.)
func TestFullReadMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("produces 200,000 results")
	}
	const n = 200_000
	c := newCluster(t)
	produceMany(t, c, n)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), readerEnv+"="+c.c.ListenAddrs()[0], "GODEBUG=gctrace=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines++
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the read: %v", err)
	}
	if lines != n+1 {
		t.Fatalf("the read printed %d lines, want a header and %d results", lines, n)
	}
	maxRSS := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
	t.Logf("full read of %d results: max RSS %.1f MB", n, float64(maxRSS)/1e6)
	limit := int64(100e6)
	if raceEnabled {
		limit = 250e6 // the race detector's shadow memory
	}
	if maxRSS > limit {
		t.Errorf("a full read of %d results peaked at %.1f MB of memory, want at most %.0f MB", n, float64(maxRSS)/1e6, float64(limit)/1e6)
	}
}

// produceMany writes n results of common size over the topic's three
// partitions.
func produceMany(t *testing.T, c *cluster, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(20_000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := range n {
		at := c.t0.Add(time.Duration(i) * time.Millisecond)
		r := wire.Result{ID: fmt.Sprintf("%032x", i), Device: "cam-" + strconv.Itoa(i%500), Tier: "fog", Class: 9, Label: "Ankle boot",
			Confidence: 0.93, SentAt: at, ExitedAt: at.Add(23 * time.Millisecond),
			Hops: []wire.Hop{{Tier: "edge", At: at.Add(5 * time.Millisecond)}, {Tier: "fog", At: at.Add(20 * time.Millisecond)}}}
		b, err := wire.AppendResult(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Partition: int32(i % 3), Key: []byte(r.ID), Value: b, Timestamp: at},
			func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}
