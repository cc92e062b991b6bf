package kubernetes

// The manifests test reads deploy/k8s as an operator would apply it and
// holds it to what the runtime and the security model need. The checks
// return problems instead of failing at once, so that
// TestManifestsCatchRemovals can break the manifests on purpose and prove
// that each check notices.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

const (
	manifestDir     = "../../../deploy/k8s"
	kubernetesDoc   = "../../../docs/kubernetes.md"
	secretName      = "ddnn-credentials"
	secretsDir      = "/etc/ddnn/secrets"
	secretTemplate  = "secret.template.yaml"
	apiCallerSA     = "ddnn-scaler" // the one service account that calls the API
	pipelineLabel   = "ddnn.pipeline"
	componentLabel  = "app.kubernetes.io/component"
	monitoringLabel = "ddnn.monitoring"
)

// manifest is one YAML document of deploy/k8s, the file it came from and
// that file's text (comments included: recipes live in comments).
type manifest struct {
	file string
	doc  map[string]any
	text string
}

func (m manifest) kind() string { s, _ := m.doc["kind"].(string); return s }
func (m manifest) name() string { s, _ := at(m.doc, "metadata", "name").(string); return s }

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) < 8 {
		t.Fatalf("manifests: %v %v", files, err)
	}
	var ms []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc != nil {
				ms = append(ms, manifest{filepath.Base(f), doc, string(b)})
			}
		}
	}
	return ms
}

// at walks maps by key and lists by index; nil when the path is absent.
func at(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func list(v any) []any         { l, _ := v.([]any); return l }
func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func labels(v any) map[string]string {
	out := map[string]string{}
	for k, x := range obj(v) {
		out[k] = fmt.Sprint(x)
	}
	return out
}

type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// TestManifests: every document parses; every Deployment runs the ddnn
// image with probes and meets Pod Security "restricted", keeps credentials
// in the read-only Secret volume and nowhere else, and takes a service
// account token only if it calls the API; the Role grants only the calls
// the runtime makes; the namespace enforces "restricted"; the
// NetworkPolicies let devices reach only the funnel's device port and
// only the pipeline's own pods reach delivery, inference and admin ports;
// the pipeline in the ConfigMap passes ddnn's own strict validation.
//
// The kubernetes runtime creates no pods of its own: it scales the
// inference Deployments (the tiers' replicas.kubernetes.deployment), so
// their pod templates here are the replica pods, and the test checks that
// every Deployment the pipeline names is one of them.
func TestManifests(t *testing.T) {
	for _, p := range checkManifests(loadManifests(t)) {
		t.Error(p)
	}
	// The operator follows the docs' recipe, not the template's comment:
	// it too makes the Secret from files only.
	b, err := os.ReadFile(kubernetesDoc)
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	checkSecretRecipe(&p, "docs/kubernetes.md", string(b), credentialKeys)
	for _, p := range p {
		t.Error(p)
	}
}

func checkManifests(ms []manifest) problems {
	var p problems
	kinds := map[string]int{}
	secretKeys := map[string]bool{}
	deployments := map[string]bool{}
	var pl *pipeline.Pipeline
	for _, m := range ms {
		kinds[m.kind()]++
		if m.kind() == "ConfigMap" {
			var err error
			if pl, err = pipeline.Parse([]byte(fmt.Sprint(at(m.doc, "data", "pipeline.yaml")))); err != nil {
				p.add("%s: pipeline.yaml: %v", m.file, err)
			}
		}
		if m.kind() == "Deployment" {
			deployments[m.name()] = true
		}
		if m.kind() == "Secret" {
			for k := range obj(m.doc["stringData"]) {
				secretKeys[k] = true
			}
		}
	}
	want := map[string]int{"Namespace": 1, "ConfigMap": 1, "Deployment": 8, "Service": 6, "ServiceAccount": 1, "Role": 1,
		"RoleBinding": 1, "NetworkPolicy": 8, "Secret": 1, "Kustomization": 1,
		"ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1}
	if !reflect.DeepEqual(kinds, want) {
		p.add("kinds %v, want %v", kinds, want)
	}
	var tierDeployments []string
	for _, m := range ms {
		switch m.kind() {
		case "Deployment":
			checkDeployment(&p, m, secretKeys)
		case "Role":
			checkRole(&p, m)
		case "Namespace":
			checkNamespace(&p, m)
		case "Secret":
			checkSecretTemplate(&p, m)
		case "Kustomization":
			checkKustomization(&p, m, ms)
		}
	}
	checkImages(&p, ms)
	checkRollouts(&p, ms)
	if pl == nil {
		p.add("no pipeline in a ConfigMap")
		return p
	}
	checkSecureAsShipped(&p, ms, pl)
	for _, m := range ms {
		if m.kind() == "Deployment" {
			if l := labels(at(m.doc, "spec", "template", "metadata", "labels")); l[pipelineLabel] != pl.Name || l["app.kubernetes.io/name"] != "ddnn" {
				p.add("%s %s: pod labels %v, want app.kubernetes.io/name ddnn and %s %s (the NetworkPolicies select the pipeline's pods by them)", m.file, m.name(), l, pipelineLabel, pl.Name)
			}
		}
	}
	for _, tier := range pl.Tiers {
		k := tier.Replicas.Kubernetes
		if tier.Replicas.Runtime != pipeline.RuntimeKubernetes || k.Namespace != "ddnn" || k.Deployment != "ddnn-inference-"+tier.Name {
			p.add("tier %s replicas %+v", tier.Name, tier.Replicas)
		}
		if !deployments[k.Deployment] {
			p.add("tier %s: the runtime scales Deployment %q, which deploy/k8s does not define", tier.Name, k.Deployment)
		}
		tierDeployments = append(tierDeployments, k.Deployment)
	}
	checkRoleNames(&p, ms, tierDeployments)
	checkNetworkPolicies(&p, ms, pl.Name)
	return p
}

func checkDeployment(p *problems, m manifest, secretKeys map[string]bool) {
	name := m.name()
	where := m.file + " " + name
	spec := obj(at(m.doc, "spec", "template", "spec"))
	component := labels(at(m.doc, "spec", "template", "metadata", "labels"))[componentLabel]
	for _, c := range list(spec["containers"]) {
		c := obj(c)
		if c["readinessProbe"] == nil || c["livenessProbe"] == nil {
			p.add("%s: probes missing", where)
		}
		args := list(c["args"])
		if len(args) < 3 || args[1] != "-f" || args[2] != "/etc/ddnn/pipeline.yaml" {
			p.add("%s: args %v", where, args)
		} else if !strings.HasPrefix(strings.TrimPrefix(name, "ddnn-"), fmt.Sprint(args[0])) {
			p.add("%s runs %v", where, args[0])
		}
	}
	checkPodSpec(p, where, component, spec, secretKeys)
	if component == "funnel" {
		ports := map[string]any{}
		for _, c := range list(spec["containers"]) {
			for _, port := range list(obj(c)["ports"]) {
				ports[fmt.Sprint(obj(port)["name"])] = obj(port)["containerPort"]
			}
		}
		if want := map[string]any{"device": 8080, "delivery": 8081}; !reflect.DeepEqual(ports, want) {
			p.add("%s: funnel ports %v, want %v", where, ports, want)
		}
	}
}

// secretish matches words that mark a credential on a command line or in an
// environment variable's name.
var secretish = regexp.MustCompile(`(?i)token|passw|secret|credential|private.?key`)

// pssVolumeTypes are the volume sources Pod Security "restricted" allows.
var pssVolumeTypes = []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}

// checkPodSpec holds one pod spec to Pod Security "restricted" (as pinned
// by the namespace) and to how ddnn handles credentials.
func checkPodSpec(p *problems, where, component string, spec map[string]any, secretKeys map[string]bool) {
	// Service account: only the pod that calls the API gets a token.
	automount, set := spec["automountServiceAccountToken"].(bool)
	sa, _ := spec["serviceAccountName"].(string)
	if component == "scaler" {
		if !set || !automount || sa != apiCallerSA {
			p.add("%s: the scaler calls the API: want serviceAccountName %s with automountServiceAccountToken true, have %q %v", where, apiCallerSA, sa, spec["automountServiceAccountToken"])
		}
	} else if !set || automount || sa == apiCallerSA {
		p.add("%s: does not call the API: want automountServiceAccountToken false and not the %s account, have %v %q", where, apiCallerSA, spec["automountServiceAccountToken"], sa)
	}
	for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if spec[k] == true {
			p.add("%s: %s", where, k)
		}
	}

	// Pod security context.
	sc := obj(spec["securityContext"])
	if sc["runAsNonRoot"] != true {
		p.add("%s: securityContext.runAsNonRoot is %v, want true", where, sc["runAsNonRoot"])
	}
	uid, _ := sc["runAsUser"].(int)
	gid, _ := sc["runAsGroup"].(int)
	if uid <= 0 || gid <= 0 {
		p.add("%s: securityContext runAsUser %v, runAsGroup %v: want both set and not 0", where, sc["runAsUser"], sc["runAsGroup"])
	}
	if fs, _ := sc["fsGroup"].(int); fs != gid {
		p.add("%s: securityContext.fsGroup %v, want runAsGroup %v so the Secret volume is readable", where, sc["fsGroup"], gid)
	}
	if at(sc, "seccompProfile", "type") != "RuntimeDefault" {
		p.add("%s: securityContext.seccompProfile %v, want type RuntimeDefault", where, sc["seccompProfile"])
	}

	// Volumes: allowed types; the credentials Secret is not world-readable
	// and maps keys the template defines.
	secretVolumes := map[string]bool{}
	for _, v := range list(spec["volumes"]) {
		v := obj(v)
		vname := fmt.Sprint(v["name"])
		for k := range v {
			if k != "name" && !slices.Contains(pssVolumeTypes, k) {
				p.add("%s: volume %s is %s, not allowed by Pod Security restricted", where, vname, k)
			}
		}
		s := obj(v["secret"])
		if s == nil {
			continue
		}
		secretVolumes[vname] = true
		if s["secretName"] != secretName {
			p.add("%s: volume %s mounts Secret %v, want %s", where, vname, s["secretName"], secretName)
		}
		mode, ok := s["defaultMode"].(int)
		if !ok || mode&0o007 != 0 || mode&0o440 != 0o440 || mode&0o222 != 0 {
			p.add("%s: volume %s defaultMode %v, want owner and group read only (0440)", where, vname, s["defaultMode"])
		}
		if len(list(s["items"])) == 0 {
			p.add("%s: volume %s: list the keys this pod needs in items", where, vname)
		}
		for _, it := range list(s["items"]) {
			key := fmt.Sprint(obj(it)["key"])
			if !secretKeys[key] {
				p.add("%s: volume %s: key %q is not in %s", where, vname, key, secretTemplate)
			}
			if obj(it)["mode"] != nil {
				p.add("%s: volume %s: key %q overrides the mode", where, vname, key)
			}
		}
	}
	if len(secretVolumes) != 1 {
		p.add("%s: %d Secret volumes, want one of %s", where, len(secretVolumes), secretName)
	}

	containers := append(slices.Clone(list(spec["containers"])), list(spec["initContainers"])...)
	for _, c := range containers {
		c := obj(c)
		cw := fmt.Sprintf("%s container %v", where, c["name"])
		csc := obj(c["securityContext"])
		if csc["allowPrivilegeEscalation"] != false {
			p.add("%s: allowPrivilegeEscalation is %v, want false", cw, csc["allowPrivilegeEscalation"])
		}
		if csc["readOnlyRootFilesystem"] != true {
			p.add("%s: readOnlyRootFilesystem is %v, want true", cw, csc["readOnlyRootFilesystem"])
		}
		if drop := list(at(csc, "capabilities", "drop")); !slices.Contains(drop, any("ALL")) {
			p.add("%s: capabilities.drop %v, want [ALL]", cw, drop)
		}
		if add := list(at(csc, "capabilities", "add")); len(add) > 0 {
			p.add("%s: capabilities.add %v", cw, add)
		}
		if csc["privileged"] == true {
			p.add("%s: privileged", cw)
		}
		if v, ok := csc["runAsNonRoot"]; ok && v != true {
			p.add("%s: runAsNonRoot %v", cw, v)
		}
		if v, ok := csc["runAsUser"]; ok && v == 0 {
			p.add("%s: runAsUser 0", cw)
		}
		if v := at(csc, "seccompProfile", "type"); v != nil && v != "RuntimeDefault" {
			p.add("%s: seccompProfile %v", cw, v)
		}
		for _, port := range list(c["ports"]) {
			if obj(port)["hostPort"] != nil {
				p.add("%s: hostPort", cw)
			}
		}

		// No credential in the environment or on the command line.
		for _, e := range list(c["env"]) {
			e := obj(e)
			if at(e, "valueFrom", "secretKeyRef") != nil {
				p.add("%s: env %v comes from a Secret; mount it as a file under %s", cw, e["name"], secretsDir)
			}
			if e["value"] != nil && secretish.MatchString(fmt.Sprint(e["name"])) {
				p.add("%s: env %v holds a credential literal", cw, e["name"])
			}
		}
		for _, e := range list(c["envFrom"]) {
			if obj(e)["secretRef"] != nil {
				p.add("%s: envFrom a Secret; mount it as a file under %s", cw, secretsDir)
			}
		}
		for _, a := range append(slices.Clone(list(c["command"])), list(c["args"])...) {
			a := fmt.Sprint(a)
			if !secretish.MatchString(a) || strings.HasPrefix(a, secretsDir+"/") {
				continue
			}
			flag, val, hasVal := strings.Cut(a, "=")
			if strings.HasPrefix(flag, "-") && strings.HasSuffix(flag, "-file") && (!hasVal || strings.HasPrefix(val, secretsDir+"/")) {
				continue
			}
			p.add("%s: argument %q looks like a credential; pass a file under %s", cw, a, secretsDir)
		}

		// Mounts: all read-only; the Secret at secretsDir.
		mountedSecret := false
		for _, vm := range list(c["volumeMounts"]) {
			vm := obj(vm)
			if vm["readOnly"] != true {
				p.add("%s: volumeMount %v is not readOnly", cw, vm["name"])
			}
			if secretVolumes[fmt.Sprint(vm["name"])] {
				mountedSecret = true
				if vm["mountPath"] != secretsDir || vm["subPath"] != nil {
					p.add("%s: Secret volume mounted at %v %v, want %s without subPath (updates must reach the files)", cw, vm["mountPath"], vm["subPath"], secretsDir)
				}
			}
		}
		if !mountedSecret {
			p.add("%s: does not mount %s at %s", cw, secretName, secretsDir)
		}
	}
}

func checkRole(p *problems, m manifest) {
	type rule struct{ groups, resources, names, verbs string }
	var got []rule
	join := func(v any) string {
		var s []string
		for _, x := range list(v) {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, ",")
	}
	for _, r := range list(m.doc["rules"]) {
		r := obj(r)
		got = append(got, rule{join(r["apiGroups"]), join(r["resources"]), join(r["resourceNames"]), join(r["verbs"])})
	}
	// Exactly the requests fakeAPI in kubernetes_test.go serves; any other
	// request fails those tests, so the runtime makes no other call.
	want := []rule{
		{"apps", "deployments/scale", "ddnn-inference-edge,ddnn-inference-fog,ddnn-inference-cloud", "get,update"},
		{"apps", "deployments", "ddnn-inference-edge,ddnn-inference-fog,ddnn-inference-cloud", "get,patch"},
		{"", "pods", "", "list"},
	}
	if !reflect.DeepEqual(got, want) {
		p.add("Role %s rules %v, want only %v", m.name(), got, want)
	}
	// Whatever the rules' shape: no write to a pod or a Deployment other
	// than the scale subresource and a patch of named Deployments, which
	// the admission policy bounds to the template's annotations
	// (checkRollouts). The NetworkPolicies trust pod labels; an account
	// that may patch, update or create pods (or their Deployments'
	// templates) may give a pod any label.
	for _, r := range list(m.doc["rules"]) {
		r := obj(r)
		for _, res := range list(r["resources"]) {
			for _, verb := range list(r["verbs"]) {
				res, verb := fmt.Sprint(res), fmt.Sprint(verb)
				read := verb == "get" || verb == "list" || verb == "watch"
				if read || (res == "deployments/scale" && verb == "update") || (res == "deployments" && verb == "patch" && len(list(r["resourceNames"])) > 0) {
					continue
				}
				p.add("Role %s grants %s on %s: it may change pods or their labels, which the NetworkPolicies trust", m.name(), verb, res)
			}
		}
	}
}

// checkRoleNames: the Role names every Deployment the runtime scales.
func checkRoleNames(p *problems, ms []manifest, tierDeployments []string) {
	for _, m := range ms {
		if m.kind() != "Role" {
			continue
		}
		tiers := slices.Sorted(slices.Values(tierDeployments))
		for _, r := range list(m.doc["rules"]) {
			var names []string
			for _, n := range list(obj(r)["resourceNames"]) {
				names = append(names, fmt.Sprint(n))
			}
			sort.Strings(names)
			if names != nil && !slices.Equal(names, tiers) {
				p.add("Role %s resourceNames %v of %v, want the tiers' Deployments %v", m.name(), names, obj(r)["resources"], tiers)
			}
		}
	}
}

func checkNamespace(p *problems, m manifest) {
	l := labels(at(m.doc, "metadata", "labels"))
	for _, mode := range []string{"enforce", "warn", "audit"} {
		if k := "pod-security.kubernetes.io/" + mode; l[k] != "restricted" {
			p.add("namespace %s: label %s is %q, want restricted", m.name(), k, l[k])
		}
	}
}

// credentialKeys are the keys of the ddnn-credentials Secret.
var credentialKeys = []string{"device-credentials", "funnel-tls.crt", "funnel-tls.key", "kafka-ca.pem", "kafka-password", "service-token"}

// placeholder is what the Secret template holds instead of a value.
var placeholder = regexp.MustCompile(`^<replace: [^>]+>$`)

func checkSecretTemplate(p *problems, m manifest) {
	if m.file != secretTemplate || m.name() != secretName || at(m.doc, "metadata", "namespace") != "ddnn" {
		p.add("%s: Secret %s/%v, want %s in ddnn from %s only", m.file, at(m.doc, "metadata", "namespace"), m.name(), secretName, secretTemplate)
	}
	if m.doc["data"] != nil {
		p.add("%s: data holds values; the template holds placeholders in stringData only", m.file)
	}
	if got := slices.Sorted(maps.Keys(obj(m.doc["stringData"]))); !slices.Equal(got, credentialKeys) {
		p.add("%s: keys %v, want %v", m.file, got, credentialKeys)
	}
	checkSecretRecipe(p, m.file, m.text, credentialKeys)
	for k, v := range obj(m.doc["stringData"]) {
		if !placeholder.MatchString(fmt.Sprint(v)) {
			p.add("%s: %s is not a <replace: …> placeholder; real credentials are never committed", m.file, k)
		}
	}
}

// checkKustomization: every manifest is applied except the Secret
// template, which would overwrite the operator's Secret.
func checkKustomization(p *problems, m manifest, ms []manifest) {
	var got []string
	for _, r := range list(m.doc["resources"]) {
		got = append(got, fmt.Sprint(r))
	}
	sort.Strings(got)
	files := map[string]bool{}
	for _, x := range ms {
		if x.file != m.file && x.file != secretTemplate {
			files[x.file] = true
		}
	}
	want := slices.Sorted(maps.Keys(files))
	if !slices.Equal(got, want) {
		p.add("%s: resources %v, want %v (every manifest but %s)", m.file, got, want, secretTemplate)
	}
}
