package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// load sends images to the funnel at rate per second over up to
// loadWorkers connections, each message with its own X-Message-Id (prefix
// and a sequence number): n messages, or until stop when n is 0. It records
// the ids the funnel accepted (202) and those it refused or did not answer,
// with why.
type load struct {
	mu       sync.Mutex
	accepted []string
	refused  []string
	reasons  map[string]int // why sends were refused: "status 503", "connection refused", …
	slowest  time.Duration  // the longest a send took to be accepted

	stopc    chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	began    time.Time
	ended    time.Time
}

const loadWorkers = 64

func startLoad(t testing.TB, funnel string, images [][]byte, prefix string, n int, rate float64) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: loadWorkers}
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	return runLoad(n, rate, func(l *load, i, worker int) {
		l.send(client, funnel, prefix+strconv.Itoa(i), "load-"+strconv.Itoa(worker), images[i%len(images)])
	}, tr.CloseIdleConnections)
}

// runLoad calls send for message i by one of loadWorkers workers, at rate
// per second: n messages, or until stop when n is 0; then ended.
func runLoad(n int, rate float64, send func(l *load, i, worker int), ended func()) *load {
	l := &load{reasons: map[string]int{}, stopc: make(chan struct{}), done: make(chan struct{}), began: time.Now()}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < loadWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				send(l, i, w)
			}
		}()
	}
	go func() {
		defer close(l.done)
		// Open loop: send i is due at began + i/rate, however long the
		// earlier ones took (up to loadWorkers at once).
		interval := time.Duration(float64(time.Second) / rate)
		timer := time.NewTimer(0)
		defer timer.Stop()
	send:
		for i := 0; n == 0 || i < n; i++ {
			timer.Reset(time.Until(l.began.Add(time.Duration(i) * interval)))
			select {
			case <-timer.C:
			case <-l.stopc:
				break send
			}
			select {
			case work <- i:
			case <-l.stopc:
				break send
			}
		}
		close(work)
		wg.Wait()
		ended()
		l.ended = time.Now()
	}()
	return l
}

func (l *load) send(client *http.Client, funnel, id, device string, image []byte) {
	req, _ := http.NewRequest("POST", "http://"+funnel+"/v1/ingest", bytes.NewReader(image))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Message-Id", id)
	req.Header.Set("X-Device-Id", device)
	reason := ""
	began := time.Now()
	resp, err := client.Do(req)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case err != nil && os.IsTimeout(err):
		reason = "no answer in time"
	case errors.Is(err, syscall.ECONNRESET):
		reason = "connection reset"
	case errors.Is(err, io.EOF):
		reason = "connection closed unanswered"
	case err != nil:
		reason = "connection broken"
	default:
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			reason = "status " + strconv.Itoa(resp.StatusCode)
		}
	}
	l.record(id, reason, time.Since(began))
}

// record counts message id accepted (reason "") after took, or refused
// for reason.
func (l *load) record(id, reason string, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if reason == "" {
		l.accepted = append(l.accepted, id)
		l.slowest = max(l.slowest, took)
		return
	}
	l.refused = append(l.refused, id)
	l.reasons[reason]++
}

// stop ends a load that runs until stopped and waits for its last sends.
func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.stopc) })
	<-l.done
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
	reps := childPIDs(t, p.cmd.Process.Pid, "inference", "--tier=edge")
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
	after := childPIDs(t, p.cmd.Process.Pid, "inference", "--tier=edge")
	t.Logf("accepted %d, duplicates %d; edge replicas after the kill: %v (killed %d)", len(l.ids()), dups, after, reps[0])
	if len(after) != 2 {
		t.Errorf("%d edge replicas after the kill, want the killed one restarted", len(after))
	}
}

// TestKillConnector runs every role as its own process against a
// standalone broker, SIGKILLs the edge connector while images flow, starts
// it again, and checks every accepted image still gets a result.
func TestKillConnector(t *testing.T) {
	r := startRoles(t, "killconn", 1)
	ds := testSet(t)
	l := startLoad(t, r.tp.funnel, ds.Samples, "kc-", 1500, 500)
	time.Sleep(time.Second)
	r.kill("edge connector")
	time.Sleep(500 * time.Millisecond) // records pile up meanwhile
	r.run("edge connector")
	<-l.done
	dups := checkAtLeastOnce(t, r.tp.broker, r.tp.name+".results", "kc-", l.ids())
	t.Logf("accepted %d, duplicates after the connector crash: %d", len(l.ids()), dups)
}

// TestRestartAgainstStandaloneBroker stops `ddnn up` with SIGTERM under
// load while Kafka lives on in a standalone broker, starts it again, and
// checks no accepted image is left without a result.
func TestRestartAgainstStandaloneBroker(t *testing.T) {
	broker := proctest.FreeAddr(t)
	tp := writePipeline(t, "restart", 1, broker)
	start(t, "broker", "-f", tp.file, "--listen", broker)
	testsupport.WaitFor(t, 10*time.Second, "broker", func() bool { return dialable(broker) })
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
