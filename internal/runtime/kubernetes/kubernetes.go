// Package kubernetes runs a tier's inference replicas as a Kubernetes
// Deployment that an operator applied (deploy/k8s). The runtime only sizes
// it, through the deployments/scale subresource, and reads its pods for
// readiness; it never creates or deletes the Deployment, so replicas outlive
// the scaler by design.
//
// It talks to the API server over HTTPS with the standard library: in-cluster
// (service account token and CA) or from a kubeconfig (token or client
// certificate). Removing a particular replica marks its pod with a negative
// controller.kubernetes.io/pod-deletion-cost, then scales down by one, so
// the ReplicaSet removes that pod and Kubernetes' graceful termination
// (SIGTERM, terminationGracePeriodSeconds) lets it finish in-flight requests.
package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/runtime"
)

// Config says where the tier's Deployment lives and how to reach the API.
type Config struct {
	Namespace  string
	Deployment string
	// Port is the replicas' HTTP port (pod IP + port make a replica URL).
	Port int
	// Server is the API server's base URL; Token or ClientCert/ClientKey
	// authenticate; CA verifies the server (nil: system roots).
	Server             string
	Token              string
	CA                 *x509.CertPool
	ClientCert         *tls.Certificate
	InsecureSkipVerify bool
	Logger             *slog.Logger
}

// ServiceAccountDir is where in-cluster credentials are mounted.
var ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InClusterConfig reads the pod's service account and the API address from
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
func InClusterConfig() (Config, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return Config{}, errors.New("kubernetes: not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset")
	}
	token, err := os.ReadFile(filepath.Join(ServiceAccountDir, "token"))
	if err != nil {
		return Config{}, fmt.Errorf("kubernetes: service account token: %w", err)
	}
	cfg := Config{Server: "https://" + net.JoinHostPort(host, port), Token: string(bytes.TrimSpace(token))}
	if ca, err := os.ReadFile(filepath.Join(ServiceAccountDir, "ca.crt")); err == nil {
		cfg.CA = x509.NewCertPool()
		if !cfg.CA.AppendCertsFromPEM(ca) {
			return Config{}, errors.New("kubernetes: service account ca.crt holds no certificate")
		}
	}
	if ns, err := os.ReadFile(filepath.Join(ServiceAccountDir, "namespace")); err == nil {
		cfg.Namespace = string(bytes.TrimSpace(ns))
	}
	return cfg, nil
}

type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Contexts       []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster   string `yaml:"cluster"`
			User      string `yaml:"user"`
			Namespace string `yaml:"namespace"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	Clusters []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Token                 string `yaml:"token"`
			ClientCertificate     string `yaml:"client-certificate"`
			ClientCertificateData string `yaml:"client-certificate-data"`
			ClientKey             string `yaml:"client-key"`
			ClientKeyData         string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// KubeconfigConfig reads a kubeconfig file; context "" means its current
// context. Errors name the missing field.
func KubeconfigConfig(path, context string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return Config{}, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if context == "" {
		context = kc.CurrentContext
	}
	if context == "" {
		return Config{}, fmt.Errorf("kubeconfig %s: no current-context and no context given", path)
	}
	var cfg Config
	found := false
	var clusterName, userName string
	for _, c := range kc.Contexts {
		if c.Name == context {
			found, clusterName, userName, cfg.Namespace = true, c.Context.Cluster, c.Context.User, c.Context.Namespace
		}
	}
	if !found {
		return Config{}, fmt.Errorf("kubeconfig %s: context %q not found", path, context)
	}
	dir := filepath.Dir(path)
	file := func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return os.ReadFile(p)
	}
	pick := func(data, p string) ([]byte, error) {
		if data != "" {
			return base64.StdEncoding.DecodeString(data)
		}
		if p != "" {
			return file(p)
		}
		return nil, nil
	}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		if c.Cluster.Server == "" {
			return Config{}, fmt.Errorf("kubeconfig %s: cluster %q: server is missing", path, clusterName)
		}
		cfg.Server = c.Cluster.Server
		cfg.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
		ca, err := pick(c.Cluster.CertificateAuthorityData, c.Cluster.CertificateAuthority)
		if err != nil {
			return Config{}, fmt.Errorf("kubeconfig %s: cluster %q: certificate-authority: %w", path, clusterName, err)
		}
		if ca != nil {
			cfg.CA = x509.NewCertPool()
			if !cfg.CA.AppendCertsFromPEM(ca) {
				return Config{}, fmt.Errorf("kubeconfig %s: cluster %q: certificate-authority holds no certificate", path, clusterName)
			}
		}
	}
	if !found {
		return Config{}, fmt.Errorf("kubeconfig %s: cluster %q not found", path, clusterName)
	}
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		cfg.Token = u.User.Token
		cert, err := pick(u.User.ClientCertificateData, u.User.ClientCertificate)
		if err != nil {
			return Config{}, fmt.Errorf("kubeconfig %s: user %q: client-certificate: %w", path, userName, err)
		}
		key, err := pick(u.User.ClientKeyData, u.User.ClientKey)
		if err != nil {
			return Config{}, fmt.Errorf("kubeconfig %s: user %q: client-key: %w", path, userName, err)
		}
		if cert != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return Config{}, fmt.Errorf("kubeconfig %s: user %q: client certificate: %w", path, userName, err)
			}
			cfg.ClientCert = &pair
		}
	}
	return cfg, nil
}

// Runtime sizes one tier's Deployment.
type Runtime struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger
}

var _ runtime.Runtime = (*Runtime)(nil)

// New checks cfg and makes the HTTP client.
func New(cfg Config) (*Runtime, error) {
	var missing []string
	for name, v := range map[string]string{"server": cfg.Server, "namespace": cfg.Namespace, "deployment": cfg.Deployment} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("kubernetes runtime: missing %v", missing)
	}
	if cfg.Port == 0 {
		cfg.Port = 8090
	}
	tc := &tls.Config{RootCAs: cfg.CA, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.ClientCert != nil {
		tc.Certificates = []tls.Certificate{*cfg.ClientCert}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{
		cfg:  cfg,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}},
		log:  log.With("runtime", "kubernetes", "deployment", cfg.Namespace+"/"+cfg.Deployment),
	}, nil
}

// scale is the autoscaling/v1 Scale object.
type scale struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Metadata   struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Replicas int `json:"replicas"`
	} `json:"spec"`
	Status struct {
		Replicas int    `json:"replicas"`
		Selector string `json:"selector"`
	} `json:"status"`
}

func (r *Runtime) scalePath() string {
	return fmt.Sprintf("/apis/apps/v1/namespaces/%s/deployments/%s/scale", r.cfg.Namespace, r.cfg.Deployment)
}

// do sends a request and decodes a 2xx JSON answer into out; other answers
// become errors carrying the API's Status message.
func (r *Runtime) do(ctx context.Context, method, path, contentType string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.cfg.Server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("kubernetes %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
		}
		msg := string(b)
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return fmt.Errorf("kubernetes %s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (r *Runtime) getScale(ctx context.Context) (scale, error) {
	var s scale
	err := r.do(ctx, http.MethodGet, r.scalePath(), "", nil, &s)
	return s, err
}

// Scale sets spec.replicas to n through the scale subresource; no write
// when it already is n.
func (r *Runtime) Scale(ctx context.Context, n int) error {
	s, err := r.getScale(ctx)
	if err != nil {
		return err
	}
	if s.Spec.Replicas == n {
		return nil
	}
	s.Spec.Replicas = n
	s.APIVersion, s.Kind = "autoscaling/v1", "Scale"
	if err := r.do(ctx, http.MethodPut, r.scalePath(), "application/json", s, nil); err != nil {
		return err
	}
	r.log.Info("deployment scaled", "replicas", n)
	return nil
}

type podList struct {
	Items []pod `json:"items"`
}

type pod struct {
	Metadata struct {
		Name              string  `json:"name"`
		DeletionTimestamp *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		PodIP      string `json:"podIP"`
		StartTime  string `json:"startTime"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

// List returns the Deployment's pods that are not being deleted.
func (r *Runtime) List(ctx context.Context) ([]runtime.Replica, error) {
	s, err := r.getScale(ctx)
	if err != nil {
		return nil, err
	}
	if s.Status.Selector == "" {
		return nil, fmt.Errorf("kubernetes: deployment %s/%s reports no selector", r.cfg.Namespace, r.cfg.Deployment)
	}
	var pl podList
	path := fmt.Sprintf("/api/v1/namespaces/%s/pods?labelSelector=%s", r.cfg.Namespace, url.QueryEscape(s.Status.Selector))
	if err := r.do(ctx, http.MethodGet, path, "", nil, &pl); err != nil {
		return nil, err
	}
	var out []runtime.Replica
	for _, p := range pl.Items {
		if p.Metadata.DeletionTimestamp != nil {
			continue
		}
		rep := runtime.Replica{ID: p.Metadata.Name}
		if p.Status.PodIP != "" {
			rep.URL = "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(r.cfg.Port))
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				rep.Ready = rep.URL != ""
			}
		}
		rep.Started, _ = time.Parse(time.RFC3339, p.Status.StartTime)
		out = append(out, rep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// Stop makes pod id the first the ReplicaSet removes, then scales down by
// one. An unknown pod is not an error.
func (r *Runtime) Stop(ctx context.Context, id string) error {
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		"controller.kubernetes.io/pod-deletion-cost": "-1000",
	}}}
	path := fmt.Sprintf("/api/v1/namespaces/%s/pods/%s", r.cfg.Namespace, id)
	if err := r.do(ctx, http.MethodPatch, path, "application/merge-patch+json", patch, nil); err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	s, err := r.getScale(ctx)
	if err != nil {
		return err
	}
	return r.Scale(ctx, max(s.Spec.Replicas-1, 0))
}

func isNotFound(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte(" 404 "))
}

// Close releases idle connections; the Deployment and its pods stay.
func (r *Runtime) Close(context.Context) error {
	r.http.CloseIdleConnections()
	return nil
}
