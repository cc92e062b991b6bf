package funnel

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestReloadChangesDeviceRateLimit: a device over its bucket is refused
// until the file raising the limit is reloaded, then accepted, with no
// restart; the ignored max_request_bytes change is logged. A file that
// fails to load changes nothing.
func TestReloadChangesDeviceRateLimit(t *testing.T) {
	limited := strings.Replace(testYAML, "funnel: {max_request_bytes: 2048}", "funnel: {max_request_bytes: 2048, device_rate_limit: {rate: 0.4, burst: 2}}", 1)
	e := setupYAML(t, "", limited)
	var logs testsupport.Buffer
	e.f.log = slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Unix(1_800_000_000, 0)
	e.f.now = func() time.Time { return now }
	send := func() int {
		resp, _ := e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), map[string]string{HeaderDeviceID: "cam-1"})
		return resp.StatusCode
	}
	for range 2 {
		send()
	}
	if code := send(); code != 429 {
		t.Fatalf("over the burst of 2: %d, want 429", code)
	}

	file := filepath.Join(t.TempDir(), "p.yaml")
	write := func(y string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	role := command.Role{File: file}
	reload := command.Reloader{Load: role.LoadPipeline, Apply: e.f.Reload, Log: e.f.log}
	write(strings.Replace(limited, "rate: 0.4, burst: 2", "rate: 0.4, burst: -1", 1))
	if err := reload.Reload(); err == nil {
		t.Fatal("reload of burst -1 succeeded")
	}
	if code := send(); code != 429 {
		t.Fatalf("after a failed reload: %d, want 429", code)
	}

	write(strings.Replace(strings.Replace(limited, "rate: 0.4, burst: 2", "rate: 100, burst: 10", 1), "max_request_bytes: 2048", "max_request_bytes: 4096", 1))
	if err := reload.Reload(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if code := send(); code != 202 {
			t.Fatalf("message %d within the reloaded burst of 10: %d", i, code)
		}
	}
	if code := send(); code != 429 {
		t.Errorf("over the reloaded burst of 10: %d, want 429", code)
	}
	for _, line := range []string{
		`msg="reload: applied" setting=funnel.device_rate_limit.rate old=0.4 new=100`,
		`setting=funnel.max_request_bytes old=2048 new=4096`,
		`msg="reload: nothing changed"`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("logs lack %q:\n%s", line, logs.String())
		}
	}
}
