// Package jaegertest runs a real OTLP receiver for the trace tests: Jaeger
// v2, built from the Go module proxy by scripts/jaeger-deps.sh into
// .deps/jaeger/<Version>/jaeger, with in-memory storage, its OTLP/HTTP
// receiver, query API and health check each on a 127.0.0.1 port the test
// picks, and nothing else listening. It reads traces back through the
// query API (/api/traces?service=…, /api/traces/{id}).
//
// Its OTLP receiver stores what it receives before it answers (no batch
// processor, the storage exporter's queue off): a span is readable once
// its export returned, so once a role stopped (its Shutdown flushes and
// waits for the answer) a test reads every span it will ever send.
//
// It must not be imported by anything but tests. When the binary is
// missing (no Go module proxy when make test ran), New skips the test with
// the reason. Jaeger is stopped by its PID.
package jaegertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// Version is the Jaeger release scripts/jaeger-deps.sh builds.
const Version = "v1.75.0"

// Binary is where scripts/jaeger-deps.sh puts Jaeger under the checkout
// root.
func Binary(root string) string { return filepath.Join(root, ".deps", "jaeger", Version, "jaeger") }

// Jaeger is a running Jaeger.
type Jaeger struct {
	// OTLP is the base URL of the OTLP/HTTP receiver (the exporter adds
	// /v1/traces); Query that of the query API.
	OTLP, Query string
	cmd         *exec.Cmd
	exited      chan struct{}
	log         string
}

// config is Jaeger's configuration: OTLP over HTTP in, memory storage,
// the query API and the health check, every endpoint on loopback; its own
// metrics off (they would listen on a fixed port). The traces pipeline
// has no processor: a batch processor answers the exporter at once and
// stores up to its timeout later, and a test reading after a role stopped
// would miss the spans of its last export.
const config = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %[1]s
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %[2]s
    grpc:
      endpoint: %[3]s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: %[4]s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// New starts Jaeger from the checkout at root for t, waits until it is
// healthy and stops it when t ends. It skips t when the binary is missing.
func New(t testing.TB, root string) *Jaeger {
	t.Helper()
	bin := Binary(root)
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("jaeger %s not installed (%v): run scripts/jaeger-deps.sh (make test does; it needs the Go module proxy)", Version, err)
	}
	dir := t.TempDir()
	addrs := make([]string, 4)
	for i := range addrs {
		port, err := socket.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	health, query, grpc, otlp := addrs[0], addrs[1], addrs[2], addrs[3]
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, config, health, query, grpc, otlp), 0o600); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{OTLP: "http://" + otlp, Query: "http://" + query, exited: make(chan struct{}), log: filepath.Join(dir, "jaeger.log")}
	logf, err := os.Create(j.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	j.cmd = exec.Command(bin, "--config", cfgPath)
	j.cmd.Stdout, j.cmd.Stderr = logf, logf
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := j.cmd.Start(); err != nil {
		t.Fatalf("jaeger: %v", err)
	}
	go func() { j.cmd.Wait(); close(j.exited) }()
	t.Cleanup(j.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for !j.healthy("http://" + health + "/status") {
		select {
		case <-j.exited:
			t.Fatalf("jaeger exited at start: %s", j.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not healthy after 30s: %s", j.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("jaeger %s healthy in %v (pid %d, otlp %s, query %s)", Version, time.Since(start).Round(time.Millisecond), j.cmd.Process.Pid, j.OTLP, j.Query)
	return j
}

func (j *Jaeger) healthy(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Log is what Jaeger wrote so far.
func (j *Jaeger) Log() string {
	b, _ := os.ReadFile(j.log)
	return string(b)
}

// Stop stops Jaeger by its PID: SIGTERM, SIGKILL after 5s.
func (j *Jaeger) Stop() {
	select {
	case <-j.exited:
		return
	default:
	}
	j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.exited:
	case <-time.After(5 * time.Second):
		j.cmd.Process.Kill()
		<-j.exited
	}
}

// Trace is a trace as the query API returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []Tag       `json:"tags"`
	ProcessID     string      `json:"processID"`
}

// Reference is a span's parent (CHILD_OF) or another it follows.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// Tag is an attribute of a span or a process.
type Tag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Process is the service that sent spans.
type Process struct {
	ServiceName string `json:"serviceName"`
	Tags        []Tag  `json:"tags"`
}

// Tag is the value of s's attribute key as text, and whether it has one.
func (s Span) Tag(key string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value), true
		}
	}
	return "", false
}

// Parent is the id of s's parent span in its trace, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

// Services are the services Jaeger has spans of.
func (j *Jaeger) Services(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.Query+"/api/services", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Data []string `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger: /api/services: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("jaeger: /api/services: %w", err)
	}
	return out.Data, nil
}

// Traces are the traces of service (at most limit), newest first.
func (j *Jaeger) Traces(ctx context.Context, service string, limit int) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {strconv.Itoa(limit)}, "lookback": {"1h"}}
	return j.get(ctx, "/api/traces?"+q.Encode())
}

// Trace is the trace id.
func (j *Jaeger) Trace(ctx context.Context, id string) (Trace, error) {
	ts, err := j.get(ctx, "/api/traces/"+url.PathEscape(id))
	if err != nil {
		return Trace{}, err
	}
	if len(ts) != 1 {
		return Trace{}, fmt.Errorf("jaeger: %d traces for id %s", len(ts), id)
	}
	return ts[0], nil
}

// ErrNotFound is a query that found nothing (yet).
var ErrNotFound = errors.New("jaeger: not found")

func (j *Jaeger) get(ctx context.Context, path string) ([]Trace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.Query+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("jaeger: %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger: %s: status %d: %.200s", path, resp.StatusCode, b)
	}
	var out struct {
		Data []Trace `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("jaeger: %s: %w", path, err)
	}
	return out.Data, nil
}
