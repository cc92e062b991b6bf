package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// awaitResults reads the results topic from the start until every id in
// accepted has a result or timeout passes; it returns the ids without one
// and the duplicates.
func awaitResults(t *testing.T, brokers, topic string, accepted []string, timeout time.Duration) (missing []string, dups int) {
	t.Helper()
	want := map[string]int{}
	for _, id := range accepted {
		want[id] = 0
	}
	cl := readFromStart(t, brokers, topic)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	have := 0
	read := func(ctx context.Context) {
		for _, rec := range cl.PollFetches(ctx).Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatalf("result record: %v", err)
			}
			if n, ok := want[r.ID]; ok {
				if n == 0 {
					have++
				}
				want[r.ID] = n + 1
			}
		}
	}
	for have < len(want) && ctx.Err() == nil {
		read(ctx)
	}
	// Read a little longer so late duplicates are counted too.
	lctx, lcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	read(lctx)
	lcancel()
	for id, n := range want {
		if n == 0 {
			missing = append(missing, id)
		}
		dups += max(n-1, 0)
	}
	sort.Strings(missing)
	return missing, dups
}

// reportLost fails the test for every accepted id without a result.
func reportLost(t *testing.T, what string, accepted, missing []string) {
	t.Helper()
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d accepted messages have no result: %s", what, len(missing), len(accepted), strings.Join(missing[:min(len(missing), 20)], " "))
	}
}

// logBacklog logs each tier's committed offsets and log end offsets, to
// show where missing messages wait.
func logBacklog(t *testing.T, brokers, name string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tier := range []string{"edge", "fog", "cloud"} {
		topic := name + "." + tier + ".in"
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Logf("%s: %v", topic, err)
			continue
		}
		commits, err := adm.FetchOffsets(ctx, name+"."+tier+".connector")
		if err != nil {
			t.Logf("%s: %v", topic, err)
			continue
		}
		var parts []string
		ends.Each(func(e kadm.ListedOffset) {
			c, _ := commits.Lookup(topic, e.Partition)
			parts = append(parts, fmt.Sprintf("p%d %d/%d", e.Partition, c.At, e.Offset))
		})
		sort.Strings(parts)
		t.Logf("%s committed/end: %s", topic, strings.Join(parts, ", "))
	}
}

// killChild SIGKILLs the one child of up whose command line holds words.
func killChild(t *testing.T, up *proc, words ...string) int {
	t.Helper()
	pids := childPIDs(t, up.cmd.Process.Pid, words...)
	if len(pids) != 1 {
		t.Fatalf("%d children %v, want 1", len(pids), words)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return pids[0]
}

// waitRestarted waits until up has a child with words other than old.
func waitRestarted(t *testing.T, up *proc, old int, words ...string) time.Duration {
	t.Helper()
	began := time.Now()
	testsupport.WaitFor(t, 20*time.Second, strings.Join(words, " ")+" restarted", func() bool {
		pids := childPIDs(t, up.cmd.Process.Pid, words...)
		return len(pids) == 1 && pids[0] != old
	})
	return time.Since(began)
}

// TestUpKillFogReplicaThenFunnel: under `ddnn up` with one replica per
// tier and ~300 msg/s, SIGKILL the fog replica, then the funnel; every
// accepted message gets a result, and no send is refused.
func TestUpKillFogReplicaThenFunnel(t *testing.T) {
	tp := writePipeline(t, "killfog", 1, "")
	p := up(t, tp)
	ds := testSet(t)
	began := time.Now()
	l := startLoad(t, tp.funnel, ds.Samples, "kf-", 3000, 300)
	time.Sleep(2 * time.Second)
	fog := killChild(t, p, "inference", "--tier=fog")
	fogBack := waitRestarted(t, p, fog, "inference", "--tier=fog")
	time.Sleep(3 * time.Second)
	funnel := killChild(t, p, "funnel", "--f=")
	funnelBack := waitRestarted(t, p, funnel, "funnel", "--f=")
	<-l.done
	sent := time.Since(began)
	accepted := l.ids()
	missing, dups := awaitResults(t, tp.broker, tp.name+".results", accepted, 30*time.Second)
	t.Logf("sent 3000 in %s, accepted %d, lost %d, duplicates %d; fog replica back after %s, funnel after %s; all results %s after the last send",
		sent.Round(time.Millisecond), len(accepted), len(missing), dups, fogBack.Round(time.Millisecond), funnelBack.Round(time.Millisecond),
		(time.Since(began) - sent).Round(time.Millisecond))
	reportLost(t, "after killing the fog replica and the funnel", accepted, missing)
	// The funnel's socket stays bound across its restart: a send made
	// meanwhile waits for the new funnel; only those in flight break.
	l.mu.Lock()
	t.Logf("refused or unanswered: %v", l.reasons)
	if n := l.reasons["connection refused"]; n > 0 {
		t.Errorf("%d sends refused while the funnel restarted", n)
	}
	l.mu.Unlock()
	if len(missing) > 0 {
		logBacklog(t, tp.broker, tp.name)
		if dir := os.Getenv("DDNN_E2E_KEEP_LOG"); dir != "" {
			os.WriteFile(filepath.Join(dir, t.Name()+".log"), []byte(p.out.String()), 0o644)
		}
	}
}

// TestUpSIGKILLRestart: SIGKILL `ddnn up` itself mid-load (its children
// die with it), start it again with the same YAML from the same directory,
// send more: every message accepted before or after has a result.
func TestUpSIGKILLRestart(t *testing.T) {
	tp := writePipeline(t, "upkill", 1, "")
	p := up(t, tp)
	children := childPIDs(t, p.cmd.Process.Pid)
	ds := testSet(t)
	before := startLoad(t, tp.funnel, ds.Samples, "kb-", 900, 300)
	time.Sleep(1500 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	<-before.done
	waitGone(t, "the killed supervisor's children to be gone", children)
	restarted := time.Now()
	p2 := up(t, tp)
	ready := time.Since(restarted)
	after := startLoad(t, tp.funnel, ds.Samples, "ka-", 600, 300)
	<-after.done
	accepted := append(before.ids(), after.ids()...)
	missing, dups := awaitResults(t, tp.broker, tp.name+".results", accepted, 30*time.Second)
	t.Logf("accepted %d before the kill and %d after the restart (ready in %s), lost %d, duplicates %d",
		len(before.ids()), len(after.ids()), ready.Round(time.Millisecond), len(missing), dups)
	if len(before.ids()) == 0 || len(after.ids()) == 0 {
		t.Errorf("accepted %d before and %d after: the test sent nothing on one side", len(before.ids()), len(after.ids()))
	}
	reportLost(t, "after SIGKILL of ddnn up and a restart", accepted, missing)
	for _, line := range strings.Split(p2.out.String(), "\n") {
		if strings.Contains(line, "left from the last run") {
			t.Log(strings.TrimSpace(line[strings.Index(line, "msg="):]))
		}
	}
}

var unprocessedLine = regexp.MustCompile(`msg="([^"]*)" component=up tier=(\w+) unprocessed=(\d+)`)

// unprocessedCounts reads the per-tier counts up logged, at its start
// (atStart) or at its stop.
func unprocessedCounts(out string, atStart bool) (map[string]int, map[string]string) {
	counts, msgs := map[string]int{}, map[string]string{}
	for _, m := range unprocessedLine.FindAllStringSubmatch(out, -1) {
		if strings.Contains(m[1], "left from the last run") != atStart {
			continue
		}
		n, _ := strconv.Atoi(m[3])
		counts[m[2]], msgs[m[2]] = n, m[1]
	}
	return counts, msgs
}

// produceBurst produces n raw images straight to topic, keyed by id, and
// returns the ids Kafka acknowledged.
func produceBurst(t *testing.T, brokers, topic string, images [][]byte, prefix string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(prefix + strconv.Itoa(i)), Value: images[i%len(images)]}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ids []string
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err == nil {
			ids = append(ids, string(r.Record.Key))
		}
	}
	return ids
}

// TestUpSIGINTRestart: SIGINT `ddnn up` while HTTP devices send and a
// burst waits in the first tier's topic, then start it again. The stop
// waits a while for the backlog, then states per tier how many accepted
// messages are left and that the next start processes them; the next
// start finds exactly those, and no accepted message is lost.
func TestUpSIGINTRestart(t *testing.T) {
	tp := writePipeline(t, "upint", 1, "")
	// An edge tier of at most 1,000 samples/s, so the burst outlasts the
	// stop's wait.
	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	y = []byte(strings.Replace(string(y), "      intra_op_threads: 1\n", "      intra_op_threads: 1\n      emulate: {service_time_per_sample: 1ms, max_concurrency: 1}\n", 1))
	if err := os.WriteFile(tp.file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	p := up(t, tp)
	ds := testSet(t)
	before := startLoad(t, tp.funnel, ds.Samples, "ib-", 900, 300)
	time.Sleep(time.Second)
	burst := produceBurst(t, tp.broker, tp.name+".edge.in", ds.Samples, "ic-", 8000)
	stopped := p.stop(t, syscall.SIGINT, "SIGINT", 12*time.Second)
	<-before.done
	atStop, msgs := unprocessedCounts(p.out.String(), false)
	left := 0
	for _, tier := range []string{"edge", "fog", "cloud"} {
		n, ok := atStop[tier]
		switch {
		case !ok:
			t.Errorf("the stop does not state tier %s's unprocessed messages:\n%s", tier, tail(p.out.String(), 30))
		case n > 0 && !strings.Contains(msgs[tier], "will be processed at the next start"):
			t.Errorf("tier %s: %d unprocessed, but the stop says %q", tier, n, msgs[tier])
		}
		left += n
	}
	if left == 0 {
		t.Error("the stop left nothing unprocessed: the burst did not outlast the stop's wait, so the restart path went untested")
	}
	if strings.Contains(p.out.String(), "are lost") {
		t.Error("the stop of a durable pipeline says messages are lost")
	}

	p2 := up(t, tp)
	atStart, _ := unprocessedCounts(p2.out.String(), true)
	for tier, n := range atStop {
		if atStart[tier] != n {
			t.Errorf("tier %s: %d unprocessed at the stop, %d found at the restart", tier, n, atStart[tier])
		}
	}
	after := startLoad(t, tp.funnel, ds.Samples, "ia-", 300, 300)
	<-after.done
	accepted := append(append(before.ids(), burst...), after.ids()...)
	missing, dups := awaitResults(t, tp.broker, tp.name+".results", accepted, 40*time.Second)
	t.Logf("stopped in %s leaving %v unprocessed, found at the restart %v; accepted %d over HTTP and %d produced before the stop, %d after; lost %d, duplicates %d",
		stopped.Round(time.Millisecond), atStop, atStart, len(before.ids()), len(burst), len(after.ids()), len(missing), dups)
	reportLost(t, "after SIGINT and a restart", accepted, missing)
}
