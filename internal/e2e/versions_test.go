package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestModelVersionsEndToEnd: with version labels on the edge and fog
// tiers (none on cloud), every result names its exit tier's model, sha
// and label, every hop of its record names its tier's, and `ddnn
// results` (table and --json) and `ddnn inspect` show them.
func TestModelVersionsEndToEnd(t *testing.T) {
	tp := writePipeline(t, "versions", 1, "")
	labelTier(t, tp.file, "edge", "e1")
	labelTier(t, tp.file, "fog", "2026-12.fog_2")
	want := map[string]wire.ModelVersion{}
	for tier, label := range map[string]string{"edge": "e1", "fog": "2026-12.fog_2", "cloud": ""} {
		sha, err := onnx.FileSHA256(filepath.Join(root(t), "models", tier+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		want[tier] = wire.ModelVersion{SHA: sha, Version: label}
	}
	up(t, tp)
	const n = 60
	sendHTTP(t, tp.funnel, testSet(t).Samples[:n], "mv-", 1)

	// The result records as written, with their hops.
	cl := readFromStart(t, tp.broker, tp.name+".results")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := map[string]bool{}
	var pastEdge string // a message that exited past the edge
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d results within 60s", len(seen), n)
		}
		for _, rec := range fs.Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(r.ID, "mv-") || seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			if r.Model != want[r.Tier] {
				t.Errorf("result %s exited at %s names model %+v, want %+v", r.ID, r.Tier, r.Model, want[r.Tier])
			}
			hs, err := records.ReadHops(rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) == 0 || hs[len(hs)-1].Tier != r.Tier {
				t.Errorf("result %s at %s: hops %+v", r.ID, r.Tier, hs)
			}
			for _, h := range hs {
				if h.Model != want[h.Tier] {
					t.Errorf("result %s: hop of %s names model %+v, want %+v", r.ID, h.Tier, h.Model, want[h.Tier])
				}
			}
			if r.Tier != "edge" && pastEdge == "" {
				pastEdge = r.ID
			}
		}
	}
	if pastEdge == "" {
		t.Fatalf("none of %d messages exited past the edge: no result carries two labeled hops", n)
	}

	out, err := exec.Command(ddnn, "results", "-f", tp.file, "--count", "5").Output()
	if err != nil || !strings.Contains(string(out), "MODEL") || !strings.Contains(string(out), want["edge"].SHA+"@e1") {
		t.Errorf("results table: %v\n%s", err, out)
	}
	out, err = exec.Command(ddnn, "results", "-f", tp.file, "--id", pastEdge, "--count", "1", "--json").Output()
	if err != nil || !strings.Contains(string(out), `"model":{"sha":"`) {
		t.Errorf("results --id %s --json: %v\n%s", pastEdge, err, out)
	}
	out, err = exec.Command(ddnn, "inspect", "-f", tp.file, pastEdge).Output()
	if err != nil || !strings.Contains(string(out), "version") ||
		!strings.Contains(string(out), want["edge"].SHA+"  e1 ") || !strings.Contains(string(out), want["fog"].SHA+"  2026-12.fog_2 ") {
		t.Errorf("inspect %s: %v\n%s", pastEdge, err, out)
	}
	t.Logf("ddnn inspect %s:\n%s", pastEdge, out)
}

// labelTier adds version: label to tier in the pipeline file.
func labelTier(t *testing.T, file, tier, label string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "  - name: "+tier+"\n", "  - name: "+tier+"\n    version: "+label+"\n", 1)
	if y == string(b) {
		t.Fatalf("no tier %s in %s", tier, file)
	}
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}
