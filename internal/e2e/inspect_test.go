package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/inspect"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestInspectCutUplink runs the shipped continuum (three sites, one `ddnn
// up`, real inference) with the edge->fog link cut: its uplink posts to
// an address where nothing answers. Of 40 images sent to the edge, those
// the edge tier lets out get their result on the edge site; the others
// wait in the edge's uplink queue for the fog. `ddnn inspect` says so of
// one of each: the result with the edge's hop (its replica, and the sha256
// prefix of the edge model it ran), and the waiting one's queue,
// partition, offset and group, with the hop that forwarded it.
func TestInspectCutUplink(t *testing.T) {
	c := writeContinuum(t, "inspectcut")
	cut := proctest.FreeAddr(t) // nothing listens: the link is cut
	p := start(t, "up", "-f", c.file, "--link-url", "edge->fog=http://"+cut)
	waitSites(t, c, p)

	const n = 40
	sendHTTP(t, c.funnel["edge"], testSet(t).Samples[:n], "ic-", 2)
	results, queue := c.name+".results", c.name+".uplink.fog"
	testsupport.WaitFor(t, 60*time.Second, "every image exited at the edge or queued for the fog", func() bool {
		recs := topicRecords(t, c.kafka["edge"], c.name)
		return recs[results]+recs[queue] == n
	})
	recs := topicRecords(t, c.kafka["edge"], c.name)
	if recs[results] == 0 || recs[queue] == 0 {
		t.Fatalf("%d results, %d queued for the fog: want some of each from %d images", recs[results], recs[queue], n)
	}
	exited := collectResults(t, c.kafka["edge"], results, "ic-", int(recs[results]), 30*time.Second)
	var exitID, waitID string
	for i := range n {
		id := "ic-" + strconv.Itoa(i)
		if _, ok := exited[id]; ok && exitID == "" {
			exitID = id
		} else if !ok && waitID == "" {
			waitID = id
		}
	}
	edgeModel := modelDigest(t, filepath.Join(root(t), "models/edge.onnx"))

	rep := inspectReport(t, c.file, exitID)
	if rep.State != inspect.StateResult || rep.Result == nil || rep.Result.Tier != "edge" || rep.Result.Where.Site != "edge" {
		t.Fatalf("%s: %+v, want its result at the edge", exitID, rep)
	}
	if len(rep.Hops) != 1 || rep.Hops[0].Decision != "exit" || rep.Hops[0].Model != edgeModel || !strings.HasPrefix(rep.Hops[0].Replica, "127.0.0.1:") {
		t.Errorf("%s: hops %+v, want the edge's exit by a replica running model %s", exitID, rep.Hops, edgeModel)
	}

	rep = inspectReport(t, c.file, waitID)
	w := rep.Waiting
	if rep.State != inspect.StateWaiting || w == nil || w.Site != "edge" || w.Topic != queue || w.Route != "tier:fog" || w.Group != queue+".connector" {
		t.Fatalf("%s: %+v, want it waiting on %s at the edge, for tier fog", waitID, rep, queue)
	}
	if w.Ahead < 0 || w.Ahead > w.Offset {
		t.Errorf("%s: %d records ahead of offset %d", waitID, w.Ahead, w.Offset)
	}
	if len(rep.Hops) != 1 || rep.Hops[0].Decision != "forward" || rep.Hops[0].Model != edgeModel {
		t.Errorf("%s: hops %+v, want the edge's forward", waitID, rep.Hops)
	}
	if rep.Ingest == nil || rep.Ingest.Site != "edge" || rep.Ingest.Where == nil || rep.Ingest.Where.Topic != c.name+".edge.in" {
		t.Errorf("%s: ingest %+v, want its record on the edge's input", waitID, rep.Ingest)
	}
}

// inspectReport runs ddnn inspect --json on id.
func inspectReport(t *testing.T, file, id string) inspect.Report {
	t.Helper()
	out, err := exec.Command(ddnn, "inspect", "-f", file, id, "--json", "--timeout", "30s").Output()
	if err != nil {
		t.Fatalf("ddnn inspect %s: %v", id, err)
	}
	var rep inspect.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("ddnn inspect %s --json: %v: %s", id, err, out)
	}
	return rep
}

// modelDigest is the first 12 hex digits of the sha256 of the file.
func modelDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}
