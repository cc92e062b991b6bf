package kubernetes

// These tests run against a checking fake API server (httptest), not a
// cluster: it asserts every request's method, path, query, headers and body,
// keeps a Deployment's scale and its pods in memory, and fails the test on
// any request it does not expect.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type fakeAPI struct {
	t        *testing.T
	mu       sync.Mutex
	replicas int
	pods     map[string]map[string]any // name -> pod JSON
	puts     int
	patches  []string
	fail     int // answer the next request with this status, if set
}

const (
	ns       = "ddnn"
	deploy   = "ddnn-inference-edge"
	token    = "s3cret"
	selector = "app.kubernetes.io/name=ddnn,ddnn.tier=edge"
)

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		t.Errorf("%s %s: Authorization %q", r.Method, r.URL, got)
	}
	if f.fail != 0 {
		w.WriteHeader(f.fail)
		fmt.Fprint(w, `{"kind":"Status","status":"Failure","message":"deployments.apps \"ddnn-inference-edge\" is forbidden: User cannot get resource"}`)
		f.fail = 0
		return
	}
	scalePath := "/apis/apps/v1/namespaces/" + ns + "/deployments/" + deploy + "/scale"
	switch {
	case r.URL.Path == scalePath && r.Method == http.MethodGet:
		fmt.Fprintf(w, `{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":%q,"namespace":%q,"resourceVersion":"7"},"spec":{"replicas":%d},"status":{"replicas":%d,"selector":%q}}`,
			deploy, ns, f.replicas, f.replicas, selector)
	case r.URL.Path == scalePath && r.Method == http.MethodPut:
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("PUT scale content type %q", ct)
		}
		var s struct {
			APIVersion, Kind string
			Metadata         struct{ Name, Namespace, ResourceVersion string }
			Spec             struct{ Replicas int }
		}
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			t.Errorf("PUT scale body: %v", err)
		}
		if s.APIVersion != "autoscaling/v1" || s.Kind != "Scale" || s.Metadata.Name != deploy || s.Metadata.ResourceVersion != "7" {
			t.Errorf("PUT scale object %+v", s)
		}
		f.replicas = s.Spec.Replicas
		f.puts++
		fmt.Fprint(w, `{}`)
	case r.URL.Path == "/api/v1/namespaces/"+ns+"/pods" && r.Method == http.MethodGet:
		if got := r.URL.Query().Get("labelSelector"); got != selector {
			t.Errorf("pods labelSelector %q, want %q", got, selector)
		}
		var items []map[string]any
		for _, p := range f.pods {
			items = append(items, p)
		}
		json.NewEncoder(w).Encode(map[string]any{"items": items})
	case strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/"+ns+"/pods/") && r.Method == http.MethodPatch:
		if ct := r.Header.Get("Content-Type"); ct != "application/merge-patch+json" {
			t.Errorf("PATCH pod content type %q", ct)
		}
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"+ns+"/pods/")
		if f.pods[name] == nil {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"kind":"Status","message":"pods %q not found"}`, name)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(b), `"controller.kubernetes.io/pod-deletion-cost":"-1000"`) {
			t.Errorf("PATCH pod body %s", b)
		}
		f.patches = append(f.patches, name)
		fmt.Fprint(w, `{}`)
	default:
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
	}
}

func podJSON(name, ip string, ready, deleting bool, start string) map[string]any {
	status := "False"
	if ready {
		status = "True"
	}
	md := map[string]any{"name": name}
	if deleting {
		md["deletionTimestamp"] = "2026-11-22T10:00:00Z"
	}
	return map[string]any{"metadata": md, "status": map[string]any{
		"podIP": ip, "startTime": start, "conditions": []any{map[string]any{"type": "Ready", "status": status}},
	}}
}

func newFake(t *testing.T, tlsServer bool) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, replicas: 2, pods: map[string]map[string]any{
		"edge-a": podJSON("edge-a", "10.1.0.5", true, false, "2026-11-22T10:00:00Z"),
		"edge-b": podJSON("edge-b", "10.1.0.6", false, false, "2026-11-22T10:00:05Z"),
		"edge-c": podJSON("edge-c", "10.1.0.7", true, true, "2026-11-22T09:00:00Z"),
	}}
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewTLSServer(f)
	} else {
		srv = httptest.NewServer(f)
	}
	t.Cleanup(srv.Close)
	return f, srv
}

func TestKubernetesRuntimeAgainstCheckingFakeAPIServer(t *testing.T) {
	f, srv := newFake(t, false)
	rt, err := New(Config{Server: srv.URL, Token: token, Namespace: ns, Deployment: deploy, Port: 8090})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Scale up, then the same count again: one write only.
	if err := rt.Scale(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := rt.Scale(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if f.replicas != 4 || f.puts != 1 {
		t.Errorf("replicas %d after %d PUTs, want 4 after 1", f.replicas, f.puts)
	}

	reps, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].ID != "edge-a" || !reps[0].Ready || reps[0].URL != "http://10.1.0.5:8090" || reps[1].Ready {
		t.Errorf("List = %+v (the deleting pod must be left out)", reps)
	}

	// Stop marks the pod's deletion cost, then scales down by one.
	if err := rt.Stop(ctx, "edge-b"); err != nil {
		t.Fatal(err)
	}
	if len(f.patches) != 1 || f.patches[0] != "edge-b" || f.replicas != 3 {
		t.Errorf("after Stop: patches %v, replicas %d", f.patches, f.replicas)
	}
	// A pod that is gone is fine.
	if err := rt.Stop(ctx, "edge-z"); err != nil || f.replicas != 3 {
		t.Errorf("Stop of an unknown pod: %v, replicas %d", err, f.replicas)
	}

	// API errors carry the Status message.
	f.fail = http.StatusForbidden
	err = rt.Scale(ctx, 1)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "is forbidden: User cannot get resource") {
		t.Errorf("error = %v", err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewNamesMissingFields(t *testing.T) {
	_, err := New(Config{Namespace: "x"})
	if err == nil || !strings.Contains(err.Error(), "missing [deployment server]") {
		t.Errorf("error = %v", err)
	}
}

func TestInClusterConfig(t *testing.T) {
	dir := t.TempDir()
	old := ServiceAccountDir
	ServiceAccountDir = dir
	defer func() { ServiceAccountDir = old }()
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "namespace"), []byte(ns), 0o600)
	cfg, err := InClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "https://10.96.0.1:443" || cfg.Token != token || cfg.Namespace != ns {
		t.Errorf("config %+v", cfg)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := InClusterConfig(); err == nil || !strings.Contains(err.Error(), "not in a cluster") {
		t.Errorf("outside a cluster: %v", err)
	}
}

// TestKubeconfigTLS reads a kubeconfig whose CA is the fake server's
// certificate and talks to it over TLS.
func TestKubeconfigTLS(t *testing.T) {
	f, srv := newFake(t, true)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	dir := t.TempDir()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context: {cluster: c1, user: u1, namespace: %s}
clusters:
- name: c1
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: u1
  user: {token: %s}
`, ns, srv.URL, base64.StdEncoding.EncodeToString(certPEM), token)
	path := filepath.Join(dir, "config")
	os.WriteFile(path, []byte(kc), 0o600)
	cfg, err := KubeconfigConfig(path, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Deployment = deploy
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Scale(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	if f.replicas != 5 {
		t.Errorf("replicas %d", f.replicas)
	}
}

func TestKubeconfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, context, want string }{
		{"no server", "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {}}]\nusers: [{name: u, user: {token: x}}]\n", "", `cluster "c": server is missing`},
		{"unknown context", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n", "b", `context "b" not found`},
		{"no current context", "contexts: []\n", "", "no current-context"},
		{"unknown cluster", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n", "", `cluster "c" not found`},
		{"bad client cert", "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {client-certificate-data: " + base64.StdEncoding.EncodeToString([]byte("nope")) + "}}]\n", "", `user "u": client certificate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			os.WriteFile(p, []byte(tc.yaml), 0o600)
			_, err := KubeconfigConfig(p, tc.context)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}
