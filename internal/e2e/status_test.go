package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
