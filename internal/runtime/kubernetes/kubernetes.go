// Package kubernetes runs a tier's inference replicas as a Kubernetes
// Deployment that an operator applied (deploy/k8s). The runtime only sizes
// it, through the deployments/scale subresource, and reads its pods for
// readiness; it never creates or deletes the Deployment, so replicas outlive
// the scaler by design.
//
// It talks to the API server with client-go's REST client and API types,
// so credentials work as they do for kubectl: in a pod the service account,
// whose rotating token client-go re-reads from its file; outside a cluster a
// kubeconfig with a token, a client certificate or an exec credential plugin
// (as EKS and GKE kubeconfigs use). A scale write that loses a race with
// another writer (409 Conflict) is read again and retried.
//
// It never writes a pod: the NetworkPolicies of deploy/k8s trust pod
// labels, so the scaler's Role grants get and update on the scale
// subresource of the inference Deployments and list on pods, nothing more.
// A replica is removed by scaling down; the ReplicaSet chooses which pod
// goes (one not ready first), and Kubernetes' graceful termination lets it
// finish its in-flight requests.
//
// Replace is a rolling update of the Deployment (replace.go): it patches
// annotations of the pod template, which the scaler's Role allows
// (get and patch on the inference Deployments) and deploy/k8s's
// ValidatingAdmissionPolicy bounds to those annotations, so the account
// still cannot give a pod another label or change what it runs.
package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// Config says where the tier's Deployment lives and how to reach the API.
type Config struct {
	Namespace  string
	Deployment string
	// Port is the replicas' HTTP port (pod IP + port make a replica URL).
	Port int
	// REST reaches and authenticates to the API server; LoadConfig,
	// InClusterConfig and KubeconfigConfig fill it.
	REST *rest.Config
	// Spec is what the replicas run: its tier is the Deployment's, and
	// Replace hashes it into the pod template.
	Spec runtime.Spec
	// RolloutTimeout bounds a Replace: a rollout not complete by then is
	// rolled back (default 5m).
	RolloutTimeout time.Duration
	Logger         *slog.Logger
}

// requestTimeout bounds one API request when REST sets no timeout.
const requestTimeout = 10 * time.Second

// serviceAccountDir is where Kubernetes mounts a pod's service account.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// LoadConfig finds the API server as kubectl and client-go do: inside a pod
// (KUBERNETES_SERVICE_HOST is set) its service account, otherwise the
// kubeconfig files that $KUBECONFIG lists, else ~/.kube/config, in their
// current context.
func LoadConfig() (Config, error) {
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return InClusterConfig()
	}
	return KubeconfigConfig("", "")
}

// InClusterConfig is the pod's service account: the API address from
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, the mounted CA, token
// and namespace. As with rest.InClusterConfig, the token is named by its
// file, which client-go re-reads, so a rotated token is picked up.
func InClusterConfig() (Config, error) {
	return inClusterConfig(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"), serviceAccountDir)
}

// inClusterConfig reaches the API server at host:port with the service
// account mounted at dir.
func inClusterConfig(host, port, dir string) (Config, error) {
	if host == "" || port == "" {
		return Config{}, fmt.Errorf("kubernetes: not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset: %w", rest.ErrNotInCluster)
	}
	tokenFile := filepath.Join(dir, "token")
	if _, err := os.ReadFile(tokenFile); err != nil {
		return Config{}, fmt.Errorf("kubernetes: service account token: %w", err)
	}
	rc := &rest.Config{Host: "https://" + net.JoinHostPort(host, port), BearerTokenFile: tokenFile}
	if ca := filepath.Join(dir, "ca.crt"); fileExists(ca) {
		rc.TLSClientConfig.CAFile = ca
	}
	cfg := Config{REST: rc}
	if ns, err := os.ReadFile(filepath.Join(dir, "namespace")); err == nil {
		cfg.Namespace = strings.TrimSpace(string(ns))
	}
	return cfg, nil
}

// KubeconfigConfig reads a kubeconfig with client-go's clientcmd, as kubectl
// does: path "" means the files $KUBECONFIG lists, else ~/.kube/config;
// context "" means the current context. Exec credential plugins, tokens,
// token files and client certificates all work.
func KubeconfigConfig(path, context string) (Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	name := "kubeconfig"
	if path != "" {
		name += " " + path
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, explain(cc, rules, context, err))
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return Config{}, fmt.Errorf("%s: namespace: %w", name, err)
	}
	return Config{REST: rc, Namespace: ns}, nil
}

// explain replaces clientcmd's "no configuration has been provided, try
// setting KUBERNETES_MASTER" with what is missing: the cluster that the
// context names, or any context at all in the files read.
func explain(cc clientcmd.ClientConfig, rules *clientcmd.ClientConfigLoadingRules, context string, err error) error {
	if !clientcmd.IsEmptyConfig(err) {
		return err
	}
	raw, rawErr := cc.RawConfig()
	if rawErr != nil {
		return err
	}
	if context == "" {
		context = raw.CurrentContext
	}
	if c, ok := raw.Contexts[context]; ok && c.Cluster != "" && raw.Clusters[c.Cluster] == nil {
		return fmt.Errorf("context %q: cluster %q does not exist", context, c.Cluster)
	}
	return fmt.Errorf("no current context names a cluster in %s",
		strings.Join(rules.GetLoadingPrecedence(), ", "))
}

// scheme knows the few API types the runtime sends and reads: a Scale, a
// Deployment, a Pod list and metav1's Status and options. client-go's
// typed clientset would register every API group of Kubernetes, which adds
// about 15 MB to the binary for a few requests' worth of types.
var (
	scheme         = k8sruntime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = k8sruntime.NewParameterCodec(scheme)
)

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(autoscalingv1.AddToScheme(scheme))
	utilruntime.Must(appsv1.AddToScheme(scheme))
}

// Runtime sizes one tier's Deployment and rolls it out.
type Runtime struct {
	cfg Config
	// apps reaches /apis/apps/v1, core /api/v1.
	apps, core *rest.RESTClient
	http       *http.Client
	log        *slog.Logger
	// poll is how often Replace reads the rollout's status.
	poll time.Duration

	// change is held by Scale and Replace: one at a time.
	change runtime.ChangeLock
	mu     sync.Mutex
	spec   runtime.Spec
}

var _ runtime.Replacer = (*Runtime)(nil)

// New checks cfg and makes the API clients.
func New(cfg Config) (*Runtime, error) {
	var missing []string
	if cfg.Deployment == "" {
		missing = append(missing, "deployment")
	}
	if cfg.Namespace == "" {
		missing = append(missing, "namespace")
	}
	if cfg.REST == nil || cfg.REST.Host == "" {
		missing = append(missing, "server")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("kubernetes runtime: missing %v", missing)
	}
	if cfg.Port == 0 {
		cfg.Port = 8090
	}
	if cfg.RolloutTimeout == 0 {
		cfg.RolloutTimeout = defaultRolloutTimeout
	}
	rc := rest.CopyConfig(cfg.REST)
	if rc.Timeout == 0 {
		rc.Timeout = requestTimeout
	}
	if rc.UserAgent == "" {
		rc.UserAgent = "ddnn"
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime: %w", err)
	}
	apps, err := restClient(rc, hc, "/apis", schema.GroupVersion{Group: "apps", Version: "v1"})
	if err != nil {
		return nil, err
	}
	core, err := restClient(rc, hc, "/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{
		cfg:  cfg,
		apps: apps,
		core: core,
		http: hc,
		log:  log.With("runtime", "kubernetes", "deployment", cfg.Namespace+"/"+cfg.Deployment),
		poll: time.Second,
		spec: cfg.Spec,
	}, nil
}

// restClient reaches one API group version over hc.
func restClient(rc *rest.Config, hc *http.Client, apiPath string, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(rc)
	c.APIPath, c.GroupVersion = apiPath, &gv
	c.NegotiatedSerializer = codecs.WithoutConversion()
	client, err := rest.RESTClientForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime: %s client: %w", gv, err)
	}
	return client, nil
}

// name is the Deployment as errors name it.
func (r *Runtime) name() string { return r.cfg.Namespace + "/" + r.cfg.Deployment }

// scale is a request on the Deployment's scale subresource.
func (r *Runtime) scale(req *rest.Request) *rest.Request {
	return req.Namespace(r.cfg.Namespace).Resource("deployments").Name(r.cfg.Deployment).SubResource("scale")
}

func (r *Runtime) getScale(ctx context.Context) (*autoscalingv1.Scale, error) {
	s := &autoscalingv1.Scale{}
	if err := r.scale(r.apps.Get()).Do(ctx).Into(s); err != nil {
		return nil, fmt.Errorf("kubernetes: deployment %s: get scale: %w", r.name(), err)
	}
	return s, nil
}

// setReplicas reads the scale subresource, sets spec.replicas to
// want(current) and writes it back; when another writer changed the
// Deployment in between (409 Conflict) it reads again and retries. No write
// when nothing changes.
func (r *Runtime) setReplicas(ctx context.Context, want func(current int32) int32) error {
	var n int32
	written := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := r.getScale(ctx)
		if err != nil {
			return err
		}
		n = want(s.Spec.Replicas)
		if s.Spec.Replicas == n {
			return nil
		}
		s.Spec.Replicas = n
		if err := r.scale(r.apps.Put()).Body(s).Do(ctx).Error(); err != nil {
			return fmt.Errorf("kubernetes: deployment %s: scale to %d: %w", r.name(), n, err)
		}
		written = true
		return nil
	})
	if err != nil {
		return err
	}
	if written {
		r.log.Info("deployment scaled", "replicas", n)
	}
	return nil
}

// Scale sets spec.replicas to n through the scale subresource; no write
// when it already is n. During a Replace it waits for it (or for ctx).
func (r *Runtime) Scale(ctx context.Context, n int) error {
	if n < 0 || n > int(^uint32(0)>>1) {
		return fmt.Errorf("kubernetes: deployment %s: replicas %d out of range", r.name(), n)
	}
	if err := r.change.Lock(ctx, r.tier()); err != nil {
		return fmt.Errorf("kubernetes: deployment %s: %w", r.name(), err)
	}
	defer r.change.Unlock()
	return r.setReplicas(ctx, func(int32) int32 { return int32(n) })
}

// List returns the Deployment's pods that are not being deleted, oldest
// first.
func (r *Runtime) List(ctx context.Context) ([]runtime.Replica, error) {
	s, err := r.getScale(ctx)
	if err != nil {
		return nil, err
	}
	if s.Status.Selector == "" {
		return nil, fmt.Errorf("kubernetes: deployment %s reports no selector", r.name())
	}
	pods := &corev1.PodList{}
	err = r.core.Get().Namespace(r.cfg.Namespace).Resource("pods").
		VersionedParams(&metav1.ListOptions{LabelSelector: s.Status.Selector}, parameterCodec).
		Do(ctx).Into(pods)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: deployment %s: list pods: %w", r.name(), err)
	}
	var out []runtime.Replica
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		out = append(out, r.replica(&p))
	}
	slices.SortStableFunc(out, func(a, b runtime.Replica) int { return a.Started.Compare(b.Started) })
	return out, nil
}

// replica is pod p as a replica: ready once its Ready condition is true
// and it has an address.
func (r *Runtime) replica(p *corev1.Pod) runtime.Replica {
	rep := runtime.Replica{ID: p.Name}
	if p.Status.PodIP != "" {
		rep.URL = "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(r.cfg.Port))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			rep.Ready = rep.URL != ""
		}
	}
	if p.Status.StartTime != nil {
		rep.Started = p.Status.StartTime.Time
	}
	return rep
}

// Close releases idle connections; the Deployment and its pods stay.
func (r *Runtime) Close(context.Context) error {
	r.http.CloseIdleConnections()
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
