package e2e

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/models"
)

// TestFloat32PipelineMatchesNumPy is the float32 acceptance run: the test
// pipeline of models/testdata/f32 under `ddnn up`, its 300 float32 .npy
// samples posted as raw little-endian bodies. Every sample's exit tier and
// class equal what NumPy computed offline (expected.json, written by
// make.py), and so do accuracy and exits per tier, which also equal
// `ddnn models eval` on the same YAML; then `ddnn bench` sends them over
// CoAP and its exits and accuracy follow from NumPy's as well.
func TestFloat32PipelineMatchesNumPy(t *testing.T) {
	dir := filepath.Join(root(t), "models/testdata/f32")
	b, err := os.ReadFile(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	y := strings.NewReplacer("model: ", "model: "+dir+"/", "images: ", "images: "+dir+"/", "labels: ", "labels: "+dir+"/").Replace(string(b))
	y = strings.Replace(y, "name: f32", "name: e2e-f32", 1)
	tp := testPipeline{name: "e2e-f32", broker: proctest.FreeAddr(t), funnel: proctest.FreeAddr(t), delivery: proctest.FreeAddr(t), coap: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
	y += fmt.Sprintf("kafka:\n  embedded_listen: %s\nfunnel:\n  listen: %s\n  delivery_listen: %s\n  coap_listen: %s\nadmin:\n  listen: %s\n", tp.broker, tp.funnel, tp.delivery, tp.coap, tp.admin)
	tp.file = filepath.Join(t.TempDir(), "e2e-f32.yaml")
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}

	var want struct {
		Correct   int               `json:"correct"`
		Exits     map[string]int    `json:"exits"`
		Decisions []models.Decision `json:"decisions"`
	}
	readJSON(t, filepath.Join(dir, "expected.json"), &want)
	p, err := pipeline.Load(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := models.LoadDataset(p.Path(p.Eval.Images), p.Path(p.Eval.Labels))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := models.Messages(p, ds)
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([][]byte, len(msgs))
	for i := range msgs {
		bodies[i] = msgs[i].Tensor.Data
	}
	if len(bodies) != len(want.Decisions) || len(bodies[0]) != 16*4 {
		t.Fatalf("%d samples of %d bytes, expected.json has %d", len(bodies), len(bodies[0]), len(want.Decisions))
	}

	up(t, tp)
	sendHTTP(t, tp.funnel, bodies, "f-", 4)
	got := collectResults(t, tp.broker, tp.name+".results", "f-", len(bodies), 120*time.Second)
	exits := map[string]int{}
	correct := 0
	for i, label := range ds.Labels {
		rs := got["f-"+strconv.Itoa(i)]
		if len(rs) != 1 {
			t.Errorf("f-%d has %d results", i, len(rs))
			continue
		}
		exits[rs[0].Tier]++
		if rs[0].Class == label {
			correct++
		}
		if d := (models.Decision{Tier: rs[0].Tier, Class: rs[0].Class}); d != want.Decisions[i] {
			t.Errorf("sample %d: pipeline %+v, NumPy %+v", i, d, want.Decisions[i])
		}
	}
	acc := float64(correct) / float64(len(ds.Labels))
	t.Logf("%d float32 samples: accuracy %.4f, exits %v; NumPy: %d correct, exits %v", len(bodies), acc, exits, want.Correct, want.Exits)
	if correct != want.Correct {
		t.Errorf("pipeline %d correct, NumPy %d", correct, want.Correct)
	}
	for tier, n := range want.Exits {
		if exits[tier] != n {
			t.Errorf("tier %s: %d exits through the pipeline, NumPy %d", tier, exits[tier], n)
		}
	}
	checkMatchesEval(t, tp.file, acc, exits)

	// ddnn bench's devices send the same float32 samples (message i is
	// sample i mod 300): its exits and accuracy follow from NumPy's too.
	out := t.TempDir()
	args := []string{"bench", "-f", tp.file, "--attach", "--protocol", "coap", "--workload", "paper", "--devices", "2", "--time-scale", "50", "--out", out}
	if b, err := exec.Command(ddnn, args...).CombinedOutput(); err != nil {
		t.Fatalf("bench %v: %v: %s", args, err, b)
	}
	var s benchSummary
	readJSON(t, filepath.Join(out, "summary.json"), &s)
	benchExits, benchCorrect := map[string]int{}, 0
	for i := range s.Sent {
		d := want.Decisions[i%len(want.Decisions)]
		benchExits[d.Tier]++
		if d.Class == ds.Labels[i%len(ds.Labels)] {
			benchCorrect++
		}
	}
	if s.Sent == 0 || s.Results != s.Sent || s.Lost != 0 || math.Abs(s.Accuracy-float64(benchCorrect)/float64(s.Sent)) > 1e-9 {
		t.Errorf("bench: %d sent, %d results, %d lost, accuracy %.4f; NumPy's accuracy on them %.4f", s.Sent, s.Results, s.Lost, s.Accuracy, float64(benchCorrect)/float64(s.Sent))
	}
	for tier, n := range benchExits {
		if s.Tiers[tier].Count != n {
			t.Errorf("bench: tier %s: %d exits, NumPy %d", tier, s.Tiers[tier].Count, n)
		}
	}
	t.Logf("bench over coap: %d float32 samples, accuracy %.4f, exits %v", s.Sent, s.Accuracy, benchExits)
}
