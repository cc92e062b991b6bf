package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// scalerSample is one scrape of the supervisor's scaler metrics.
type scalerSample struct {
	at           time.Time
	ready, lag   float64
	desired      float64
	scrapeFailed bool
}

var (
	readyRE   = regexp.MustCompile(`ddnn_scaler_replicas\{[^}]*state="ready",tier="edge"\} (\S+)`)
	desiredRE = regexp.MustCompile(`ddnn_scaler_replicas\{[^}]*state="desired",tier="edge"\} (\S+)`)
	lagRE     = regexp.MustCompile(`ddnn_scaler_lag_records\{[^}]*tier="edge"\} (\S+)`)
)

func scrape(admin string) scalerSample {
	s := scalerSample{at: time.Now()}
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		s.scrapeFailed = true
		return s
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	num := func(re *regexp.Regexp) float64 {
		if m := re.FindSubmatch(b); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			return v
		}
		return -1
	}
	s.ready, s.desired, s.lag = num(readyRE), num(desiredRE), num(lagRE)
	return s
}

// TestBurstScalesProcessReplicas is the scaler's acceptance run on the
// process runtime: deploy/examples/burst.yaml, a burst of 3,000 messages at
// 1,000/s. Replicas go above the minimum, the lag drains, every message has
// a result, and replicas return to the minimum after the window.
func TestBurstScalesProcessReplicas(t *testing.T) {
	tp := burstPipeline(t, "burste2e", nil)
	upProc := up(t, tp)

	var (
		mu      sync.Mutex
		samples []scalerSample
	)
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			s := scrape(tp.admin)
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-scraped
	}()

	start := time.Now()
	out, err := exec.Command(ddnn, "bench", "-f", tp.file, "--attach", "--workload", "constant", "--rate", "1000", "--duration", "3s", "--devices", "8", "--json", "--drain", "90s").Output()
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	var rep benchSummary
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Results != 3000 || rep.Lost != 0 {
		t.Errorf("bench: %s", out)
	}
	drained := time.Since(start)

	// Back to the minimum after the stabilization window (10 s) and one
	// step per poll.
	testsupport.WaitFor(t, 60*time.Second, "replicas back to the minimum", func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := samples[len(samples)-1]
		return last.ready == 1 && last.desired == 1
	})
	close(stop)
	<-scraped
	// Scaling down must not cost retries: a leaving replica gets no new
	// calls and finishes the ones it has.
	if ok := metricSum(t, tp.admin, `ddnn_connector_invocations_total{`, `outcome="ok"`, `tier="edge"`); ok == 0 {
		t.Error("no edge invocations counted: the metrics scrape is broken")
	}
	if n := metricSum(t, tp.admin, `ddnn_connector_retries_total{`, `tier="edge"`); n != 0 {
		t.Errorf("%v edge invocations retried during the burst and the scale-down", n)
	}

	var firstLag, firstUp time.Time
	peak := 0.0
	for _, s := range samples {
		if s.at.Before(start) {
			continue
		}
		if firstLag.IsZero() && s.lag > 0 {
			firstLag = s.at
		}
		if firstUp.IsZero() && s.ready > 1 {
			firstUp = s.at
		}
		peak = max(peak, s.ready)
	}
	if firstUp.IsZero() || peak <= 1 {
		t.Fatalf("replicas never went above the minimum (peak ready %v)", peak)
	}
	// From the supervisor's log: the first scale-up decision and when the
	// first replica it started was ready.
	decided, readyAfter := "", ""
	for _, line := range strings.Split(upProc.out.String(), "\n") {
		if decided == "" && strings.Contains(line, `msg=scale `) && strings.Contains(line, "reason=scale_up") {
			decided = line
		}
		if decided != "" && readyAfter == "" && strings.Contains(line, `msg="replica ready"`) && !strings.Contains(line, "replica=edge-0") {
			if i := strings.Index(line, "after="); i >= 0 {
				readyAfter = strings.Fields(line[i:])[0]
			}
		}
	}
	t.Logf("scale-up decision: %s; first new replica %s", decided, readyAfter)
	t.Logf("peak %v ready replicas; first lag seen %s after the burst started; first new replica ready %s after the first lag (%s after the start); all %d results in %s; back at the minimum %s after the start",
		peak, firstLag.Sub(start).Round(time.Millisecond), firstUp.Sub(firstLag).Round(time.Millisecond), firstUp.Sub(start).Round(time.Millisecond),
		rep.Results, drained.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestScaleFromZero: a tier with min 0 starts with no replica; the first
// images activate one, every image gets its result, and after the idle
// cooldown the tier goes back to zero.
func TestScaleFromZero(t *testing.T) {
	tp := burstPipeline(t, "zero", func(y string) string {
		y = strings.Replace(y, "replicas: {min: 1, max: 6}", "replicas: {min: 0, max: 2}", 1)
		return strings.Replace(y, "stabilization_window: 10s", "stabilization_window: 3s\n      cooldown_to_zero: 4s", 1)
	})
	up(t, tp)
	if s := scrape(tp.admin); s.ready > 0 {
		t.Fatalf("edge starts with %v ready replicas, want 0", s.ready)
	}
	start := time.Now()
	ds := testSet(t)
	sendHTTP(t, tp.funnel, ds.Samples[:20], "z-", 2)
	got := collectResults(t, tp.broker, tp.name+".results", "z-", 20, 60*time.Second)
	t.Logf("20 results %s after the first image arrived at a tier with no replica", time.Since(start).Round(time.Millisecond))
	if len(got) != 20 {
		t.Fatalf("%d results", len(got))
	}
	testsupport.WaitFor(t, 30*time.Second, "back to zero after the cooldown", func() bool {
		s := scrape(tp.admin)
		return s.desired == 0 && s.ready == 0
	})
}

// metricSum adds the values of every series of the supervisor's /metrics
// whose line starts with prefix and contains every one of labels.
func metricSum(t *testing.T, admin, prefix string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if f := strings.Fields(line); ok && len(f) == 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			sum += v
		}
	}
	return sum
}

// TestStandaloneScaler runs the roles as separate processes with `ddnn
// scaler` owning the replicas: connectors follow the replica sets it serves.
// It sets the tiers up as `ddnn up` does (scaler.StartTiers): the fixed-size
// tiers' replicas run and are listed, and only the scaled tier is scaled.
func TestStandaloneScaler(t *testing.T) {
	tp := writePipeline(t, "standalone", 1, "")
	b, _ := os.ReadFile(tp.file)
	y := strings.Replace(string(b), "    replicas: 1\n", "    replicas: {min: 1, max: 3}\n    scaling: {stabilization_window: 5s}\n", 1)
	os.WriteFile(tp.file, []byte(y), 0o644)
	start(t, "broker", "-f", tp.file)
	testsupport.WaitFor(t, 10*time.Second, "broker", func() bool { return dialable(tp.broker) })
	start(t, "funnel", "-f", tp.file, "--brokers", tp.broker)
	testsupport.WaitFor(t, 20*time.Second, "funnel", func() bool { return ready("http://" + tp.funnel + "/readyz") })
	admin := proctest.FreeAddr(t)
	start(t, "scaler", "-f", tp.file, "--brokers", tp.broker, "--admin", admin)
	for _, tier := range []string{"edge", "fog", "cloud"} {
		testsupport.WaitFor(t, 30*time.Second, tier+" replica listed", func() bool {
			resp, err := http.Get("http://" + admin + "/v1/tiers/" + tier + "/replicas")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var reps []struct{ URL string }
			return json.NewDecoder(resp.Body).Decode(&reps) == nil && len(reps) >= 1
		})
		cadmin := proctest.FreeAddr(t)
		start(t, "connector", "-f", tp.file, "--tier", tier, "--replicas-url", "http://"+admin+"/v1/tiers/"+tier+"/replicas", "--brokers", tp.broker, "--admin", cadmin)
		testsupport.WaitFor(t, 20*time.Second, tier+" connector", func() bool { return ready("http://" + cadmin + "/readyz") })
	}
	ds := testSet(t)
	sendHTTP(t, tp.funnel, ds.Samples[:300], "sa-", 4)
	got := collectResults(t, tp.broker, tp.name+".results", "sa-", 300, 60*time.Second)
	if len(got) != 300 {
		t.Fatalf("%d results", len(got))
	}
	var scaled []string
	testsupport.WaitFor(t, 10*time.Second, "the scaler's metrics", func() bool {
		scaled = scaledTiers(t, admin)
		return len(scaled) > 0
	})
	if !slices.Equal(scaled, []string{"edge"}) {
		t.Errorf("the scaler scales tiers %v, want only the one whose size may change, [edge]", scaled)
	}
}

// scaledTiers are the tiers the scaler at admin reports replicas for:
// those it scales.
func scaledTiers(t *testing.T, admin string) []string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tiers []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "ddnn_scaler_replicas{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `tier="`)
		if tier, _, _ := strings.Cut(rest, `"`); ok && !slices.Contains(tiers, tier) {
			tiers = append(tiers, tier)
		}
	}
	slices.Sort(tiers)
	return tiers
}

// burstPipeline writes deploy/examples/burst.yaml under a new name, with free
// ports, absolute model paths and edit applied.
func burstPipeline(t *testing.T, name string, edit func(string) string) testPipeline {
	t.Helper()
	tp := testPipeline{name: name, broker: proctest.FreeAddr(t), funnel: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
	y := testsupport.Shipped(t, "deploy/examples/burst.yaml")
	y = strings.Replace(y, "name: burst", "name: "+name, 1)
	if edit != nil {
		y = edit(y)
	}
	tp.coap, tp.delivery = proctest.FreeAddr(t), proctest.FreeAddr(t)
	y += fmt.Sprintf("kafka:\n  embedded_listen: %s\nfunnel:\n  listen: %s\n  delivery_listen: %s\n  coap_listen: %s\nadmin:\n  listen: %s\n", tp.broker, tp.funnel, tp.delivery, tp.coap, tp.admin)
	tp.file = filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return tp
}
