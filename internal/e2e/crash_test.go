package e2e

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// load sends images[i] for i in [from, to) at about rate per second from
// one goroutine, recording the ids the funnel accepted.
type load struct {
	mu       sync.Mutex
	accepted []string
	done     chan struct{}
}

func startLoad(t testing.TB, funnel string, images [][]byte, prefix string, n int, rate float64) *load {
	l := &load{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		client := &http.Client{Timeout: 10 * time.Second}
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for i := 0; i < n; i++ {
			<-tick.C
			id := prefix + strconv.Itoa(i)
			req, _ := http.NewRequest("POST", "http://"+funnel+"/v1/ingest", bytes.NewReader(images[i%len(images)]))
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("X-Message-Id", id)
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				l.mu.Lock()
				l.accepted = append(l.accepted, id)
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *load) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.accepted...)
}

// checkAtLeastOnce: every accepted id has a result; returns the duplicates.
func checkAtLeastOnce(t *testing.T, brokers, topic, prefix string, accepted []string) int {
	t.Helper()
	got := collectResults(t, brokers, topic, prefix, len(accepted), 90*time.Second)
	dups := 0
	for _, id := range accepted {
		switch n := len(got[id]); {
		case n == 0:
			t.Errorf("accepted %s has no result", id)
		case n > 1:
			dups += n - 1
		}
	}
	return dups
}

// TestKillReplica SIGKILLs one of two edge replicas while images flow; the
// connector retries on the other and the supervisor restarts the killed one.
func TestKillReplica(t *testing.T) {
	tp := writePipeline(t, "killrep", 2, "")
	p := up(t, tp)
	reps := childPIDs(t, p.cmd.Process.Pid, "inference", "--tier edge")
	if len(reps) != 2 {
		t.Fatalf("%d edge replicas, want 2", len(reps))
	}
	ds := testSet(t)
	l := startLoad(t, tp.funnel, ds.Samples, "kr-", 1500, 500)
	time.Sleep(time.Second)
	if err := syscall.Kill(reps[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-l.done
	dups := checkAtLeastOnce(t, tp.broker, tp.name+".results", "kr-", l.ids())
	after := childPIDs(t, p.cmd.Process.Pid, "inference", "--tier edge")
	t.Logf("accepted %d, duplicates %d; edge replicas after the kill: %v (killed %d)", len(l.ids()), dups, after, reps[0])
	if len(after) != 2 {
		t.Errorf("%d edge replicas after the kill, want the killed one restarted", len(after))
	}
}

// TestKillConnector runs every role as its own process against a
// standalone broker, SIGKILLs the edge connector while images flow, starts
// it again, and checks every accepted image still gets a result.
func TestKillConnector(t *testing.T) {
	tp := writePipeline(t, "killconn", 1, "")
	start(t, "broker", "-f", tp.file)
	waitFor(t, "broker", 10*time.Second, func() bool { return dialable(tp.broker) })
	start(t, "funnel", "-f", tp.file, "--brokers", tp.broker)
	waitFor(t, "funnel", 20*time.Second, func() bool { return ready("http://" + tp.funnel + "/readyz") })
	replica := map[string]string{}
	for _, tier := range []string{"edge", "fog", "cloud"} {
		addr := freeAddr(t)
		start(t, "inference", "-f", tp.file, "--tier", tier, "--listen", addr, "--funnel", "http://"+tp.funnel)
		waitFor(t, tier+" replica", 20*time.Second, func() bool { return ready("http://" + addr + "/readyz") })
		replica[tier] = "http://" + addr
	}
	connector := func(tier string) *proc {
		admin := freeAddr(t)
		c := start(t, "connector", "-f", tp.file, "--tier", tier, "--replicas", replica[tier], "--brokers", tp.broker, "--admin", admin)
		waitFor(t, tier+" connector", 20*time.Second, func() bool { return ready("http://" + admin + "/readyz") })
		return c
	}
	edge := connector("edge")
	connector("fog")
	connector("cloud")

	ds := testSet(t)
	l := startLoad(t, tp.funnel, ds.Samples, "kc-", 1500, 500)
	time.Sleep(time.Second)
	edge.cmd.Process.Signal(syscall.SIGKILL)
	<-edge.exited
	time.Sleep(500 * time.Millisecond) // records pile up meanwhile
	connector("edge")
	<-l.done
	dups := checkAtLeastOnce(t, tp.broker, tp.name+".results", "kc-", l.ids())
	t.Logf("accepted %d, duplicates after the connector crash: %d", len(l.ids()), dups)
}

// TestRestartAgainstStandaloneBroker stops `ddnn up` with SIGTERM under
// load while Kafka lives on in a standalone broker, starts it again, and
// checks no accepted image is left without a result.
func TestRestartAgainstStandaloneBroker(t *testing.T) {
	broker := freeAddr(t)
	tp := writePipeline(t, "restart", 1, broker)
	start(t, "broker", "-f", tp.file, "--listen", broker)
	waitFor(t, "broker", 10*time.Second, func() bool { return dialable(broker) })
	p := up(t, tp)
	ds := testSet(t)
	l := startLoad(t, tp.funnel, ds.Samples, "rs-", 2000, 800)
	time.Sleep(time.Second)
	stopped := p.term(t)
	<-l.done
	up(t, tp)
	dups := checkAtLeastOnce(t, broker, tp.name+".results", "rs-", l.ids())
	t.Logf("stopped in %s; accepted %d before the stop; duplicates after restart %d", stopped.Round(time.Millisecond), len(l.ids()), dups)
}

func dialable(addr string) bool {
	c := &http.Client{Timeout: 200 * time.Millisecond}
	_, err := c.Get("http://" + addr) // any TCP answer will do
	return err == nil || !isRefused(err)
}

func isRefused(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("connection refused"))
}
