package kafka

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerChildEnv makes the test binary run a durable broker on the named
// directory instead of the tests, so a test can SIGKILL a real process.
const brokerChildEnv = "DDNN_TEST_BROKER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(brokerChildEnv); dir != "" {
		b, err := StartBroker("127.0.0.1:0", 2, []string{"t"}, nil, DataDir(dir))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(b.Addr())
		select {} // until killed
	}
	os.Exit(m.Run())
}

// startBrokerProcess runs a durable broker on dir in a child process and
// returns its address and the process.
func startBrokerProcess(t *testing.T, dir string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), brokerChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "error:") {
		t.Fatalf("broker process: %q %v", line, err)
	}
	return strings.TrimSpace(line), cmd
}

func produce(t testing.TB, cl *kgo.Client, topic string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
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

// TestBrokerSurvivesSIGKILL: records a producer had acknowledged and
// offsets a group had committed are there after the broker process is
// SIGKILLed and started again on the same directory, without SyncWrites.
func TestBrokerSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	addr, cmd := startBrokerProcess(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	produce(t, cl, "t", n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	// Commit half of every partition for a group.
	commits := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		commits.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset / 2, LeaderEpoch: -1})
	})
	if err := adm.CommitAllOffsets(ctx, "g", commits); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	b, err := StartBroker("127.0.0.1:0", 2, []string{"t"}, nil, DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	adm2 := kadm.NewClient(cl2)
	ends2, err := adm2.ListEndOffsets(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends2.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		if want, _ := ends.Lookup(o.Topic, o.Partition); o.Offset != want.Offset {
			t.Errorf("partition %d ends at %d after the kill, %d before", o.Partition, o.Offset, want.Offset)
		}
	})
	if total != n {
		t.Errorf("%d records after the kill, want %d", total, n)
	}
	got, err := adm2.FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	commits.Each(func(o kadm.Offset) {
		if c, ok := got.Lookup(o.Topic, o.Partition); !ok || c.At != o.At {
			t.Errorf("partition %d: committed %d before the kill, %v after", o.Partition, o.At, c.At)
		}
	})
	// The records themselves read back.
	cons, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for len(seen) < n && ctx.Err() == nil {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = true })
	}
	if len(seen) != n {
		t.Errorf("read %d distinct records after the kill, want %d", len(seen), n)
	}
}

// TestBrokerDataDirLocked: a second broker on a directory in use is
// refused with the holder's pid; the directory is free after Close.
func TestBrokerDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	b, err := StartBroker("127.0.0.1:0", 1, []string{"t"}, nil, DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartBroker("127.0.0.1:0", 1, []string{"t"}, nil, DataDir(dir))
	want := fmt.Sprintf("embedded broker data dir %s is in use by another broker (pid %d)", dir, os.Getpid())
	if err == nil || err.Error() != want {
		t.Errorf("second broker: %v, want %q", err, want)
	}
	b.Close()
	b, err = StartBroker("127.0.0.1:0", 1, []string{"t"}, nil, DataDir(dir))
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	b.Close()
}

// TestBrokerRestartAddsTopics: a restart keeps the records and creates the
// topics the pipeline gained meanwhile.
func TestBrokerRestartAddsTopics(t *testing.T) {
	dir := t.TempDir()
	b, err := StartBroker("127.0.0.1:0", 1, []string{"a"}, nil, DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	produce(t, cl, "a", 10)
	cl.Close()
	b.Close()

	b, err = StartBroker("127.0.0.1:0", 1, []string{"a", "b"}, nil, DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("a", 0); o.Err != nil || o.Offset != 10 {
		t.Errorf("topic a after restart: end %d, err %v; want 10", o.Offset, o.Err)
	}
	if o, ok := ends.Lookup("b", 0); !ok || o.Err != nil {
		t.Errorf("topic b after restart: %+v", o)
	}
}

// BenchmarkBrokerProduce measures acknowledged produces in memory, on
// disk, and on disk with an fsync per batch: "burst" the way a loaded
// funnel produces (acks all, 1 ms linger, every record in flight at once,
// so batches are large), "one-by-one" one record per batch and round trip
// (a lightly loaded pipeline, where every record pays a whole fsync).
func BenchmarkBrokerProduce(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts func(dir string) []BrokerOpt
	}{
		{"memory", func(string) []BrokerOpt { return nil }},
		{"disk", func(dir string) []BrokerOpt { return []BrokerOpt{DataDir(dir)} }},
		{"disk-sync", func(dir string) []BrokerOpt { return []BrokerOpt{DataDir(dir), SyncWrites()} }},
	} {
		for _, burst := range []bool{true, false} {
			name := mode.name + "/one-by-one"
			if burst {
				name = mode.name + "/burst"
			}
			b.Run(name, func(b *testing.B) {
				br, err := StartBroker("127.0.0.1:0", 4, []string{"t"}, nil, mode.opts(b.TempDir())...)
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond))
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				value := make([]byte, 800) // about one raw sample with its envelope
				b.SetBytes(int64(len(value)))
				b.ResetTimer()
				var wg sync.WaitGroup
				for i := 0; i < b.N; i++ {
					r := &kgo.Record{Topic: "t", Key: []byte(strconv.Itoa(i)), Value: value}
					if !burst {
						if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
							b.Fatal(err)
						}
						continue
					}
					wg.Add(1)
					cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
						if err != nil {
							b.Error(err)
						}
						wg.Done()
					})
				}
				wg.Wait()
			})
		}
	}
}
