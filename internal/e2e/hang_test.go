package e2e

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestUpStoppedAnswersWithinProduceTimeout: with `ddnn up` (the process
// that runs the embedded broker) stopped by SIGSTOP, an ingest is answered
// 503 with Retry-After within about kafka.produce_timeout (1s here), not
// once the broker runs again; after SIGCONT the same message, sent again
// with its id, is taken, and every message taken gets a result.
func TestUpStoppedAnswersWithinProduceTimeout(t *testing.T) {
	tp := writePipeline(t, "upstop", 1, "")
	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	y = []byte(strings.Replace(string(y), "kafka:\n", "kafka:\n  produce_timeout: 1s\n", 1))
	if err := os.WriteFile(tp.file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	p := up(t, tp)
	image := testSet(t).Samples[0]
	send := func(id string) (code int, retryAfter string, took time.Duration) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+tp.funnel+"/v1/ingest", bytes.NewReader(image))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Message-Id", id)
		cl := &http.Client{Timeout: 30 * time.Second}
		defer cl.CloseIdleConnections()
		began := time.Now()
		resp, err := cl.Do(req)
		took = time.Since(began)
		if err != nil {
			t.Logf("send %s: %v after %s", id, err, took)
			return 0, "", took
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), took
	}
	if code, _, took := send("stop-before"); code != http.StatusAccepted {
		t.Fatalf("send before the stop: %d after %s", code, took)
	}

	pid := p.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	continued := false
	cont := func() {
		if !continued {
			continued = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(cont) // before up's own cleanup stops it
	stopped := time.Now()
	code, retryAfter, took := send("stop-during")
	t.Logf("send while ddnn up is stopped (produce_timeout 1s): %d (Retry-After %q) after %s", code, retryAfter, took.Round(time.Millisecond))
	if code != http.StatusServiceUnavailable || retryAfter == "" {
		t.Errorf("send while ddnn up is stopped: %d, Retry-After %q; want 503 with Retry-After", code, retryAfter)
	}
	if took > 5*time.Second {
		t.Errorf("send while ddnn up is stopped answered after %s, want about produce_timeout (1s)", took.Round(time.Millisecond))
	}
	// Stopped for a while longer than the answer took, as a device would see.
	for time.Since(stopped) < 3*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	cont()

	testsupport.WaitFor(t, 30*time.Second, "the retry with the same id taken after SIGCONT", func() bool {
		code, _, _ := send("stop-during")
		return code == http.StatusAccepted
	})
	missing, dups := awaitResults(t, tp.broker, tp.name+".results", []string{"stop-before", "stop-during"}, 30*time.Second)
	t.Logf("after SIGCONT: lost %d, duplicates %d (a 503's record stored anyway, then retried)", len(missing), dups)
	reportLost(t, "after SIGSTOP and SIGCONT of ddnn up", []string{"stop-before", "stop-during"}, missing)
}
