package up_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/process"
	"github.com/ddnn-continuum/ddnn/internal/up"
	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/ddnn-continuum/ddnn/models"
)

// steadyLoad posts images to the funnel at rate per second until stop
// closes (or max messages, or a minute), and returns the ids the funnel
// accepted and how many sends it refused or failed.
func steadyLoad(t *testing.T, funnel string, images [][]byte, rate, max int, stop <-chan struct{}) (accepted []string, refused int) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	deadline := time.After(time.Minute)
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range max {
		select {
		case <-stop:
			return accepted, refused
		case <-deadline:
			t.Errorf("load: still sending after a minute")
			return accepted, refused
		case <-tick.C:
		}
		id := fmt.Sprintf("roll-%d", i)
		req, _ := http.NewRequest("POST", "http://"+funnel+"/v1/ingest", bytes.NewReader(images[i%len(images)]))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Message-Id", id)
		resp, err := client.Do(req)
		if err != nil {
			refused++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			refused++
			continue
		}
		accepted = append(accepted, id)
	}
	return accepted, refused
}

// TestReplaceUnderLoad replaces every tier's replicas of a running `ddnn
// up` in turn (process runtime, Replace) under a steady 100 msg/s: no
// send is refused, no connector call fails (the old replicas drain),
// every accepted message gets exactly one result, none is dead-lettered, and every tier ends with new replicas only, of the
// new spec.
func TestReplaceUnderLoad(t *testing.T) {
	begun := time.Now()
	tp := writePipeline(t)
	started := make(chan func(string) runtime.Runtime, 1)
	up.OnSiteStarted(t, func(_ string, rt func(string) runtime.Runtime) { started <- rt })
	u := runUp(t, tp)
	tierRuntime := <-started

	// The new spec: the same pipeline from another file, as an apply
	// writes it.
	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(filepath.Dir(tp.file), "up-v2.yaml")
	if err := os.WriteFile(v2, y, 0o644); err != nil {
		t.Fatal(err)
	}

	ds, err := models.LoadDataset(tp.p.Path(tp.p.Eval.Images), tp.p.Path(tp.p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var accepted []string
	var refused int
	var load sync.WaitGroup
	load.Go(func() { accepted, refused = steadyLoad(t, tp.funnel, ds.Samples, 100, 6000, stop) })

	retriesBefore := connectorRetries(t, tp.admin)
	for _, tier := range tp.p.Tiers {
		rt, ok := tierRuntime(tier.Name).(*process.Runtime)
		if !ok {
			t.Fatalf("tier %s: runtime %T, want a process runtime", tier.Name, tierRuntime(tier.Name))
		}
		before := listed(t, rt)
		spec := rt.Spec()
		spec.Replica.File = v2
		took := time.Now()
		if err := rt.Replace(context.Background(), spec); err != nil {
			t.Fatalf("tier %s: %v", tier.Name, err)
		}
		after := listed(t, rt)
		t.Logf("tier %s: replicas %v replaced by %v in %s", tier.Name, before, after, time.Since(took).Round(time.Millisecond))
		// (The scaler may add a replica, of the new spec, once Replace
		// returned: the unit tests check the count.)
		if len(after) == 0 || slices.ContainsFunc(after, func(id string) bool { return slices.Contains(before, id) }) {
			t.Errorf("tier %s: replicas %v after Replace, were %v: want new ones only", tier.Name, after, before)
		}
		if got := rt.Spec().Replica.File; got != v2 {
			t.Errorf("tier %s: replicas run %s, want %s", tier.Name, got, v2)
		}
	}
	// A drained replica answers every call it took: no call failed for
	// the replacements (the connector would have retried it).
	if n := connectorRetries(t, tp.admin) - retriesBefore; n > 0 {
		t.Errorf("connectors retried %v calls during the replacements", n)
	}
	close(stop)
	load.Wait()
	t.Logf("%d messages accepted, %d refused across the replacements", len(accepted), refused)
	if refused > 0 {
		t.Errorf("%d sends refused during the replacements", refused)
	}

	cl, err := kafka.NewClient(&tp.p.Kafka, "test", nil, nil, kgo.ConsumeTopics(tp.p.ResultsTopic()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	missing, dups := resultsOf(t, cl, accepted, time.Minute)
	if len(missing) > 0 {
		t.Errorf("%d of %d accepted messages have no result: %s", len(missing), len(accepted), strings.Join(missing[:min(len(missing), 20)], " "))
	}
	if dups > 0 {
		t.Errorf("%d duplicate results", dups)
	}
	adm := kadm.NewClient(cl)
	for _, tier := range tp.p.Tiers {
		n, err := kafka.CountRecords(context.Background(), adm, tp.p.DLQTopic(tier.Name), begun)
		if err != nil {
			t.Fatal(err)
		}
		if n.Total > 0 {
			t.Errorf("tier %s: %d records dead-lettered", tier.Name, n.Total)
		}
	}

	u.stop(t)
}

// connectorRetries is the sum of the connectors' retried calls, from
// the admin address' /metrics.
func connectorRetries(t *testing.T, admin string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(get(t, "http://"+admin+"/metrics"), "\n") {
		if !strings.HasPrefix(line, "ddnn_connector_retries_total") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// listed are the ids of rt's listed replicas.
func listed(t *testing.T, rt runtime.Runtime) []string {
	t.Helper()
	reps, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range reps {
		ids = append(ids, r.ID)
	}
	return ids
}

// resultsOf reads results from cl until every id in ids has one or
// timeout passes, then half a second more for late duplicates; it returns
// the ids without a result and the duplicates.
func resultsOf(t *testing.T, cl *kgo.Client, ids []string, timeout time.Duration) (missing []string, dups int) {
	t.Helper()
	count := map[string]int{}
	for _, id := range ids {
		count[id] = 0
	}
	have := 0
	read := func(ctx context.Context) {
		for _, rec := range cl.PollFetches(ctx).Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatalf("result record: %v", err)
			}
			if n, ok := count[r.ID]; ok {
				if n == 0 {
					have++
				}
				count[r.ID] = n + 1
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for have < len(ids) && ctx.Err() == nil {
		read(ctx)
	}
	late, cancelLate := context.WithTimeout(context.Background(), 500*time.Millisecond)
	read(late)
	cancelLate()
	for _, id := range ids {
		if count[id] == 0 {
			missing = append(missing, id)
		}
		dups += max(count[id]-1, 0)
	}
	return missing, dups
}
