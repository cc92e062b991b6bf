package connector

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestReloadChangesBatching: a running connector batching up to 8 is
// given a file with max_batch 2; records produced after the reload travel
// in calls of at most 2, with no restart. A reload raising max_batch over
// what the running replicas take, or of a file that does not load, is
// logged and changes nothing.
func TestReloadChangesBatching(t *testing.T) {
	e := setup(t)
	var mu sync.Mutex
	largest := map[string]int{} // by id prefix: the largest call carrying it
	a := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		time.Sleep(5 * time.Millisecond) // a backlog builds: batches fill
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			p := m.ID[:1]
			largest[p] = max(largest[p], len(msgs))
		}
		return 200, ""
	})
	largestOf := func(prefix string) int {
		mu.Lock()
		defer mu.Unlock()
		return largest[prefix]
	}
	var logs testsupport.Buffer
	c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: []string{a.srv.URL}, Logger: slog.New(slog.NewTextHandler(&logs, nil)), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, c)
	e.produce(t, 200, "m")
	testsupport.WaitFor(t, 15*time.Second, "the first records delivered", func() bool { return len(a.ids()) >= 200 && e.lag(t) == 0 })
	if got := largestOf("m"); got <= 2 || got > 8 {
		t.Fatalf("largest call before the reload: %d, want 3..8", got)
	}

	file := filepath.Join(t.TempDir(), "p.yaml")
	write := func(y string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	role := command.Role{File: file}
	reload := command.Reloader{Load: role.LoadPipeline, Apply: c.Reload, Log: c.log}

	// Over what the replicas take: refused.
	write(strings.Replace(testYAML, "connector: {max_batch: 8,", "inference: {max_batch: 4096}\n    connector: {max_batch: 2000, max_pending_records: 10000,", 1))
	if err := reload.Reload(); err == nil || !strings.Contains(err.Error(), "roll the replicas out first") {
		t.Fatalf("reload to max_batch 2000: %v, want refused", err)
	}
	// Not loadable: refused.
	write(strings.Replace(testYAML, "max_batch: 8", "max_batch: 0", 1))
	if err := reload.Reload(); err == nil {
		t.Fatal("reload to max_batch 0 succeeded")
	}
	if got := c.live.Load().MaxBatch; got != 8 {
		t.Fatalf("refused reloads left max_batch %d, want 8", got)
	}

	write(strings.Replace(testYAML, "max_batch: 8, max_wait: 2ms, in_flight_per_replica: 2", "max_batch: 2, max_wait: 2ms, in_flight_per_replica: 3", 1))
	if err := reload.Reload(); err != nil {
		t.Fatal(err)
	}
	e.produce(t, 200, "n")
	testsupport.WaitFor(t, 15*time.Second, "the records after the reload delivered", func() bool { return len(a.ids()) >= 400 && e.lag(t) == 0 })
	if got := largestOf("n"); got != 2 {
		t.Errorf("largest call after the reload to max_batch 2: %d", got)
	}
	for _, line := range []string{
		`msg="reload: applied" setting=connector.max_batch old=8 new=2`,
		`setting=connector.in_flight_per_replica old=2 new=3`,
		`msg="reload: nothing changed"`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("logs lack %q:\n%s", line, logs.String())
		}
	}
}
