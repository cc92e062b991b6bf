// Package e2e runs whole pipelines the way users do: the ddnn binary
// (built once for the tests), `ddnn up` on the embedded broker, devices over
// HTTP, kcat as a foreign Kafka client, signals and crashes.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/ddnn-continuum/ddnn/models"
)

var ddnn string // the binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ddnn-e2e")
	if err != nil {
		panic(err)
	}
	ddnn = filepath.Join(dir, "ddnn")
	// The binary finds the checkout's ONNX Runtime from any working
	// directory (tests run it from temporary ones), as `make build` does.
	ort, err := filepath.Abs("../../.deps/onnxruntime/libonnxruntime.so.1")
	if err != nil {
		panic(err)
	}
	build := exec.Command("go", "build", "-o", ddnn,
		"-ldflags", "-X github.com/ddnn-continuum/ddnn/internal/onnx.DefaultLibPath="+ort,
		"github.com/ddnn-continuum/ddnn/cmd/ddnn")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building ddnn:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func root(t testing.TB) string {
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pipelineFile writes the shipped pipeline under a new name with free ports
// and absolute paths, plus extra YAML (e.g. replicas).
type testPipeline struct {
	file, name, broker, funnel, delivery, coap, admin string
}

func writePipeline(t testing.TB, name string, edgeReplicas int, brokers string) testPipeline {
	t.Helper()
	y := testsupport.Shipped(t, "deploy/pipeline.yaml")
	y = strings.Replace(y, "name: fmnist", "name: "+name, 1)
	y = strings.Replace(y, "    inference:\n      intra_op_threads: 1\n", fmt.Sprintf("    inference:\n      intra_op_threads: 1\n    replicas: %d\n", edgeReplicas), 1)
	tp := testPipeline{name: name, broker: proctest.FreeAddr(t), funnel: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
	if brokers != "" {
		tp.broker = brokers
		y += fmt.Sprintf("kafka:\n  brokers: [%s]\n", brokers)
	} else {
		y += fmt.Sprintf("kafka:\n  embedded_listen: %s\n", tp.broker)
	}
	tp.coap, tp.delivery = proctest.FreeAddr(t), proctest.FreeAddr(t)
	y += fmt.Sprintf("funnel:\n  listen: %s\n  delivery_listen: %s\n  coap_listen: %s\nadmin:\n  listen: %s\n", tp.funnel, tp.delivery, tp.coap, tp.admin)
	tp.file = filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return tp
}

// proc is a ddnn process started by a test and stopped by its PID.
type proc struct {
	cmd    *exec.Cmd
	out    *testsupport.Buffer
	exited chan struct{}
	err    error
}

// workDirs holds each test's working directory for the processes it
// starts, so what they keep in the working directory (the embedded
// broker's .run/<name>/kafka) stays with the test and a restart finds it.
var workDirs sync.Map // testing.TB → string

func workDir(t testing.TB) string {
	if d, ok := workDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	workDirs.Store(t, d)
	return d
}

func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startBinary(t, ddnn, args...)
}

// startBinary is start of the ddnn binary at bin.
func startBinary(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testsupport.Buffer{}, exited: make(chan struct{})}
	p.cmd.Dir = workDir(t)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(15 * time.Second):
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("output of ddnn %s (%v):\n%s", strings.Join(args, " "), p.err, tail(p.out.String(), 60))
		}
	})
	return p
}

// term sends SIGTERM and expects a clean exit within 10 s; it returns how
// long the stop took.
func (p *proc) term(t testing.TB) time.Duration {
	t.Helper()
	return p.stop(t, syscall.SIGTERM, "SIGTERM", 10*time.Second)
}

// stop sends sig, called name in failures, and expects a clean exit within
// the given time; it returns how long the stop took.
func (p *proc) stop(t testing.TB, sig syscall.Signal, name string, within time.Duration) time.Duration {
	t.Helper()
	stopAt := time.Now()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("did not exit within %s of %s", within, name)
	}
	if p.err != nil {
		t.Errorf("exit after %s: %v", name, p.err)
	}
	return time.Since(stopAt)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func ready(url string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func up(t testing.TB, tp testPipeline) *proc {
	t.Helper()
	return upBinary(t, tp, ddnn)
}

// upBinary is up with the ddnn binary at bin.
func upBinary(t testing.TB, tp testPipeline, bin string) *proc {
	t.Helper()
	p := startBinary(t, bin, "up", "-f", tp.file)
	testsupport.WaitFor(t, 60*time.Second, "ddnn up ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("ddnn up exited: %v\n%s", p.err, tail(p.out.String(), 40))
		default:
		}
		return ready("http://" + tp.admin + "/readyz")
	})
	return p
}

func testSet(t testing.TB) *models.Dataset {
	ds, err := models.LoadDataset(filepath.Join(root(t), "models/data/test-2000-images-idx3-ubyte.gz"), filepath.Join(root(t), "models/data/test-2000-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// sendHTTP posts images[i] as raw bytes with id prefix+i, from senders
// goroutines.
func sendHTTP(t testing.TB, funnel string, images [][]byte, prefix string, senders int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	client := &http.Client{Timeout: 30 * time.Second}
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := s; i < len(images); i += senders {
				req, _ := http.NewRequest("POST", "http://"+funnel+"/v1/ingest", bytes.NewReader(images[i]))
				req.Header.Set("Content-Type", "application/octet-stream")
				req.Header.Set("X-Message-Id", prefix+strconv.Itoa(i))
				req.Header.Set("X-Device-Id", "sender-"+strconv.Itoa(s))
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("image %d: status %d", i, resp.StatusCode)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// collectResults reads the results topic from the start until want distinct
// ids with the prefix arrived, and returns every result per id. opts
// (e.g. TLS and SASL) are added to the reader's options.
func collectResults(t testing.TB, brokers, topic, prefix string, want int, timeout time.Duration, opts ...kgo.Opt) map[string][]wire.Result {
	t.Helper()
	cl := readFromStart(t, brokers, topic, opts...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := map[string][]wire.Result{}
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d results within %s", len(got), want, timeout)
		}
		for _, rec := range fs.Records() {
			r, err := wire.DecodeResult(rec.Value)
			if err != nil {
				t.Fatalf("result record: %v", err)
			}
			if strings.HasPrefix(r.ID, prefix) {
				got[r.ID] = append(got[r.ID], r)
			}
		}
	}
	readLate(cl, prefix, got)
	return got
}

// readFromStart returns a client reading topic from its start; opts (e.g.
// TLS and SASL) are added to its options. The caller closes it.
func readFromStart(t testing.TB, brokers, topic string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// readLate reads from cl half a second longer and adds the results with
// prefix to got, so that late duplicates are counted too.
func readLate(cl *kgo.Client, prefix string, got map[string][]wire.Result) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	for _, rec := range cl.PollFetches(ctx).Records() {
		if r, err := wire.DecodeResult(rec.Value); err == nil && strings.HasPrefix(r.ID, prefix) {
			got[r.ID] = append(got[r.ID], r)
		}
	}
}

type evalJSON struct {
	Samples  int     `json:"samples"`
	Accuracy float64 `json:"accuracy"`
	Tiers    []struct {
		Name   string `json:"name"`
		Exited int    `json:"exited"`
	} `json:"tiers"`
}

// TestPipelineMatchesEval is the acceptance run: 2,000 labeled images
// through `ddnn up` by 4 concurrent senders; every id gets exactly one
// result; accuracy and per-tier exits equal `ddnn models eval`.
func TestPipelineMatchesEval(t *testing.T) {
	tp := writePipeline(t, "e2e", 2, "")
	up(t, tp)
	got := sendTestSet(t, tp.funnel, tp.broker, tp.name+".results", tp.file, "")
	for id, rs := range got {
		if r := rs[0]; r.SentAt.IsZero() || r.ExitedAt.Before(r.SentAt) || len(r.Hops) == 0 {
			t.Errorf("%s result lacks timestamps: %+v", id, r)
		}
	}
}

// sendTestSet sends the labeled test set to funnel by 4 senders (ids
// img-<i>), reads the results from topic on brokers, checks that every
// image has exactly one result and that accuracy and exits per tier equal
// `ddnn models eval` on file, logs the figures (what names the setting),
// and returns the results by id. opts are the results reader's extra
// options (see collectResults).
func sendTestSet(t *testing.T, funnel, brokers, topic, file, what string, opts ...kgo.Opt) map[string][]wire.Result {
	t.Helper()
	ds := testSet(t)
	start := time.Now()
	sendHTTP(t, funnel, ds.Samples, "img-", 4)
	sent := time.Since(start)
	got := collectResults(t, brokers, topic, "img-", len(ds.Samples), 120*time.Second, opts...)
	took := time.Since(start)

	exits := map[string]int{}
	correct, dups := 0, 0
	var latencies []time.Duration
	for i, label := range ds.Labels {
		rs := got["img-"+strconv.Itoa(i)]
		if len(rs) != 1 {
			dups += max(0, len(rs)-1)
			t.Errorf("img-%d has %d results", i, len(rs))
			continue
		}
		exits[rs[0].Tier]++
		if rs[0].Class == label {
			correct++
		}
		latencies = append(latencies, rs[0].ExitedAt.Sub(rs[0].SentAt))
	}
	if len(latencies) == 0 {
		t.Fatal("no image has a result")
	}
	slices.Sort(latencies)
	acc := float64(correct) / float64(len(ds.Labels))
	t.Logf("%d images%s: sent in %s, all results in %s (%.0f msg/s), latency p50 %s p99 %s; accuracy %.4f; exits %v; duplicates %d",
		len(ds.Samples), what, sent.Round(time.Millisecond), took.Round(time.Millisecond), float64(len(ds.Samples))/took.Seconds(),
		latencies[len(latencies)/2].Round(100*time.Microsecond), latencies[len(latencies)*99/100].Round(100*time.Microsecond), acc, exits, dups)
	checkMatchesEval(t, file, acc, exits)
	return got
}

// checkMatchesEval compares the accuracy and exits per tier the pipeline
// gave with what `ddnn models eval` gives for the same YAML.
func checkMatchesEval(t *testing.T, file string, acc float64, exits map[string]int) {
	t.Helper()
	out, err := exec.Command(ddnn, "models", "eval", "-f", file, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ev evalJSON
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Accuracy != acc {
		t.Errorf("pipeline accuracy %.4f, models eval %.4f", acc, ev.Accuracy)
	}
	for _, tr := range ev.Tiers {
		if exits[tr.Name] != tr.Exited {
			t.Errorf("tier %s: %d exits through the pipeline, %d in models eval", tr.Name, exits[tr.Name], tr.Exited)
		}
	}
}

// TestKcatInterop produces raw images with kcat into the first tier's topic
// and reads their results back with kcat; a garbage record lands on the
// dead-letter topic with its reason while the others get results.
func TestKcatInterop(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat; make deps installs it)")
	}
	tp := writePipeline(t, "kcat", 1, "")
	up(t, tp)
	ds := testSet(t)
	const n = 20
	// kcat -P with -K: reads "key<TAB>value" lines; raw bytes may contain
	// newlines and tabs, so send each image as its own message from a file.
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		f := filepath.Join(dir, fmt.Sprintf("kcat-%d", i))
		if err := os.WriteFile(f, ds.Samples[i], 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("kcat", "-P", "-b", tp.broker, "-t", tp.name+".edge.in", "-k", fmt.Sprintf("kcat-%d", i), f)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat -P: %v: %s", err, out)
		}
	}
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("this is not an image"), 0o644)
	if out, err := exec.Command("kcat", "-P", "-b", tp.broker, "-t", tp.name+".edge.in", "-k", "bad-1", garbage).CombinedOutput(); err != nil {
		t.Fatalf("kcat -P garbage: %v: %s", err, out)
	}

	// Read results with kcat until all n are there.
	ids := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(ids) < n && time.Now().Before(deadline) {
		cmd := exec.Command("kcat", "-C", "-b", tp.broker, "-t", tp.name+".results", "-o", "beginning", "-e", "-q")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kcat -C: %v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var r wire.Result
			if json.Unmarshal(sc.Bytes(), &r) == nil && strings.HasPrefix(r.ID, "kcat-") {
				ids[r.ID] = true
			}
		}
		if len(ids) < n {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(ids) != n {
		t.Fatalf("kcat read %d of %d results", len(ids), n)
	}
	out, err := exec.Command("kcat", "-C", "-b", tp.broker, "-t", tp.name+".edge.dlq", "-o", "beginning", "-e", "-q", "-f", "%k %h\n").Output()
	if err != nil {
		t.Fatalf("kcat -C dlq: %v", err)
	}
	if !strings.Contains(string(out), "bad-1") || !strings.Contains(string(out), "ddnn-reason=undecodable record: raw value has 20 bytes, want 784") {
		t.Errorf("dead-letter topic holds %q", out)
	}
}

// childPIDs lists the direct children of pid whose command line contains
// all of words.
func childPIDs(t testing.TB, pid int, words ...string) []int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			c, _ := strconv.Atoi(s)
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c))
			line := strings.ReplaceAll(string(cmd), "\x00", " ")
			ok := true
			for _, w := range words {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				out = append(out, c)
			}
		}
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// waitGone waits up to 10 s until none of pids is alive.
func waitGone(t testing.TB, what string, pids []int) {
	t.Helper()
	testsupport.WaitFor(t, 10*time.Second, what, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// TestSIGTERMUnderLoad stops `ddnn up` while images flow: it exits 0 within
// 10 s and leaves no child process behind.
func TestSIGTERMUnderLoad(t *testing.T) {
	tp := writePipeline(t, "term", 2, "")
	p := up(t, tp)
	children := childPIDs(t, p.cmd.Process.Pid)
	if len(children) != 8 { // funnel, 2+1+1 replicas, 3 connectors
		t.Fatalf("%d children, want 8", len(children))
	}
	ds := testSet(t)
	l := startLoad(t, tp.funnel, ds.Samples, "st-", 2000, 1000)
	time.Sleep(500 * time.Millisecond)
	t.Logf("stopped in %s with images flowing", p.term(t).Round(time.Millisecond))
	<-l.done
	for _, c := range children {
		if alive(c) {
			t.Errorf("child %d still running", c)
		}
	}
}

// TestBench runs `ddnn bench --attach` against `ddnn up` over each
// protocol, and checks summary.json, samples.csv and the plots it writes.
func TestBench(t *testing.T) {
	tp := writePipeline(t, "bench", 1, "")
	up(t, tp)
	for _, proto := range []string{"http", "coap", "kafka"} {
		out := t.TempDir()
		args := []string{"bench", "-f", tp.file, "--attach", "--protocol", proto, "--workload", "paper",
			"--devices", "3", "--time-scale", "50", "--out", out}
		if b, err := exec.Command(ddnn, args...).CombinedOutput(); err != nil {
			t.Fatalf("bench %v: %v: %s", args, err, b)
		}
		var s benchSummary
		readJSON(t, filepath.Join(out, "summary.json"), &s)
		// 3 devices × 400 messages; the classes match the models' own
		// accuracy on the test subset (0.8765 over its first 2,000).
		if s.Sent != 1200 || s.Accepted != 1200 || s.Refused != 0 || s.Results != 1200 || s.Lost != 0 || s.Accuracy < 0.8 || s.All.P50 <= 0 || s.All.Count != 1200 {
			t.Errorf("%s: %+v", proto, s)
		}
		n := 0
		for _, tier := range []string{"edge", "fog", "cloud"} {
			n += s.Tiers[tier].Count
			if r := s.Replicas[tier]; r.Min != 1 || r.Max != 1 {
				t.Errorf("%s: replicas of %s %+v, want 1", proto, tier, r)
			}
		}
		if n != 1200 {
			t.Errorf("%s: exits per tier add up to %d: %+v", proto, n, s.Tiers)
		}
		csv, _ := os.ReadFile(filepath.Join(out, "samples.csv"))
		if lines := strings.Count(string(csv), "\n"); lines != 1201 {
			t.Errorf("%s: samples.csv has %d lines, want 1201", proto, lines)
		}
		for _, png := range []string{"latency.png", "latency_box.png", "throughput.png", "replicas.png"} {
			b, err := os.ReadFile(filepath.Join(out, png))
			if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
				t.Errorf("%s: %s: %v (%d bytes)", proto, png, err, len(b))
			}
		}
	}
}

// TestBenchStartsPipelineAndInterrupts lets bench start the pipeline
// itself, interrupts it with SIGINT mid-run, and expects the partial report
// written, a non-zero exit, and the pipeline stopped.
func TestBenchStartsPipelineAndInterrupts(t *testing.T) {
	tp := writePipeline(t, "benchint", 1, "")
	out := t.TempDir()
	b := start(t, "bench", "-f", tp.file, "--workload", "constant", "--rate", "50", "--duration", "60s", "--out", out)
	testsupport.WaitFor(t, 60*time.Second, "bench sending", func() bool {
		select {
		case <-b.exited:
			t.Fatalf("bench exited: %v\n%s", b.err, b.out.String())
		default:
		}
		return strings.Contains(b.out.String(), "bench: pipeline, constant over http")
	})
	time.Sleep(2 * time.Second)
	b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.exited:
	case <-time.After(45 * time.Second):
		t.Fatal("bench did not stop within 45s of SIGINT")
	}
	if b.err == nil || !strings.Contains(b.out.String(), "interrupted: the report is partial") {
		t.Errorf("exit %v, output:\n%s", b.err, b.out.String())
	}
	var s benchSummary
	readJSON(t, filepath.Join(out, "summary.json"), &s)
	// A send the interrupt cut short is refused as "interrupted"; every
	// accepted one has its result.
	if !s.Interrupted || s.Sent < 50 || s.Sent > 2000 || s.Accepted+s.Refused != s.Sent || s.Refused != s.RefusedBy["interrupted"] ||
		s.Results < s.Accepted || s.Lost != 0 {
		t.Errorf("partial summary: %+v", s)
	}
	if ready("http://" + tp.admin + "/readyz") {
		t.Error("the pipeline bench started still answers after bench exited")
	}
}

// TestBenchCompare runs one workload against the pipeline and against
// `ddnn monolith`, both started by bench, and checks compare.json.
func TestBenchCompare(t *testing.T) {
	tp := writePipeline(t, "benchcmp", 1, "")
	out := t.TempDir()
	b, err := exec.Command(ddnn, "bench", "-f", tp.file, "--compare", "--workload", "constant", "--rate", "300",
		"--duration", "2s", "--devices", "4", "--out", out).CombinedOutput()
	if err != nil {
		t.Fatalf("bench --compare: %v: %s", err, b)
	}
	var c struct {
		Pipeline, Monolith benchSummary
		Ratios             map[string]float64 `json:"ratios_pipeline_over_monolith"`
	}
	readJSON(t, filepath.Join(out, "compare.json"), &c)
	for name, s := range map[string]benchSummary{"pipeline": c.Pipeline, "monolith": c.Monolith} {
		if s.Sent != 600 || s.Accepted != 600 || s.Refused != 0 || s.Results != 600 || s.Lost != 0 || s.Accuracy < 0.8 {
			t.Errorf("%s: %+v", name, s)
		}
		if _, err := os.Stat(filepath.Join(out, name, "summary.json")); err != nil {
			t.Error(err)
		}
	}
	// The same images through the same policies: the same classes.
	if c.Pipeline.Accuracy != c.Monolith.Accuracy || c.Ratios["accuracy"] != 1 || c.Ratios["throughput_per_s"] <= 0 {
		t.Errorf("compare: %+v", c)
	}
	if !strings.Contains(string(b), "pipeline/monolith") {
		t.Errorf("no comparison table:\n%s", b)
	}
}

// TestBenchUnreachable expects --attach with nothing running to fail within
// seconds, saying what it could not reach.
func TestBenchUnreachable(t *testing.T) {
	tp := writePipeline(t, "benchnone", 1, "")
	for _, proto := range []string{"http", "coap", "kafka"} {
		t0 := time.Now()
		out, err := exec.Command(ddnn, "bench", "-f", tp.file, "--attach", "--protocol", proto).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unreachable") || !strings.Contains(string(out), "ddnn up -f") {
			t.Errorf("%s: %v: %s", proto, err, out)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("%s: took %s to fail", proto, d)
		}
	}
}

// benchSummary is the part of summary.json the tests read.
type benchSummary struct {
	Sent, Accepted, Refused, Results, Lost, Duplicates int
	RefusedBy                                          map[string]int `json:"refused_by"`
	Interrupted                                        bool
	Accuracy                                           float64
	All                                                struct {
		Count int
		P50   float64 `json:"p50_ms"`
	}
	Tiers    map[string]struct{ Count int }
	Replicas map[string]struct{ Min, Max, Final int }
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v: %s", path, err, b)
	}
}

// TestResultsCommand reads results back with `ddnn results`, as JSON lines
// and as a table.
func TestResultsCommand(t *testing.T) {
	tp := writePipeline(t, "results", 1, "")
	up(t, tp)
	ds := testSet(t)
	sendHTTP(t, tp.funnel, ds.Samples[:5], "rc-", 1)
	out, err := exec.Command(ddnn, "results", "-f", tp.file, "--count", "5", "--json", "--timeout", "30s").Output()
	if err != nil {
		t.Fatalf("results --json: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines: %s", len(lines), out)
	}
	for _, l := range lines {
		var r wire.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil || !strings.HasPrefix(r.ID, "rc-") || r.Label == "" {
			t.Errorf("line %q: %v", l, err)
		}
	}
	out, err = exec.Command(ddnn, "results", "-f", tp.file, "--count", "5").Output()
	if err != nil || !strings.Contains(string(out), "LABEL") || strings.Count(string(out), "rc-") != 5 {
		t.Errorf("results table: %v\n%s", err, out)
	}
	// Asking for more than there are fails after the timeout, saying so. The
	// timeout covers connecting too, so it is long enough for a loaded machine.
	out, err = exec.Command(ddnn, "results", "-f", tp.file, "--count", "6", "--timeout", "5s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "5 of 6 results within 5s") {
		t.Errorf("results --count 6: %v\n%s", err, out)
	}
}

// TestSupervisorDeathKillsChildren: when `ddnn up` dies without a chance to
// stop its children, they die with it.
func TestSupervisorDeathKillsChildren(t *testing.T) {
	tp := writePipeline(t, "orphans", 1, "")
	p := up(t, tp)
	children := childPIDs(t, p.cmd.Process.Pid)
	if len(children) == 0 {
		t.Fatal("no children")
	}
	p.cmd.Process.Kill()
	<-p.exited
	waitGone(t, "children gone", children)
}

// TestResultsReadsWhatIsThere: without --count, `ddnn results` prints what
// the topic holds and stops, without waiting for its timeout.
func TestResultsReadsWhatIsThere(t *testing.T) {
	tp := writePipeline(t, "resultsall", 1, "")
	up(t, tp)
	ds := testSet(t)
	sendHTTP(t, tp.funnel, ds.Samples[:7], "ra-", 1)
	collectResults(t, tp.broker, tp.name+".results", "ra-", 7, 30*time.Second)
	start := time.Now()
	out, err := exec.Command(ddnn, "results", "-f", tp.file, "--json", "--timeout", "20s").Output()
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	if n := strings.Count(string(out), `"id":"ra-`); n != 7 {
		t.Errorf("%d results printed, want 7:\n%s", n, out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s: waited for the timeout instead of stopping at the end", took)
	}
}
