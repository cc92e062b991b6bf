package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// asDDNN makes the test binary act as the ddnn command, for tests that need
// a fresh process (ONNX Runtime loads once per process).
const asDDNN = "DDNN_TEST_AS_COMMAND"

func TestMain(m *testing.M) {
	// The tests run from internal/cli; the pipeline's paths are relative to
	// the checkout.
	if err := os.Chdir("../.."); err != nil {
		panic(err)
	}
	if os.Getenv(asDDNN) == "1" {
		os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"bnech"}, 2, `unknown command "bnech"; did you mean "bench"?`},
		{[]string{"help", "up"}, 0, "Usage: ddnn up"},
		{[]string{"help", "devices"}, 0, "Usage: ddnn devices"},
		{[]string{"help", "apply"}, 0, "Usage: ddnn apply -f FILE [--site S] [--dry-run]"},
		{[]string{"aply"}, 2, `unknown command "aply"; did you mean "apply"?`},
		{[]string{"models"}, 2, "models check"},
		{[]string{"models", "train"}, 2, `unknown models command "train"`},
		{[]string{"models", "evl"}, 2, `unknown models command "evl"; did you mean "eval"?`},
		{[]string{"models", "sweep", "-f", "deploy/pipeline.yaml"}, 2, `unknown models command "sweep": it is a flag of eval: ddnn models eval -f FILE --sweep`},
		{[]string{"models"}, 2, "ddnn models eval -f FILE --sweep"},
		{[]string{"inference", "-f", "deploy/pipeline.yaml"}, 2, "--tier is required"},
		{[]string{"inference", "--tier", "edge", "--log-level", "loud"}, 2, `--log-level "loud"`},
		{[]string{"models", "check", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"models", "check", "--nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"help"}, 0, ""},
		{[]string{"models", "check", "-h"}, 0, "Usage: ddnn models check"},
		{[]string{"help", "inspect"}, 0, "Usage: ddnn inspect -f FILE ID"},
		{[]string{"inspect", "-f", "deploy/pipeline.yaml"}, 2, "the message id is required"},
		{[]string{"inspect", "a", "-f", "deploy/pipeline.yaml", "b"}, 2, `one message id at a time (got ["a" "b"])`},
		{[]string{"inspect", "m1", "--since", "-1h", "--max-records", "0"}, 2, "--since -1h0m0s: must be positive; --max-records 0: must be at least 1"},
		{[]string{"inspect", "m1", "--nope"}, 2, "flag provided but not defined: -nope"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := run(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.Contains(out, "ddnn ") || !strings.Contains(out, "onnxruntime: 1.24.3") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestModelsCheck(t *testing.T) {
	code, out, stderr := run(t, "models", "check", "-f", "deploy/pipeline.yaml")
	if code != 0 || !strings.Contains(out, `pipeline "fmnist": 3 tiers, chain ok`) || strings.Contains(stderr, "warning") {
		t.Errorf("shipped: exit %d\n%s%s", code, out, stderr)
	}
	// A chain that fits but whose exit head emits logits declared as
	// probabilities: the check passes with a warning.
	code, out, stderr = run(t, "models", "check", "-f", "models/testdata/f32/wrong-scores.yaml")
	if want := `warning: tier "edge": exit output "exit_logits" is declared scores: probabilities`; code != 0 || !strings.Contains(out, "chain ok") || !strings.Contains(stderr, want) {
		t.Errorf("wrong scores: exit %d, stderr %q, want %q", code, stderr, want)
	}
	// A test set that cannot be read leaves the chain check passing, with
	// a warning.
	abs, _ := filepath.Abs("models")
	y := []byte(strings.Replace(testsupport.Shipped(t, "deploy/pipeline.yaml"), "test-2000-images-idx3-ubyte.gz", "missing.gz", 1))
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = run(t, "models", "check", "-f", file)
	if want := "warning: scores not checked on the test set: test set: open " + abs + "/data/missing.gz"; code != 0 || !strings.Contains(out, "chain ok") || !strings.Contains(stderr, want) {
		t.Errorf("unreadable test set: exit %d\n%s%s\nwant %q", code, out, stderr, want)
	}
	code, _, stderr = run(t, "models", "check", "-f", "models/testdata/broken-chain.yaml")
	want := `tier "edge": forward output "forward" has shape [-1 32], next tier "fog" input "features" expects [-1 16]`
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("broken: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = run(t, "models", "check", "-f", "deploy/nope.yaml")
	if code != 1 || !strings.Contains(stderr, "nope.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
}

// TestModelsEvalJSON checks the acceptance numbers through the command.
func TestModelsEvalJSON(t *testing.T) {
	code, out, stderr := run(t, "models", "eval", "-f", "deploy/pipeline.yaml", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		Samples        int     `json:"samples"`
		Accuracy       float64 `json:"accuracy"`
		EarlyExitRatio float64 `json:"early_exit_ratio"`
		Tiers          []struct {
			Name      string  `json:"name"`
			Exited    int     `json:"exited"`
			ExitRatio float64 `json:"exit_ratio"`
			Accuracy  float64 `json:"accuracy"`
		} `json:"tiers"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Samples < 2000 || r.Accuracy < 0.84 || len(r.Tiers) != 3 || 1-r.Tiers[2].ExitRatio < 0.40 {
		t.Errorf("eval = %+v", r)
	}
	code, out, _ = run(t, "models", "eval", "-f", "deploy/pipeline.yaml", "--sweep")
	if code != 0 || !strings.Contains(out, "tier edge (max_prob), other tiers as shipped:") || !strings.Contains(out, "tier fog (max_prob)") {
		t.Errorf("sweep: exit %d\n%s", code, out)
	}
}

func TestModelsEvalNoTestSet(t *testing.T) {
	dir := t.TempDir()
	y := testsupport.Shipped(t, "deploy/pipeline.yaml")
	y = y[:strings.Index(y, "eval:")]
	f := filepath.Join(dir, "p.yaml")
	os.WriteFile(f, []byte(y), 0o644)
	code, _, stderr := run(t, "models", "eval", "-f", f)
	if code != 2 || !strings.Contains(stderr, "no test set") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestInferenceServes runs the inference command, waits for /readyz, sends
// a batch and stops it with the context, as SIGTERM would.
func TestInferenceServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testsupport.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"inference", "-f", "deploy/pipeline.yaml", "--tier", "fog", "--listen", "127.0.0.1:0"}, &out, &errb)
	}()
	addrRE := regexp.MustCompile(`serving on http://(127\.0\.0\.1:\d+)/v1/infer`)
	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = "http://" + m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no address printed; stdout %q stderr %q", out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	body, _ := wire.AppendMessages(nil, wire.JSON, []wire.Message{{ID: "x", Tensor: wire.Float32Tensor([]int{32}, make([]float32, 32))}})
	resp, err := http.Post(base+"/v1/infer", wire.ContentTypeJSON, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("infer: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var m bytes.Buffer
	m.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(m.String(), `ddnn_inference_samples_total{pipeline="fmnist",tier="fog"} 1`) {
		t.Errorf("metrics lack the sample count:\n%s", m.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("inference did not stop")
	}
}

func TestInferenceMissingModel(t *testing.T) {
	dir := t.TempDir()
	y := strings.ReplaceAll(testsupport.Shipped(t, "deploy/pipeline.yaml"), mustAbs(t, "models/fog.onnx"), filepath.Join(dir, "gone.onnx"))
	f := filepath.Join(dir, "p.yaml")
	os.WriteFile(f, []byte(y), 0o644)
	code, _, stderr := run(t, "inference", "-f", f, "--tier", "fog", "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "gone.onnx") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestMissingLibrary runs the command in a fresh process with no library
// where it looks: the error names the path tried and the install command.
func TestMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	for _, tc := range []struct {
		name string
		args []string
		env  string
	}{
		{"flag", []string{"models", "check", "--ort-lib", missing}, ""},
		{"env", []string{"models", "check"}, missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Dir = "internal/cli" // TestMain moves to the checkout
			cmd.Env = append(os.Environ(), asDDNN+"=1", "ONNXRUNTIME_LIB="+tc.env)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("err %v, output %s", err, out)
			}
			for _, want := range []string{"onnxruntime library not found", missing, `"make deps"`} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output %q lacks %q", out, want)
				}
			}
		})
	}
}

// TestSeveralSites checks that a pipeline on several sites passes the
// model checks, that up refuses a site or a link it does not declare, that
// the monolith wants every tier on one site, and that the broker and the
// scaler want --site (funnel, connector and uplink run one site's part:
// TestUplinkBetweenSites).
func TestSeveralSites(t *testing.T) {
	const file = "deploy/examples/continuum.yaml"
	code, out, stderr := run(t, "models", "check", "-f", file)
	if code != 0 || !strings.Contains(out, `pipeline "fmnist": 3 tiers, chain ok`) {
		t.Errorf("models check: exit %d\n%s%s", code, out, stderr)
	}
	code, _, stderr = run(t, "up", "-f", file, "--site", "moon")
	if want := `site "moon" unknown (sites: edge, fog, cloud)`; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("up --site moon: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	// The monolith runs every tier on one site: --tiers-on places them.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"monolith", "-f", file}, `the monolith runs every tier on one site, and pipeline "fmnist" places them on 3 (edge on edge, fog on fog, cloud on cloud): --tiers-on SITE places them all on SITE (the cloud-only baseline: --tiers-on cloud)`},
		{[]string{"monolith", "-f", file, "--tiers-on", "moon"}, `--tiers-on: pipeline "fmnist" has no site "moon" (sites: edge, fog, cloud)`},
		{[]string{"monolith", "-f", file, "--tiers-on", "cloud", "--site", "edge"}, `--site edge: every tier of pipeline "fmnist" is on site "cloud" (--tiers-on edge places them on edge)`},
		{[]string{"up", "-f", file, "--link-url", "edge->moon=http://127.0.0.1:1"}, `--link-url: pipeline "fmnist" has no link edge->moon (links: edge->fog, fog->cloud, fog->edge, cloud->edge)`},
		{[]string{"up", "-f", file, "--monolith", "--link-url", "edge->fog=http://127.0.0.1:1"}, `--link-url: pipeline "fmnist" has no link edge->fog (links with every tier on site "cloud": cloud->edge)`},
		{[]string{"up", "-f", file, "--link-url", "edge-fog=http://127.0.0.1:1"}, `invalid value "edge-fog=http://127.0.0.1:1" for flag -link-url: want FROM->TO=URL`},
		{[]string{"up", "-f", file, "--link-url", "edge->fog=fog:8080"}, `for flag -link-url: edge->fog: "fog:8080" is not an http(s) URL`},
		{[]string{"up", "-f", file, "--link-url", "edge->fog=http://a", "--link-url", "edge->fog=http://b"}, `for flag -link-url: edge->fog given twice`},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// The roles that run one site's part want to know which.
	for _, role := range []string{"broker", "scaler"} {
		code, _, stderr := run(t, role, "-f", file)
		if want := `--site is required: pipeline "fmnist" has 3 sites (edge, fog, cloud)`; code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", role, code, stderr, want)
		}
		code, _, stderr = run(t, role, "-f", file, "--site", "moon")
		if want := `--site: pipeline "fmnist" has no site "moon" (sites: edge, fog, cloud)`; code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s --site moon: exit %d, stderr %q; want 2 and %q", role, code, stderr, want)
		}
	}
}

// TestMissingDefaultPipeline: run where there is no deploy/pipeline.yaml
// and without -f, every command that loads a pipeline says how to name
// one; a missing file named with -f is reported as it is.
func TestMissingDefaultPipeline(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"up"},
		{"results"},
		{"bench"},
		{"models", "check"},
		{"models", "eval"},
		{"inference", "--tier", "edge"},
		{"broker"},
		{"funnel"},
		{"connector", "--tier", "edge", "--replicas", "http://127.0.0.1:1"},
		{"uplink", "--from", "a", "--to", "b"},
		{"scaler"},
		{"monolith"},
		{"apply", "--dry-run"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := run(t, args...)
			want := "no pipeline file deploy/pipeline.yaml in "
			if code != 2 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "(the default of -f): pass -f FILE") {
				t.Errorf("exit %d, stderr %q; want 2 and the hint to pass -f", code, stderr)
			}
		})
	}
	code, _, stderr := run(t, "results", "-f", "nope.yaml")
	if code != 1 || !strings.Contains(stderr, "nope.yaml: no such file") || strings.Contains(stderr, "pass -f") {
		t.Errorf("-f nope.yaml: exit %d, stderr %q", code, stderr)
	}
}

// TestResultsNoBroker: ddnn results with no broker listening fails within
// seconds, naming the brokers and where they came from; contradicting
// flags are usage errors.
func TestResultsNoBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b, err := os.ReadFile("deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, append(b, "kafka:\n  brokers: ["+addr+"]\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", file, "--count", "1"}, "no Kafka broker reachable at " + addr},
		{[]string{"-f", file, "--follow"}, "(brokers from the kafka section of " + file},
		{[]string{"-f", "deploy/pipeline.yaml", "--brokers", addr, "--follow"}, "at " + addr + ": "},
	} {
		start := time.Now()
		code, _, stderr := run(t, append([]string{"results"}, tc.args...)...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("%v: took %s", tc.args, d)
		}
	}
	code, _, stderr := run(t, "results", "--last", "3", "--count", "2")
	if code != 2 || !strings.Contains(stderr, "--last prints the newest N and --count stops after N") {
		t.Errorf("--last --count: exit %d, stderr %q", code, stderr)
	}
}
