package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// linkSample is what one ddnn status --json said of the edge->fog link.
type linkSample struct {
	at      time.Duration // since the pipeline was ready
	up      bool
	backlog int64
}

// TestStatusDuringCut runs the shipped continuum under ddnn bench
// --network wan-cut.yaml (the edge-fog line down from 20 s for 10 s; 100
// msg/s from 2 HTTP devices for 36 s) and reads ddnn status --json about
// once a second: the edge->fog link shows down with its backlog growing
// during the cut, then up again with the backlog drained to what was in
// flight before the cut; every site's Kafka, funnel and admin address
// answers throughout.
func TestStatusDuringCut(t *testing.T) {
	c := writeContinuum(t, "status")
	b := start(t, "bench", "-f", c.file, "--network", filepath.Join(root(t), "deploy/examples/wan-cut.yaml"),
		"--workload", "constant", "--rate", "100", "--duration", "36s", "--devices", "2", "--drain", "60s", "--out", t.TempDir())
	testsupport.WaitFor(t, 90*time.Second, "every site's ddnn up ready", func() bool {
		select {
		case <-b.exited:
			t.Fatalf("bench exited: %v\n%s", b.err, tail(b.out.String(), 40))
		default:
		}
		for _, site := range continuumSites {
			if !ready("http://" + c.admin[site] + "/readyz") {
				return false
			}
		}
		return true
	})
	readyAt := time.Now()

	var samples []linkSample
	sawDown, drained := false, false
	// Before the cut the backlog is what is in flight (a few records);
	// drained is back at that level once the link is up again. The
	// devices keep sending, so it need not reach 0 before bench stops.
	var inFlight int64
	resultsDown := 0 // reads that showed fog->edge down
	for deadline := time.Now().Add(100 * time.Second); !drained && time.Now().Before(deadline); {
		cmd := exec.Command(ddnn, "status", "-f", c.file, "--json")
		cmd.Dir = workDir(t)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ddnn status --json: %v\n%s", err, out)
		}
		var snap status.Snapshot
		if err := json.Unmarshal(out, &snap); err != nil {
			t.Fatalf("ddnn status --json: %v\n%s", err, out)
		}
		for _, site := range snap.Sites {
			if !site.Kafka.Up || !site.Funnel.Up || !site.Admin.Up {
				t.Errorf("site %s: kafka %+v, funnel %+v, admin %+v; want all answering (status reads them on the sites' own network, not across the cut)",
					site.Name, site.Kafka, site.Funnel, site.Admin)
			}
		}
		link, ok := uplinkOf(snap, "edge", "fog")
		if !ok {
			t.Fatalf("no link edge->fog in %s", out)
		}
		// The results come back over the same line, cut too.
		if back, ok := uplinkOf(snap, "fog", "edge"); ok && !back.Up {
			resultsDown++
		}
		s := linkSample{at: time.Since(readyAt), up: link.Up, backlog: link.Backlog}
		samples = append(samples, s)
		t.Logf("%5.1fs edge->fog up=%v backlog=%d %s", s.at.Seconds(), s.up, s.backlog, link.Error)
		if !s.up {
			sawDown = true
			if !strings.Contains(strings.Join(snap.Problems, "\n"), "link edge->fog: down") {
				t.Errorf("link edge->fog down but not among the problems: %q", snap.Problems)
			}
		}
		if !sawDown {
			inFlight = max(inFlight, s.backlog)
		}
		drained = sawDown && s.up && s.backlog <= inFlight
	}

	// During the cut: down, and the backlog grows.
	var down []linkSample
	for _, s := range samples {
		if !s.up {
			down = append(down, s)
		}
	}
	if len(down) < 2 {
		t.Fatalf("edge->fog seen down in %d reads, want the cut seen in at least 2", len(down))
	}
	peak := down[0]
	for _, s := range down {
		if s.backlog > peak.backlog {
			peak = s
		}
	}
	if peak.backlog <= down[0].backlog {
		t.Errorf("backlog during the cut: %d at first, at most %d: it did not grow", down[0].backlog, peak.backlog)
	}
	if resultsDown == 0 {
		t.Errorf("fog->edge, cut too, never seen down")
	}
	// After it: up again, and the backlog drains.
	if !drained {
		t.Fatalf("edge->fog not up with its backlog drained to the %d records in flight before the cut within 100 s", inFlight)
	}
	last := samples[len(samples)-1]
	var healed time.Duration
	var healedBacklog int64
	for _, s := range samples {
		if s.at > down[len(down)-1].at && s.up {
			healed, healedBacklog = s.at, s.backlog
			break
		}
	}
	t.Logf("edge->fog: down in %d reads from %.1fs, backlog %d at first, %d at its peak (%.1fs); up again at %.1fs with %d, drained to %d (at most %d in flight before the cut) by %.1fs",
		len(down), down[0].at.Seconds(), down[0].backlog, peak.backlog, peak.at.Seconds(), healed.Seconds(), healedBacklog, last.backlog, inFlight, last.at.Seconds())

	select {
	case <-b.exited:
	case <-time.After(150 * time.Second):
		t.Fatalf("bench still running 150 s after the drain")
	}
	if b.err != nil {
		t.Errorf("bench: %v\n%s", b.err, tail(b.out.String(), 40))
	}
}

// uplinkOf is the link from -> to in snap.
func uplinkOf(snap status.Snapshot, from, to string) (status.Uplink, bool) {
	for _, s := range snap.Sites {
		if s.Name != from {
			continue
		}
		for _, u := range s.Uplinks {
			if u.To == to {
				return u, true
			}
		}
	}
	return status.Uplink{}, false
}

// TestStatusRolesApart runs the sample pipeline's roles as separate
// processes (broker, funnel, scaler, a connector per tier, each with its
// own admin address) and reads them with ddnn status --admin: every tier
// ok with its replica ready and its exit ratio, no problem. Without
// --admin, status finds nothing on the site's admin.listen, fails, and
// says to name the roles' addresses.
func TestStatusRolesApart(t *testing.T) {
	tp := writePipeline(t, "apart", 1, "")
	token := filepath.Join(workDir(t), "service.token")
	if out, err := exec.Command(ddnn, "token").Output(); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(token, out, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "broker", "-f", tp.file, "--ephemeral")
	start(t, "funnel", "-f", tp.file, "--service-token-file", token)
	scaler := proctest.FreeAddr(t)
	start(t, "scaler", "-f", tp.file, "--service-token-file", token, "--admin", scaler)
	admins := []string{scaler}
	for _, tier := range []string{"edge", "fog", "cloud"} {
		a := proctest.FreeAddr(t)
		admins = append(admins, a)
		start(t, "connector", "-f", tp.file, "--service-token-file", token, "--tier", tier, "--admin", a,
			"--replicas-url", "http://"+scaler+"/v1/tiers/"+tier+"/replicas")
	}
	testsupport.WaitFor(t, 90*time.Second, "every role ready", func() bool {
		for _, a := range admins {
			if !ready("http://" + a + "/readyz") {
				return false
			}
		}
		return ready("http://" + tp.delivery + "/readyz")
	})
	sendHTTP(t, tp.funnel, testSet(t).Samples[:200], "apart-", 4)

	statusOf := func(args ...string) (status.Snapshot, error) {
		cmd := exec.Command(ddnn, append([]string{"status", "-f", tp.file, "--json"}, args...)...)
		cmd.Dir = workDir(t)
		out, err := cmd.Output()
		var snap status.Snapshot
		if jerr := json.Unmarshal(out, &snap); jerr != nil {
			t.Fatalf("ddnn status --json: %v (%v)\n%s", jerr, err, out)
		}
		return snap, err
	}
	var snap status.Snapshot
	testsupport.WaitFor(t, 60*time.Second, "every tier read, with its exit ratio and no lag", func() bool {
		var err error
		if snap, err = statusOf("--admin", strings.Join(admins, ",")); err != nil {
			t.Fatalf("ddnn status --admin: %v: %q", err, snap.Problems)
		}
		for _, tier := range snap.Sites[0].Tiers {
			if tier.ExitRatio == nil || tier.Lag != 0 {
				return false
			}
		}
		return true
	})
	site := snap.Sites[0]
	if !site.Kafka.Up || !site.Funnel.Up || !site.Admin.Up || site.Admin.Address != strings.Join(admins, ",") {
		t.Errorf("kafka %+v, funnel %+v, admin %+v; want all answering, the admin the addresses given", site.Kafka, site.Funnel, site.Admin)
	}
	for _, tier := range site.Tiers {
		if tier.State != status.StateOK || tier.ReadyReplicas != 1 || tier.DesiredReplicas != 1 || tier.Model.SHA256 == "" {
			t.Errorf("tier %s: %+v; want ok, 1/1 replicas, its model's sha", tier.Name, tier)
		}
	}
	if edge := site.Tiers[0]; *edge.ExitRatio <= 0 || *edge.ExitRatio >= 1 {
		t.Errorf("edge exit ratio %v, want some exits and some forwards of 200 images", *edge.ExitRatio)
	}
	if len(snap.Problems) != 0 {
		t.Errorf("problems: %q", snap.Problems)
	}

	// Without --admin: the site's admin.listen, where nothing runs.
	snap, err := statusOf()
	if err == nil || !strings.Contains(strings.Join(snap.Problems, "\n"), "give its --admin to ddnn status --admin local=ADDR") {
		t.Errorf("status without --admin: %v, problems %q; want a failure saying to name the roles' admin addresses", err, snap.Problems)
	}
	for _, tier := range snap.Sites[0].Tiers {
		if tier.State != status.StateUnknown {
			t.Errorf("tier %s without its connector's metrics: state %q, want unknown", tier.Name, tier.State)
		}
	}
}

// TestStatusNotRunning: ddnn status of the continuum while nothing of it
// runs exits 1 and says so, one line per site's Kafka, funnel and admin
// address, each with its address and why, and prints no table.
func TestStatusNotRunning(t *testing.T) {
	c := writeContinuum(t, "stopped")
	cmd := exec.Command(ddnn, "status", "-f", c.file)
	cmd.Dir = workDir(t)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("ddnn status: %v, want exit status 1\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("printed %q for a pipeline that is not running", stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if lines[0] != "ddnn: pipeline stopped is not running: nothing answered" || len(lines) != 10 {
		t.Fatalf("stderr:\n%s\nwant a first line and one per site's kafka, funnel and admin", stderr.String())
	}
	i := 1
	for _, site := range continuumSites {
		for _, want := range []string{"kafka " + c.kafka[site], "funnel http://" + c.delivery[site], "admin " + c.admin[site]} {
			if l := lines[i]; !strings.HasPrefix(l, "  site "+site+": "+want+": ") || !strings.Contains(l, "connection refused") {
				t.Errorf("line %q, want site %s: %s and why", l, site, want)
			}
			i++
		}
	}
}
