package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/apply"
	"github.com/ddnn-continuum/ddnn/internal/cli"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestApplyDryRunAgainstUp runs a pipeline and plans changes against it
// with ddnn apply --dry-run: the admin address serves the pipeline it
// runs with its models' sha256 and without the service token; a changed
// threshold is live, the fog tier pointed at a copy of its model is no
// rollout (same sha256), a changed input is refused (exit 1, nothing
// changed), another pipeline's name, a silent admin address and a missing
// --dry-run are errors that say so.
func TestApplyDryRunAgainstUp(t *testing.T) {
	tp := writePipeline(t)
	u := runUp(t, tp)
	defer u.stop(t)

	served := get(t, "http://"+tp.admin+httpapi.PathPipeline)
	var d apply.Description
	if err := json.Unmarshal([]byte(served), &d); err != nil {
		t.Fatalf("%s: %v\n%s", httpapi.PathPipeline, err, served)
	}
	fogModel := tp.p.ModelPath(&tp.p.Tiers[1])
	fogSHA, err := onnx.FileSHA256(fogModel)
	if err != nil {
		t.Fatal(err)
	}
	if d.ModelSHA256["fog"] != fogSHA {
		t.Errorf("served fog model sha256 %q, want %q", d.ModelSHA256["fog"], fogSHA)
	}
	token, err := os.ReadFile(filepath.Join(".run", tp.p.Name, "service.token"))
	if err != nil {
		t.Fatal(err)
	}
	if tok := strings.TrimSpace(string(token)); tok == "" || strings.Contains(served, tok) {
		t.Errorf("%s serves the service token", httpapi.PathPipeline)
	}

	y, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	apply := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli.Run(context.Background(), append([]string{"apply"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	fogCopy := filepath.Join(dir, "fog-copy.onnx")
	b, err := os.ReadFile(fogModel)
	if err != nil {
		t.Fatal(err)
	}
	write("fog-copy.onnx", string(b))

	liveFile := write("live.yaml", strings.Replace(strings.Replace(string(y), "threshold: 0.9", "threshold: 0.8", 1), fogModel, fogCopy, 1))
	code, out, errOut := apply("-f", liveFile, "--dry-run")
	if code != 0 || !strings.Contains(out, "tiers[0] (edge).exit.threshold: 0.9 -> 0.8") || strings.Contains(out, "rollout") || strings.Contains(out, "refused") {
		t.Errorf("threshold changed, fog at a copy of its model: exit %d, want 0 with the threshold live and no rollout:\n%s%s", code, out, errOut)
	}

	refusedFile := write("refused.yaml", strings.Replace(string(y), "shape: [1, 28, 28]", "shape: [1, 28, 29]", 1))
	code, out, errOut = apply("-f", refusedFile, "--dry-run")
	t.Logf("the plan of a changed input:\n%s%s", out, errOut)
	if code != 1 || !strings.Contains(out, "input.shape: [1, 28, 28] -> [1, 28, 29]: devices and the first tier's model") ||
		!strings.Contains(errOut, "plan refused") || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("input changed: exit %d, want 1 with input.shape refused and why:\n%s%s", code, out, errOut)
	}
	if after := get(t, "http://"+tp.admin+httpapi.PathPipeline); after != served {
		t.Errorf("the running pipeline changed after a dry run")
	}

	for _, tc := range []struct {
		name, file string
		args       []string
		code       int
		want       string
	}{
		{"another name", write("other.yaml", strings.Replace(string(y), "name: fmnist", "name: other", 1)), []string{"--dry-run"}, 1,
			`ddnn up at ` + tp.admin + ` runs pipeline "fmnist", not "other"`},
		{"nothing answers", write("silent.yaml", strings.Replace(string(y), "listen: "+tp.admin, "listen: "+proctest.FreeAddr(t), 1)), []string{"--dry-run"}, 1,
			"nothing answers at admin address"},
		{"a file other than up's", liveFile, nil, 1, "ddnn up runs " + tp.file + ", which is not " + liveFile + " as planned"},
		{"no apply timeout", liveFile, []string{"--apply-timeout", "0s"}, 2, "--apply-timeout 0s: must be positive"},
		{"unknown site", liveFile, []string{"--dry-run", "--site", "moon"}, 2, `--site: pipeline "fmnist" has no site "moon"`},
		{"no timeout", liveFile, []string{"--dry-run", "--timeout", "0s"}, 2, "--timeout 0s: must be positive"},
	} {
		code, out, errOut := apply(append([]string{"-f", tc.file}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want %d saying %q:\n%s%s", tc.name, code, tc.code, tc.want, out, errOut)
		}
	}

	// Applied: up's own file with a new threshold and two fog replicas
	// instead of one. Up applies it (the edge replica swaps its threshold,
	// the fog tier gets a second replica) and then serves it as running; a
	// second apply finds nothing to change.
	applied := strings.Replace(string(y), "threshold: 0.9", "threshold: 0.8", 1)
	applied = strings.Replace(applied, "  - name: fog\n", "  - name: fog\n    replicas: 2\n", 1)
	if err := os.WriteFile(tp.file, []byte(applied), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = apply("-f", tp.file)
	if code != 0 || !strings.Contains(out, "tiers[0] (edge).exit.threshold: 0.9 -> 0.8") || !strings.Contains(out, "tiers[1] (fog).replicas.min: 1 -> 2") ||
		!strings.Contains(out, "site local: applied") {
		t.Errorf("apply of up's file: exit %d, want 0, the threshold and fog's replicas live and applied:\n%s%s", code, out, errOut)
	}
	testsupport.WaitFor(t, 30*time.Second, "a second fog replica listed", func() bool {
		return strings.Count(get(t, "http://"+tp.admin+httpapi.ReplicasPath("fog")), `"url"`) == 2
	})
	if after := get(t, "http://"+tp.admin+httpapi.PathPipeline); !strings.Contains(after, `"threshold":0.8`) {
		t.Errorf("%s after the apply does not serve threshold 0.8:\n%.400s", httpapi.PathPipeline, after)
	}
	code, out, errOut = apply("-f", tp.file)
	if code != 0 || !strings.Contains(out, "nothing to change") || strings.Contains(out, "applied") {
		t.Errorf("a second apply: exit %d, want 0 and nothing to change:\n%s%s", code, out, errOut)
	}
}
