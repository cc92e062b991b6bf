package kubernetes

// These tests run against a checking fake API server (httptest), not a
// cluster: it asserts every request's method, path, query, headers and body,
// keeps a Deployment's scale and its pods in memory, can answer writes with
// 409 Conflict, and fails the test on any request it does not expect.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8sscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

type fakeAPI struct {
	t         *testing.T
	mu        sync.Mutex
	tokens    []string // bearer tokens the server accepts
	seen      string   // the last bearer token presented
	replicas  int
	pods      map[string]map[string]any // name -> pod JSON
	puts      int
	fail      int // answer the next request with this status, if set
	conflicts int // answer this many scale writes with 409 Conflict
	// othersReplicas, if not 0, is what another writer set the replicas to
	// just before a write that the server answers with 409 Conflict.
	othersReplicas int
	// dep, when set, is the Deployment itself (replace_test.go).
	dep *fakeDeployment
}

const (
	ns       = "ddnn"
	deploy   = "ddnn-inference-edge"
	token    = "s3cret"
	selector = "app.kubernetes.io/name=ddnn,ddnn.tier=edge"
)

// status writes a metav1.Status failure as the API server does.
func status(w http.ResponseWriter, code int, reason, message string) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"code": code, "reason": reason, "message": message})
}

// lastToken is the last bearer token the server saw.
func (f *fakeAPI) lastToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.t
	w.Header().Set("Content-Type", "application/json")
	f.seen = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !slices.Contains(f.tokens, f.seen) {
		t.Errorf("%s %s: Authorization %q", r.Method, r.URL, r.Header.Get("Authorization"))
		status(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	if f.fail != 0 {
		status(w, f.fail, "Forbidden", `deployments.apps "ddnn-inference-edge" is forbidden: User cannot get resource`)
		f.fail = 0
		return
	}
	scalePath := "/apis/apps/v1/namespaces/" + ns + "/deployments/" + deploy + "/scale"
	switch {
	case r.URL.Path == scalePath && r.Method == http.MethodGet:
		fmt.Fprintf(w, `{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":%q,"namespace":%q,"resourceVersion":"7"},"spec":{"replicas":%d},"status":{"replicas":%d,"selector":%q}}`,
			deploy, ns, f.replicas, f.replicas, selector)
	case r.URL.Path == scalePath && r.Method == http.MethodPut:
		// client-go sends protobuf; the scheme's decoder reads either.
		b, _ := io.ReadAll(r.Body)
		obj, gvk, err := k8sscheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
		s, ok := obj.(*autoscalingv1.Scale)
		if err != nil || !ok {
			t.Errorf("PUT scale body (%s): %v %v", r.Header.Get("Content-Type"), gvk, err)
			status(w, http.StatusBadRequest, "BadRequest", "not a Scale")
			return
		}
		if gvk.GroupVersion().String() != "autoscaling/v1" || s.Name != deploy || s.Namespace != ns || s.ResourceVersion != "7" {
			t.Errorf("PUT scale object %v %+v", gvk, s)
		}
		if f.conflicts > 0 {
			f.conflicts--
			if f.othersReplicas != 0 {
				f.replicas = f.othersReplicas
			}
			status(w, http.StatusConflict, "Conflict", `Operation cannot be fulfilled on deployments.apps "ddnn-inference-edge": the object has been modified; please apply your changes to the latest version and try again`)
			return
		}
		f.replicas = int(s.Spec.Replicas)
		f.puts++
		fmt.Fprintf(w, `{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":%q,"namespace":%q,"resourceVersion":"8"},"spec":{"replicas":%d}}`,
			deploy, ns, f.replicas)
	case r.URL.Path == "/api/v1/namespaces/"+ns+"/pods" && r.Method == http.MethodGet:
		if got := r.URL.Query().Get("labelSelector"); got != selector {
			t.Errorf("pods labelSelector %q, want %q", got, selector)
		}
		var items []map[string]any
		for _, p := range f.pods {
			items = append(items, p)
		}
		json.NewEncoder(w).Encode(map[string]any{"kind": "PodList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
	case r.URL.Path == "/apis/apps/v1/namespaces/"+ns+"/deployments/"+deploy && f.dep != nil:
		f.dep.serve(t, w, r)
	case strings.HasPrefix(r.URL.Path, "/apis/apps/v1/namespaces/"+ns+"/deployments/") && strings.HasSuffix(r.URL.Path, "/scale"):
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/apis/apps/v1/namespaces/"+ns+"/deployments/"), "/scale")
		status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("deployments.apps %q not found", name))
	default:
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		status(w, http.StatusTeapot, "BadRequest", "unexpected request")
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
	return map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": md, "status": map[string]any{
		"podIP": ip, "startTime": start, "conditions": []any{map[string]any{"type": "Ready", "status": status}},
	}}
}

func newFake(t *testing.T, tlsServer bool) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, tokens: []string{token}, replicas: 2, pods: map[string]map[string]any{
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
	rt, err := New(Config{REST: &rest.Config{Host: srv.URL, BearerToken: token}, Namespace: ns, Deployment: deploy, Port: 8090})
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

	// A write that loses a race (409) is read again and retried.
	f.conflicts = 1
	if err := rt.Scale(ctx, 2); err != nil {
		t.Fatalf("Scale after a conflict: %v", err)
	}
	if f.replicas != 2 || f.conflicts != 0 {
		t.Errorf("after a conflict: replicas %d, conflicts left %d", f.replicas, f.conflicts)
	}

	// API errors are typed from the API's Status and carry its message.
	f.fail = http.StatusForbidden
	err = rt.Scale(ctx, 1)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "is forbidden: User cannot get resource") ||
		!strings.Contains(err.Error(), "deployment "+ns+"/"+deploy) {
		t.Errorf("error = %v", err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestScaleGivesUpOnEndlessConflicts(t *testing.T) {
	f, srv := newFake(t, false)
	f.conflicts = 100
	rt := runtimeFor(t, Config{REST: &rest.Config{Host: srv.URL, BearerToken: token}, Namespace: ns})
	err := rt.Scale(context.Background(), 5)
	if !apierrors.IsConflict(err) || f.replicas != 2 || f.conflicts != 95 {
		t.Errorf("error = %v, replicas %d, %d conflicts left; want a conflict after 5 tries, replicas 2", err, f.replicas, f.conflicts)
	}
}

func TestMissingDeployment(t *testing.T) {
	_, srv := newFake(t, false)
	rt, err := New(Config{REST: &rest.Config{Host: srv.URL, BearerToken: token}, Namespace: ns, Deployment: "ddnn-inference-nope"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, listErr := rt.List(ctx)
	for name, err := range map[string]error{"Scale": rt.Scale(ctx, 1), "List": listErr} {
		if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "deployment "+ns+"/ddnn-inference-nope") {
			t.Errorf("%s of a missing deployment: %v", name, err)
		}
	}
}

// TestListReadiness: a pod is ready once its Ready condition is true and
// it has an address.
func TestListReadiness(t *testing.T) {
	f, srv := newFake(t, false)
	f.pods["edge-d"] = podJSON("edge-d", "", true, false, "2026-11-22T10:00:10Z")
	rt := runtimeFor(t, Config{REST: &rest.Config{Host: srv.URL, BearerToken: token}, Namespace: ns})
	reps, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, url string
		ready   bool
	}{{"edge-a", "http://10.1.0.5:8090", true}, {"edge-b", "http://10.1.0.6:8090", false}, {"edge-d", "", false}}
	if len(reps) != len(want) {
		t.Fatalf("List = %+v, want %d replicas", reps, len(want))
	}
	for i, w := range want {
		if reps[i].ID != w.id || reps[i].URL != w.url || reps[i].Ready != w.ready {
			t.Errorf("replica %d = %+v, want %+v", i, reps[i], w)
		}
	}
}

func TestNewNamesMissingFields(t *testing.T) {
	_, err := New(Config{Namespace: "x"})
	if err == nil || !strings.Contains(err.Error(), "missing [deployment server]") {
		t.Errorf("error = %v", err)
	}
}

// writeServiceAccount mounts a service account in dir as the kubelet does.
func writeServiceAccount(t *testing.T, dir, tok string, ca []byte) {
	t.Helper()
	for name, b := range map[string][]byte{"token": []byte(tok + "\n"), "namespace": []byte(ns), "ca.crt": ca} {
		if b == nil {
			continue
		}
		// Write and rename, as the kubelet's atomic writer does, so a
		// reader never sees half a token.
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInClusterConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := inClusterConfig("10.96.0.1", "443", dir); err == nil || !strings.Contains(err.Error(), "service account token") {
		t.Errorf("without a token: %v", err)
	}
	writeServiceAccount(t, dir, token, nil)
	cfg, err := inClusterConfig("10.96.0.1", "443", dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.REST.Host != "https://10.96.0.1:443" || cfg.REST.BearerTokenFile != filepath.Join(dir, "token") || cfg.Namespace != ns {
		t.Errorf("config %+v, REST %+v", cfg, cfg.REST)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := InClusterConfig(); !errors.Is(err, rest.ErrNotInCluster) || !strings.Contains(err.Error(), "not in a cluster") {
		t.Errorf("outside a cluster: %v", err)
	}
}

// TestInClusterTokenRotation mounts a service account, lets the kubelet
// rotate its token, and waits for the API server to see the new one:
// client-go re-reads the token file about once a minute.
func TestInClusterTokenRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for client-go's token file period (about a minute)")
	}
	t.Parallel()
	f, srv := newFake(t, true)
	const rotated = "s3cret-rotated"
	f.tokens = append(f.tokens, rotated) // the old token stays valid until it expires
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeServiceAccount(t, dir, token, certPEM(srv))
	cfg, err := inClusterConfig(u.Hostname(), u.Port(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.REST.CAFile != filepath.Join(dir, "ca.crt") {
		t.Errorf("CA file %q", cfg.REST.CAFile)
	}
	rt := runtimeFor(t, cfg)
	ctx := context.Background()
	if _, err := rt.List(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.lastToken(); got != token {
		t.Fatalf("server saw token %q, want %q", got, token)
	}
	writeServiceAccount(t, dir, rotated, nil)
	deadline := time.Now().Add(2 * time.Minute)
	for f.lastToken() != rotated {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated token never reached the server; it still sees %q", f.lastToken())
		}
		if _, err := rt.List(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // one poll a second, as a scaler would
	}
}

// runtimeFor makes a runtime for the fake's Deployment from a loaded cfg.
func runtimeFor(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	cfg.Deployment = deploy
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// writeKubeconfig writes a kubeconfig for srv whose user is user (YAML
// flow mapping) and returns its path.
func writeKubeconfig(t *testing.T, srv *httptest.Server, user string) string {
	t.Helper()
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
  user: %s
`, ns, srv.URL, base64.StdEncoding.EncodeToString(certPEM(srv)), user)
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKubeconfigTLS reads a kubeconfig whose CA is the fake server's
// certificate and talks to it over TLS.
func TestKubeconfigTLS(t *testing.T) {
	f, srv := newFake(t, true)
	path := writeKubeconfig(t, srv, "{token: "+token+"}")
	cfg, err := KubeconfigConfig(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != ns {
		t.Errorf("namespace %q, want the context's %q", cfg.Namespace, ns)
	}
	rt := runtimeFor(t, cfg)
	if err := rt.Scale(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	if f.replicas != 5 {
		t.Errorf("replicas %d", f.replicas)
	}
}

// TestKubeconfigExecPlugin uses a kubeconfig whose user runs an exec
// credential plugin, as EKS and GKE kubeconfigs do, and checks that the
// plugin's token is what reaches the API server; $KUBECONFIG names it.
func TestKubeconfigExecPlugin(t *testing.T) {
	f, srv := newFake(t, true)
	const execToken = "from-the-exec-plugin"
	f.tokens = []string{execToken}
	dir := t.TempDir()
	plugin := filepath.Join(dir, "credential-plugin")
	script := "#!/bin/sh\n" +
		"echo \"$0 $*\" >> " + filepath.Join(dir, "calls") + "\n" +
		`echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"` + execToken + `"}}'` + "\n"
	if err := os.WriteFile(plugin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	path := writeKubeconfig(t, srv, `{exec: {apiVersion: client.authentication.k8s.io/v1, command: `+plugin+`, args: [token, --cluster, c1], interactiveMode: Never}}`)
	t.Setenv("KUBECONFIG", path)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimeFor(t, cfg)
	if err := rt.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if f.replicas != 3 || f.lastToken() != execToken {
		t.Errorf("replicas %d, server saw token %q", f.replicas, f.lastToken())
	}
	calls, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil || !strings.Contains(string(calls), plugin+" token --cluster c1") {
		t.Errorf("plugin calls %q, %v", calls, err)
	}
}

func TestKubeconfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, context, want string }{
		{"no server", "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {}}]\nusers: [{name: u, user: {token: x}}]\n", "", `no server found for cluster "c"`},
		{"unknown context", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n", "b", `context "b" does not exist`},
		{"no current context", "contexts: []\n", "", "no current context names a cluster in "},
		{"unknown cluster", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\nclusters: [{name: d, cluster: {server: 'https://x'}}]\n", "", `cluster "c" does not exist`},
		{"bad client cert", "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {client-certificate-data: " + base64.StdEncoding.EncodeToString([]byte("nope")) + "}}]\n", "", `client-key-data or client-key must be specified`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			os.WriteFile(p, []byte(tc.yaml), 0o600)
			_, err := KubeconfigConfig(p, tc.context)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kubeconfig "+p) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
	// No kubeconfig anywhere and not in a cluster: the error names where
	// it looked.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("HOME", dir)
	missing := filepath.Join(dir, "nope-a") + string(os.PathListSeparator) + filepath.Join(dir, "nope-b")
	t.Setenv("KUBECONFIG", missing)
	_, err := LoadConfig()
	if err == nil || !strings.Contains(err.Error(), "no current context names a cluster in "+filepath.Join(dir, "nope-a")+", "+filepath.Join(dir, "nope-b")) {
		t.Errorf("without a kubeconfig: %v", err)
	}
}
