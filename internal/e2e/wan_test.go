package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/bench"
)

// wanSummary is what these tests read of a summary.json.
type wanSummary struct {
	benchSummary
	Links    []bench.LinkSummary
	WANBytes int64 `json:"wan_bytes"`
	Cuts     []bench.CutSummary
}

// TestPartition is the partition acceptance run: the three-site continuum
// behind the shipped wan-cut.yaml (the edge-fog line down from 20 s for
// 10 s), 200 msg/s from 4 HTTP devices for 40 s. The edge's exits sent
// during the cut keep a p99 within 2× of those sent before it, every
// accepted message gets its result once the line is back, and nothing is
// lost.
func TestPartition(t *testing.T) {
	c := writeContinuum(t, "partition")
	out := t.TempDir()
	b, err := exec.Command(ddnn, "bench", "-f", c.file, "--network", filepath.Join(root(t), "deploy/examples/wan-cut.yaml"),
		"--workload", "constant", "--rate", "200", "--duration", "40s", "--devices", "4", "--drain", "90s", "--out", out).CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, b)
	}
	t.Logf("bench:\n%s", b)
	var s wanSummary
	readJSON(t, filepath.Join(out, "summary.json"), &s)
	if s.Sent != 8000 || s.Accepted != s.Sent || s.Results != s.Accepted || s.Lost != 0 || s.Interrupted {
		t.Errorf("sent %d, accepted %d, results %d, lost %d, refused %v", s.Sent, s.Accepted, s.Results, s.Lost, s.RefusedBy)
	}
	if len(s.Cuts) != 1 || !slices.Equal(s.Cuts[0].Links, []string{"edge->fog", "fog->edge"}) {
		t.Fatalf("cuts = %+v, want one outage of edge->fog and fog->edge", s.Cuts)
	}
	cut := s.Cuts[0]
	before, during := cut.Before["edge"], cut.During["edge"]
	t.Logf("edge exits: before the cut %d, p50 %.1f ms, p99 %.1f ms; during it %d, p50 %.1f ms, p99 %.1f ms",
		before.Count, before.P50, before.P99, during.Count, during.P50, during.P99)
	if before.Count < 1000 || during.Count < 500 {
		t.Errorf("too few edge exits to compare: %d before, %d during", before.Count, during.Count)
	}
	if during.P99 > 2*before.P99 {
		t.Errorf("edge exits during the cut: p99 %.1f ms, more than twice the %.1f ms before it", during.P99, before.P99)
	}
	// What crossed the cut line waited and went up after it: the fog's
	// exits sent during the cut took at least the rest of the outage.
	if f := cut.During["fog"]; f.Count == 0 || f.Max < 5000 {
		t.Errorf("fog exits sent during the cut: %+v; want them held until the heal", f)
	}
	for _, l := range s.Links {
		if l.Bytes == 0 || l.Messages == 0 {
			t.Errorf("link %s->%s carried %d bytes, %d messages", l.From, l.To, l.Bytes, l.Messages)
		}
	}
}

// TestBenchContinuumCompare runs a short workload through the continuum
// across the shipped WAN and through the cloud-only baseline across the
// same links, and checks what each summary says crossed them.
func TestBenchContinuumCompare(t *testing.T) {
	c := writeContinuum(t, "wancmp")
	out := t.TempDir()
	b, err := exec.Command(ddnn, "bench", "-f", c.file, "--network", filepath.Join(root(t), "deploy/examples/wan.yaml"),
		"--compare", "--workload", "constant", "--rate", "100", "--duration", "4s", "--devices", "2", "--out", out).CombinedOutput()
	if err != nil {
		t.Fatalf("bench --compare: %v\n%s", err, b)
	}
	t.Logf("bench:\n%s", b)
	carries := map[string]map[string]string{
		// The DDNN: forwards go up link by link, results come back to the
		// edge; the cloud's results are chained through the fog.
		"pipeline": {"devices->edge": "devices->edge", "edge->fog": "edge->fog", "fog->cloud": "fog->cloud",
			"fog->edge": "fog->edge,cloud->edge", "cloud->fog": "cloud->edge"},
		// Cloud-only: every image crosses every link up, every result
		// every link back.
		"monolith": {"devices->edge": "devices->cloud", "edge->fog": "devices->cloud", "fog->cloud": "devices->cloud",
			"fog->edge": "cloud->edge", "cloud->fog": "cloud->edge"},
	}
	sums := map[string]wanSummary{}
	for _, target := range []string{"pipeline", "monolith"} {
		var s wanSummary
		readJSON(t, filepath.Join(out, target, "summary.json"), &s)
		sums[target] = s
		if s.Sent != 400 || s.Accepted != 400 || s.Results != 400 || s.Lost != 0 {
			t.Errorf("%s: sent %d, accepted %d, results %d, lost %d, refused %v", target, s.Sent, s.Accepted, s.Results, s.Lost, s.RefusedBy)
		}
		if len(s.Links) != 5 {
			t.Fatalf("%s: links %+v, want the 5 of wan.yaml", target, s.Links)
		}
		var wanBytes int64
		for _, l := range s.Links {
			name := l.From + "->" + l.To
			if got := strings.Join(l.Carries, ","); got != carries[target][name] {
				t.Errorf("%s: link %s carries %q, want %q", target, name, got, carries[target][name])
			}
			if l.Bytes == 0 || l.Messages == 0 {
				t.Errorf("%s: link %s: %d bytes, %d messages", target, name, l.Bytes, l.Messages)
			}
			if l.WAN {
				wanBytes += l.Bytes
			}
		}
		if s.WANBytes != wanBytes {
			t.Errorf("%s: wan_bytes %d, links between sites sum to %d", target, s.WANBytes, wanBytes)
		}
	}
	// Every device message reaches the cloud-only baseline: the devices'
	// link carries the same messages in both runs, and so does each link
	// on the baseline's way up.
	mono := sums["monolith"]
	for _, l := range mono.Links[:3] {
		if l.Messages != int64(mono.Accepted)+1 {
			t.Errorf("monolith: link %s->%s carried %d messages, want the %d accepted and the probe", l.From, l.To, l.Messages, mono.Accepted)
		}
	}
	if sums["pipeline"].Accuracy != mono.Accuracy {
		t.Errorf("accuracy: pipeline %.4f, monolith %.4f: the same policies should give the same classes", sums["pipeline"].Accuracy, mono.Accuracy)
	}
	if !strings.Contains(string(b), "WAN bytes") {
		t.Errorf("the comparison has no WAN bytes:\n%s", b)
	}
}
