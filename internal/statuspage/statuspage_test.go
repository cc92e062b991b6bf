package statuspage_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/status"
	"github.com/ddnn-continuum/ddnn/internal/statuspage"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// servePage serves the page sampling snapshot, and current at /v1/status
// as ddnn up does, on a loopback server the test stops; the page samples
// until then.
func servePage(t *testing.T, snapshot, current statuspage.SnapshotFunc, o statuspage.Options) *httptest.Server {
	t.Helper()
	page, err := statuspage.New(snapshot, o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	page.Register(mux)
	mux.HandleFunc("GET "+httpapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		s, err := current(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	})
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- page.Run(ctx) }()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestRoutes: the page, its assets and the history answer GET with their
// content type and the security headers; nothing else is served and no
// other method is taken.
func TestRoutes(t *testing.T) {
	snapshot := func(context.Context) (status.Snapshot, error) {
		return status.Snapshot{Pipeline: "p", Time: time.Now(), Sites: []status.Site{{Name: "edge", Tiers: []status.Tier{{Name: "edge", InRate: 5}}}}}, nil
	}
	srv := servePage(t, snapshot, snapshot, statuspage.Options{Interval: 10 * time.Millisecond})
	for _, tc := range []struct {
		path, contentType, body string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/static/page.js" defer></script>`},
		{"/static/page.js", "text/javascript; charset=utf-8", `const HISTORY = "/v1/status/history";`},
		{"/static/page.css", "text/css; charset=utf-8", ".state-down"},
		{"/static/icon.svg", "image/svg+xml", "<svg"},
		{httpapi.PathStatusHistory, "application/json", `"interval_seconds":0.01`},
	} {
		resp, body := get(t, "GET", srv.URL+tc.path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.contentType || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %s %q, body lacks %q:\n%.300s", tc.path, resp.Status, resp.Header.Get("Content-Type"), tc.body, body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", tc.path, got)
		}
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q", tc.path, got)
		}
	}
	for _, path := range []string{"/static/", "/static/nope.js", "/static/../statuspage.go", "/index.html", "/nope"} {
		if resp, _ := get(t, "GET", srv.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		for _, path := range []string{"/", "/static/page.js", httpapi.PathStatusHistory} {
			if resp, _ := get(t, method, srv.URL+path); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %s, want 405", method, path, resp.Status)
			}
		}
	}
	// The history asked for above started the sampling.
	testsupport.WaitFor(t, 5*time.Second, "the history to hold a point", func() bool {
		var h statuspage.History
		_, body := get(t, "GET", srv.URL+httpapi.PathStatusHistory)
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("history %q: %v", body, err)
		}
		return len(h.Tiers) == 1 && h.Tiers[0].Tier == "edge" && len(h.Tiers[0].Points) > 0 && h.Tiers[0].Points[0].InRate == 5
	})
	http.DefaultClient.CloseIdleConnections()
}

// TestNoInlineCode: the page loads its script and style from files, as
// the Content-Security-Policy requires: no inline script, style or event
// handler in the HTML.
func TestNoInlineCode(t *testing.T) {
	snapshot := func(context.Context) (status.Snapshot, error) { return status.Snapshot{}, nil }
	srv := servePage(t, snapshot, snapshot, statuspage.Options{})
	_, html := get(t, "GET", srv.URL+"/")
	for _, re := range []string{`<script(?:\s[^>]*)?>\s*[^<\s]`, `<style`, `\sstyle=`, `\son[a-z]+=`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("the page has inline code (%s): %q", re, m)
		}
	}
	scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1)
	for _, s := range scripts {
		if !strings.Contains(s, ` src="/static/`) {
			t.Errorf("a script not from the page's files: %q", s)
		}
	}
	if len(scripts) == 0 {
		t.Error("the page loads no script")
	}
	http.DefaultClient.CloseIdleConnections()
}
