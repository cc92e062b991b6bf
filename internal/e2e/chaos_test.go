package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

var tierNames = []string{"edge", "fog", "cloud"}

// TestChaos is the crash acceptance run: every role its own process, a
// load of about 300 msg/s over HTTP, and in turn the edge connector, a fog
// replica, the funnel and the cloud connector SIGKILLed and started again
// while messages flow. Every message the funnel accepted must get a result;
// duplicates are reported. Once with one replica per tier (a replica's
// death is a tier-wide outage) and once with two.
func TestChaos(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d_per_tier", n), func(t *testing.T) { chaos(t, n) })
	}
}

func chaos(t *testing.T, replicas int) {
	r := startRoles(t, fmt.Sprintf("chaos%d", replicas), replicas)
	results := countResults(t, r.tp.broker, r.tp.name+".results")
	ds := testSet(t)
	l := startLoad(t, r.tp.funnel, ds.Samples, "chaos-", 0, 300)
	defer l.stop()
	time.Sleep(2 * time.Second) // load flowing before the first fault
	for _, role := range []string{"edge connector", "fog replica 0", "funnel", "cloud connector"} {
		r.crash(role, 1500*time.Millisecond)
		time.Sleep(2 * time.Second) // load flowing after the restart
	}
	l.stop()
	o := r.settle(l, results, 30*time.Second)
	t.Logf("%d replica(s) per tier: %s", replicas, o)
	if o.accepted < o.sent/2 {
		t.Errorf("only %d of %d sends accepted", o.accepted, o.sent)
	}
	if len(o.lost) > 0 {
		t.Errorf("%d of %d accepted messages have no result", len(o.lost), o.accepted)
		r.diagnose(o.lost)
	}
}

// TestSoak is the by-hand soak: DDNN_SOAK=10m runs 500 msg/s for that long
// while a random role (a connector, a replica, the funnel) is SIGKILLed and
// started again every 20-40 s; it reports sent, accepted, refused, lost
// (must be 0) and duplicates. DDNN_SOAK_REPLICAS sets the replicas per tier
// (default 1), DDNN_SOAK_SEED replays a run's choice of roles and times.
func TestSoak(t *testing.T) {
	v := os.Getenv("DDNN_SOAK")
	if v == "" {
		t.Skip("set DDNN_SOAK to run the soak, e.g. DDNN_SOAK=10m go test -count=1 -timeout 30m -run TestSoak -v ./internal/e2e/")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("DDNN_SOAK=%q: want a duration such as 10m", v)
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+3*time.Minute {
		t.Fatalf("go test's -timeout ends before a %s soak and its drain: pass -timeout %s", d, (d + 5*time.Minute).Round(time.Minute))
	}
	replicas := envInt(t, "DDNN_SOAK_REPLICAS", 1)
	seed := uint64(envInt(t, "DDNN_SOAK_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("soak: %s at 500 msg/s, %d replica(s) per tier, DDNN_SOAK_SEED=%d", d, replicas, seed)

	r := startRoles(t, "soak", replicas)
	results := countResults(t, r.tp.broker, r.tp.name+".results")
	ds := testSet(t)
	l := startLoad(t, r.tp.funnel, ds.Samples, "soak-", 0, 500)
	defer l.stop()
	end := time.Now().Add(d)
	crashes := map[string]int{}
	for kills := 0; kills <= int(d/(20*time.Second)); kills++ {
		gap := time.Duration(rng.Int64N(int64(20*time.Second))) + 20*time.Second
		if time.Until(end) < gap {
			time.Sleep(time.Until(end))
			break
		}
		time.Sleep(gap)
		roles := r.roleNames()
		role := roles[rng.IntN(len(roles))]
		r.crash(role, time.Second+time.Duration(rng.Int64N(int64(time.Second))))
		crashes[role]++
	}
	l.stop()
	o := r.settle(l, results, 90*time.Second)
	t.Logf("soak %s: %s; SIGKILLs %v", d, o, crashes)
	if len(o.lost) > 0 {
		t.Errorf("%d of %d accepted messages have no result", len(o.lost), o.accepted)
		r.diagnose(o.lost)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// roles runs a pipeline with every role as its own process against a
// standalone broker, as the README's multi-machine section shows: the
// funnel, n inference replicas per tier (a fixed set of addresses given to
// the connector) and one connector per tier. Any role can be SIGKILLed and
// started again in its place, a replica on the same address.
type roles struct {
	t        testing.TB
	tp       testPipeline
	replicas map[string][]string // tier → replica addresses
	procs    map[string]*proc    // role → its current process
	history  map[string][]*proc  // role → every process it ran as
	adm      *kadm.Client
	began    time.Time
}

func startRoles(t testing.TB, name string, n int) *roles {
	t.Helper()
	r := &roles{t: t, tp: writePipeline(t, name, n, ""), replicas: map[string][]string{}, procs: map[string]*proc{}, history: map[string][]*proc{}, began: time.Now()}
	b := start(t, brokerArgs(t, r.tp.file)...)
	testsupport.WaitFor(t, 10*time.Second, "broker", func() bool { return running(t, "broker", b) && dialable(r.tp.broker) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.tp.broker))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r.adm = kadm.NewClient(cl)
	r.run("funnel")
	for _, tier := range tierNames {
		for i := 0; i < n; i++ {
			r.replicas[tier] = append(r.replicas[tier], proctest.FreeAddr(t))
			r.run(fmt.Sprintf("%s replica %d", tier, i))
		}
	}
	for _, tier := range tierNames {
		r.run(tier + " connector")
	}
	return r
}

var (
	brokerHelpOnce sync.Once
	brokerHelp     string
)

// brokerArgs starts the standalone broker in memory when it has a choice
// (--ephemeral), so that a test leaves nothing on disk.
func brokerArgs(t testing.TB, file string) []string {
	brokerHelpOnce.Do(func() {
		out, _ := exec.Command(ddnn, "broker", "-h").CombinedOutput()
		brokerHelp = string(out)
	})
	args := []string{"broker", "-f", file}
	if strings.Contains(brokerHelp, "-ephemeral") {
		args = append(args, "--ephemeral")
	}
	return args
}

// running reports whether p still runs, and fails the test with its output
// when it exited.
func running(t testing.TB, what string, p *proc) bool {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("%s exited: %v\n%s", what, p.err, tail(p.out.String(), 40))
	default:
	}
	return true
}

// roleNames lists every role: "funnel", "<tier> replica <i>", "<tier> connector".
func (r *roles) roleNames() []string {
	names := []string{"funnel"}
	for _, tier := range tierNames {
		for i := range r.replicas[tier] {
			names = append(names, fmt.Sprintf("%s replica %d", tier, i))
		}
		names = append(names, tier+" connector")
	}
	return names
}

// run starts role and waits until it is ready.
func (r *roles) run(role string) {
	t := r.t
	t.Helper()
	f := strings.Fields(role)
	var p *proc
	var readyURL string
	switch {
	case role == "funnel":
		p = start(t, "funnel", "-f", r.tp.file, "--brokers", r.tp.broker)
		readyURL = "http://" + r.tp.funnel + "/readyz"
	case len(f) == 3 && f[1] == "replica":
		i, _ := strconv.Atoi(f[2])
		addr := r.replicas[f[0]][i]
		p = start(t, "inference", "-f", r.tp.file, "--tier", f[0], "--listen", addr)
		readyURL = "http://" + addr + "/readyz"
	case len(f) == 2 && f[1] == "connector":
		var urls []string
		for _, a := range r.replicas[f[0]] {
			urls = append(urls, "http://"+a)
		}
		admin := proctest.FreeAddr(t)
		p = start(t, "connector", "-f", r.tp.file, "--tier", f[0], "--replicas", strings.Join(urls, ","), "--brokers", r.tp.broker, "--admin", admin)
		readyURL = "http://" + admin + "/readyz"
	default:
		t.Fatalf("unknown role %q", role)
	}
	testsupport.WaitFor(t, 30*time.Second, role+" ready", func() bool { return running(t, role, p) && ready(readyURL) })
	r.procs[role] = p
	r.history[role] = append(r.history[role], p)
}

// kill SIGKILLs role's process and waits until it is gone.
func (r *roles) kill(role string) {
	p := r.procs[role]
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatalf("SIGKILL %s: %v", role, err)
	}
	<-p.exited
}

// crash SIGKILLs role, leaves it down for down, starts it again and waits
// until it serves again; for a connector, until its group is stable with it
// as the only member, i.e. its tier is consumed again.
func (r *roles) crash(role string, down time.Duration) {
	r.t.Helper()
	at := time.Since(r.began)
	tier, isConnector := strings.CutSuffix(role, " connector")
	group := r.tp.name + "." + tier + ".connector"
	var before []string // the group's members, the killed connector among them
	if isConnector {
		before = r.members(group)
	}
	r.kill(role)
	time.Sleep(down)
	r.run(role)
	back := time.Since(r.began)
	if isConnector {
		testsupport.WaitFor(r.t, 60*time.Second, group+" stable with the new connector as its only member", func() bool {
			m := r.members(group)
			return len(m) == 1 && !slices.Contains(before, m[0])
		})
	}
	r.t.Logf("%6.1fs SIGKILL %s; restarted at %.1fs, serving at %.1fs", at.Seconds(), role, back.Seconds(), time.Since(r.began).Seconds())
}

// members lists the member ids of group when it is stable.
func (r *roles) members(group string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	gs, err := r.adm.DescribeGroups(ctx, group)
	g, ok := gs[group]
	if err != nil || !ok || g.Err != nil || g.State != "Stable" {
		return nil
	}
	var ids []string
	for _, m := range g.Members {
		ids = append(ids, m.MemberID)
	}
	return ids
}

// outcome is what a load sent and what came out of the pipeline.
type outcome struct {
	sent, accepted, refused int
	reasons                 map[string]int
	lost                    []string // accepted ids without a result
	duplicates              int      // results beyond the first of accepted ids
	refusedWithResult       int      // refused (or unanswered) sends that got a result anyway
	rate                    float64  // sends per second
	drained                 time.Duration
	lag                     string // consumer group lag at the end
}

func (o outcome) String() string {
	return fmt.Sprintf("sent %d (%.0f/s), accepted %d, refused %d %v (%d of them have a result), lost %d, duplicates %d; drained in %s after the load; lag at the end: %s",
		o.sent, o.rate, o.accepted, o.refused, o.reasons, o.refusedWithResult, len(o.lost), o.duplicates, o.drained.Round(100*time.Millisecond), o.lag)
}

// settle waits (up to timeout) for a result of every accepted id, then for
// the connectors to commit everything and for the results topic to be read
// to its end, so that late duplicates count too.
func (r *roles) settle(l *load, results *resultCounter, timeout time.Duration) outcome {
	t := r.t
	l.mu.Lock()
	o := outcome{accepted: len(l.accepted), refused: len(l.refused), reasons: l.reasons}
	accepted, refused := l.accepted, l.refused
	l.mu.Unlock()
	o.sent = o.accepted + o.refused
	o.rate = float64(o.sent) / l.ended.Sub(l.began).Seconds()
	stopped := time.Now()
	o.lost = results.waitAll(accepted, timeout)
	o.drained = time.Since(stopped)
	if len(o.lost) == 0 {
		// Everything committed means no retry is left that could add a
		// late duplicate; then read the results topic to its end.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && r.totalLag() != 0 {
			time.Sleep(100 * time.Millisecond)
		}
		results.waitEnd(t, r.adm, 10*time.Second)
	}
	o.lag = r.lagSummary()
	for _, id := range accepted {
		o.duplicates += max(0, results.count(id)-1)
	}
	for _, id := range refused {
		if results.count(id) > 0 {
			o.refusedWithResult++
		}
	}
	return o
}

// groupLags reads every tier's consumer group lag.
func (r *roles) groupLags() (map[string]kadm.DescribedGroupLag, error) {
	group := func(tier string) string { return r.tp.name + "." + tier + ".connector" }
	var groups []string // kadm's Lag reorders this slice
	for _, tier := range tierNames {
		groups = append(groups, group(tier))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := r.adm.Lag(ctx, groups...)
	if err != nil {
		return nil, err
	}
	out := map[string]kadm.DescribedGroupLag{}
	for _, tier := range tierNames {
		out[tier] = lags[group(tier)]
	}
	return out, nil
}

// totalLag is the sum of the tiers' lags, -1 when some cannot be read.
func (r *roles) totalLag() int64 {
	lags, err := r.groupLags()
	if err != nil {
		return -1
	}
	var n int64
	for _, l := range lags {
		if l.Error() != nil {
			return -1
		}
		for _, ps := range l.Lag {
			for _, p := range ps {
				if p.Err != nil {
					return -1
				}
				n += p.Lag
			}
		}
	}
	return n
}

// lagSummary says each tier's lag, and where it is not 0 per partition,
// e.g. "edge 0; fog 12 [p1 12 (committed 5, end 17)]; cloud 0".
func (r *roles) lagSummary() string {
	lags, err := r.groupLags()
	if err != nil {
		return "unreadable: " + err.Error()
	}
	var b strings.Builder
	for _, tier := range tierNames {
		l := lags[tier]
		if err := l.Error(); err != nil {
			fmt.Fprintf(&b, "%s: %v; ", tier, err)
			continue
		}
		var parts []string
		for _, p := range l.Lag.Sorted() {
			if p.Lag != 0 {
				parts = append(parts, fmt.Sprintf("p%d %d (committed %d, end %d)", p.Partition, p.Lag, p.Commit.At, p.End.Offset))
			}
		}
		fmt.Fprintf(&b, "%s %d", tier, l.Lag.Total())
		if len(parts) > 0 {
			fmt.Fprintf(&b, " [%s]", strings.Join(parts, ", "))
		}
		b.WriteString("; ")
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// diagnose logs where lost messages are: the furthest tier input topic
// each reached (and whether its connector committed past it), dead-letter
// topics, and where each live connector's goroutines wait.
func (r *roles) diagnose(lost []string) {
	t := r.t
	shown := lost[:min(len(lost), 20)]
	t.Logf("lost ids (first %d of %d): %s", len(shown), len(lost), strings.Join(shown, " "))
	t.Logf("consumer group lag: %s", r.lagSummary())
	t.Logf("where the lost messages are:\n%s", r.locate(lost))
	for _, tier := range tierNames {
		role := tier + " connector"
		t.Logf("%s goroutines (SIGQUIT dump, by innermost ddnn frame):\n%s", role, goroutines(r.procs[role]))
		for i, p := range r.history[role] {
			t.Logf("%s, process %d of %d (%v), log tail:\n%s", role, i+1, len(r.history[role]), p.err, tail(p.out.String(), 25))
		}
	}
}

// locate reads every tier's input and dead-letter topic from the start and
// says, per lost id, the furthest topic that holds it, and whether the
// connector's group committed past that record.
func (r *roles) locate(lost []string) string {
	var topics []string
	for _, tier := range tierNames {
		topics = append(topics, r.tp.name+"."+tier+".in")
	}
	for _, tier := range tierNames {
		topics = append(topics, r.tp.name+"."+tier+".dlq")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := r.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return "end offsets: " + err.Error()
	}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left++
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.tp.broker), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	want := map[string]bool{}
	for _, id := range lost {
		want[id] = true
	}
	where := map[string]string{}   // id → furthest input topic, partition and offset
	furthest := map[string]int{}   // id → index of that topic's tier
	dead := map[string]string{}    // id → dead-letter topic and reason
	committed := map[string]bool{} // id → its group committed past it
	lags, _ := r.groupLags()
	for left > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if end, ok := ends.Lookup(rec.Topic, rec.Partition); ok && rec.Offset == end.Offset-1 {
				left--
			}
			hs := make([]wire.Header, len(rec.Headers))
			for i, h := range rec.Headers {
				hs[i] = wire.Header{Key: h.Key, Value: h.Value}
			}
			m, err := wire.DecodeRecord(rec.Key, rec.Value, hs, nil, "")
			if err != nil || !want[m.ID] {
				return
			}
			tier := strings.Split(strings.TrimPrefix(rec.Topic, r.tp.name+"."), ".")[0]
			if strings.HasSuffix(rec.Topic, ".dlq") {
				dead[m.ID] = fmt.Sprintf("%s (%s)", rec.Topic, header(rec, wire.HeaderReason))
				return
			}
			i := slices.Index(tierNames, tier)
			if f, ok := furthest[m.ID]; ok && f > i {
				return // the topics are read side by side
			}
			furthest[m.ID] = i
			where[m.ID] = fmt.Sprintf("%s p%d@%d", rec.Topic, rec.Partition, rec.Offset)
			ml, ok := lags[tier].Lag.Lookup(rec.Topic, rec.Partition)
			committed[m.ID] = ok && ml.Commit.At > rec.Offset
		})
	}
	if left > 0 {
		return fmt.Sprintf("could not read the topics to their end: %v", ctx.Err())
	}
	byPlace := map[string]int{}
	var lines []string
	for _, id := range lost {
		place := "nowhere: never reached " + topics[0]
		if w, ok := where[id]; ok {
			state := "not committed: pending in the connector"
			if committed[id] {
				state = "committed, yet no result"
			}
			topic := strings.Fields(w)[0]
			byPlace[topic+", "+state]++
			place = w + ", " + state
		} else {
			byPlace[place]++
		}
		if d, ok := dead[id]; ok {
			byPlace["dead-lettered on "+strings.Fields(d)[0]]++
			place += "; dead-lettered on " + d
		}
		if len(lines) < 20 {
			lines = append(lines, "  "+id+": "+place)
		}
	}
	var sum []string
	for k, n := range byPlace {
		sum = append(sum, fmt.Sprintf("  %d on %s", n, k))
	}
	sort.Strings(sum)
	return strings.Join(sum, "\n") + "\n" + strings.Join(lines, "\n")
}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// goroutines makes p dump its goroutines (SIGQUIT, which ends it) and
// counts them by state and innermost ddnn function; the dump leaves p's
// output so that the log tail printed on failure stays readable.
func goroutines(p *proc) string {
	if p == nil {
		return "  (not running)"
	}
	select {
	case <-p.exited:
		return "  (not running)"
	default:
	}
	before := len(p.out.String())
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	dump := p.out.Cut(before)
	counts := map[string]int{}
	others := 0
	for _, g := range strings.Split(dump, "\n\n") {
		head, frames, ok := strings.Cut(strings.TrimSpace(g), "\n")
		if !ok || !strings.HasPrefix(head, "goroutine ") {
			continue
		}
		state := head[strings.Index(head, "[")+1 : max(strings.Index(head, "]"), strings.Index(head, "[")+1)]
		fn := ""
		for _, line := range strings.Split(frames, "\n") {
			if strings.Contains(line, "ddnn-continuum/ddnn/") && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "created by") {
				fn = line[strings.LastIndex(line, "/")+1:]
				fn = fn[:strings.LastIndex(fn, "(")]
				break
			}
		}
		if fn == "" {
			others++
			continue
		}
		counts[fmt.Sprintf("%-45s [%s]", fn, state)]++
	}
	var lines []string
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("  %4d  %s", n, k))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(lines)))
	return strings.Join(lines, "\n") + fmt.Sprintf("\n  %4d  others (runtime, net/http, franz-go)", others)
}

// resultCounter reads a results topic from its start in the background and
// counts the results per message id, keeping them.
type resultCounter struct {
	topic string
	mu    sync.Mutex
	n     map[string]int
	byID  map[string][]wire.Result
	total int64 // records read
	bad   int   // records that are not results
}

func countResults(t testing.TB, brokers, topic string) *resultCounter {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	rc := &resultCounter{topic: topic, n: map[string]int{}, byID: map[string][]wire.Result{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			rc.mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) {
				rc.total++
				if res, err := wire.DecodeResult(rec.Value); err == nil {
					rc.n[res.ID]++
					rc.byID[res.ID] = append(rc.byID[res.ID], res)
				} else {
					rc.bad++
				}
			})
			rc.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cl.Close()
		if rc.bad > 0 {
			t.Errorf("%d records on %s are not results", rc.bad, topic)
		}
	})
	return rc
}

// results is every result read so far of the ids keep accepts.
func (rc *resultCounter) results(keep func(id string) bool) map[string][]wire.Result {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]wire.Result{}
	for id, rs := range rc.byID {
		if keep(id) {
			out[id] = slices.Clone(rs)
		}
	}
	return out
}

func (rc *resultCounter) count(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n[id]
}

// waitAll waits up to timeout for a result of every id and returns the ids
// still without one.
func (rc *resultCounter) waitAll(ids []string, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	missing := ids
	for {
		rc.mu.Lock()
		var still []string
		for _, id := range missing {
			if rc.n[id] == 0 {
				still = append(still, id)
			}
		}
		rc.mu.Unlock()
		missing = still
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEnd waits up to timeout until every record the results topic holds
// now was read.
func (rc *resultCounter) waitEnd(t testing.TB, adm *kadm.Client, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, rc.topic)
	if err != nil {
		t.Logf("%s end offsets: %v", rc.topic, err)
		return
	}
	var total int64 // the topic starts at offset 0 and nothing is deleted
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	deadline := time.Now().Add(timeout)
	for rc.read() < total {
		if time.Now().After(deadline) {
			t.Logf("read %d of the %d records on %s within %s", rc.read(), total, rc.topic, timeout)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (rc *resultCounter) read() int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.total
}
