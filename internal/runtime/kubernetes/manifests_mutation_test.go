package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// mutation breaks the manifests in one way that a check must report.
type mutation struct {
	name   string
	mutate func(ms []manifest) // must change something
	expect string              // a problem must contain this
}

// TestManifestsCatchRemovals breaks the shipped manifests one field at a
// time and requires checkManifests to report each break, naming the
// Deployment where it is one's: a field the test would not miss is a field
// nobody would notice losing.
func TestManifestsCatchRemovals(t *testing.T) {
	var cases []mutation

	podFields := [][]string{
		{"securityContext", "runAsNonRoot"},
		{"securityContext", "runAsUser"},
		{"securityContext", "runAsGroup"},
		{"securityContext", "fsGroup"},
		{"securityContext", "seccompProfile"},
		{"automountServiceAccountToken"},
		{"containers", "0", "securityContext", "allowPrivilegeEscalation"},
		{"containers", "0", "securityContext", "readOnlyRootFilesystem"},
		{"containers", "0", "securityContext", "capabilities"},
		{"containers", "0", "volumeMounts", "0", "readOnly"},
		{"containers", "0", "volumeMounts", "1", "readOnly"},
		{"containers", "0", "volumeMounts", "1"},
		{"volumes", "1", "secret", "defaultMode"},
		{"volumes", "1", "secret", "items"},
	}
	for _, name := range deploymentNames(loadManifests(t)) {
		for _, f := range podFields {
			path := append([]string{"spec", "template", "spec"}, f...)
			cases = append(cases, mutation{"remove " + name + " " + strings.Join(f, "."), func(ms []manifest) {
				remove(t, deployment(t, ms, name), path...)
			}, name})
		}
		cases = append(cases,
			mutation{"remove " + name + " label " + pipelineLabel, func(ms []manifest) {
				remove(t, deployment(t, ms, name), "spec", "template", "metadata", "labels", pipelineLabel)
			}, name},
			mutation{name + " runs as root", func(ms []manifest) {
				set(t, deployment(t, ms, name), 0, "spec", "template", "spec", "securityContext", "runAsUser")
			}, name},
			mutation{name + " seccomp Unconfined", func(ms []manifest) {
				set(t, deployment(t, ms, name), "Unconfined", "spec", "template", "spec", "securityContext", "seccompProfile", "type")
			}, name},
			mutation{name + " Secret world-readable", func(ms []manifest) {
				set(t, deployment(t, ms, name), 0o444, "spec", "template", "spec", "volumes", "1", "secret", "defaultMode")
			}, name},
			mutation{name + " Secret through subPath", func(ms []manifest) {
				set(t, deployment(t, ms, name), "service-token", "spec", "template", "spec", "containers", "0", "volumeMounts", "1", "subPath")
			}, name},
			mutation{name + " adds NET_RAW", func(ms []manifest) {
				set(t, deployment(t, ms, name), []any{"NET_RAW"}, "spec", "template", "spec", "containers", "0", "securityContext", "capabilities", "add")
			}, name},
			mutation{name + " privileged", func(ms []manifest) {
				set(t, deployment(t, ms, name), true, "spec", "template", "spec", "containers", "0", "securityContext", "privileged")
			}, name},
			mutation{name + " hostNetwork", func(ms []manifest) {
				set(t, deployment(t, ms, name), true, "spec", "template", "spec", "hostNetwork")
			}, name},
			mutation{name + " hostPath volume", func(ms []manifest) {
				vols := at(deployment(t, ms, name), "spec", "template", "spec", "volumes").([]any)
				set(t, deployment(t, ms, name), append(vols, map[string]any{"name": "host", "hostPath": map[string]any{"path": "/"}}),
					"spec", "template", "spec", "volumes")
			}, name},
			mutation{name + " password in env", func(ms []manifest) {
				set(t, deployment(t, ms, name), []any{map[string]any{"name": "KAFKA_SASL_PASSWORD", "value": "hunter2"}},
					"spec", "template", "spec", "containers", "0", "env")
			}, name},
			mutation{name + " env from secretKeyRef", func(ms []manifest) {
				set(t, deployment(t, ms, name), []any{map[string]any{"name": "X", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": secretName, "key": "service-token"}}}},
					"spec", "template", "spec", "containers", "0", "env")
			}, name},
			mutation{name + " envFrom the Secret", func(ms []manifest) {
				set(t, deployment(t, ms, name), []any{map[string]any{"secretRef": map[string]any{"name": secretName}}},
					"spec", "template", "spec", "containers", "0", "envFrom")
			}, name},
			mutation{name + " password in args", func(ms []manifest) {
				args := at(deployment(t, ms, name), "spec", "template", "spec", "containers", "0", "args").([]any)
				set(t, deployment(t, ms, name), append(slices.Clone(args), "--sasl-password=hunter2"),
					"spec", "template", "spec", "containers", "0", "args")
			}, name},
			mutation{name + " token file outside the Secret", func(ms []manifest) {
				args := at(deployment(t, ms, name), "spec", "template", "spec", "containers", "0", "args").([]any)
				set(t, deployment(t, ms, name), append(slices.Clone(args), "--token-file=/tmp/token"),
					"spec", "template", "spec", "containers", "0", "args")
			}, name},
		)
	}
	cases = append(cases,
		mutation{"the funnel has no delivery port", func(ms []manifest) {
			remove(t, deployment(t, ms, "ddnn-funnel"), "spec", "template", "spec", "containers", "0", "ports", "1")
		}, "ddnn-funnel"},
		mutation{"a connector uses the scaler's account", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-connector-fog"), apiCallerSA, "spec", "template", "spec", "serviceAccountName")
		}, "ddnn-connector-fog"},
		mutation{"the scaler loses its token", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-scaler"), false, "spec", "template", "spec", "automountServiceAccountToken")
		}, "ddnn-scaler"},
		mutation{"the Role may create pods", func(ms []manifest) {
			set(t, doc(t, ms, "Role", "ddnn-scaler"), []any{"list", "patch", "create"}, "rules", "2", "verbs")
		}, "Role"},
		mutation{"the Role may scale any Deployment", func(ms []manifest) {
			remove(t, doc(t, ms, "Role", "ddnn-scaler"), "rules", "0", "resourceNames")
		}, "Role"},
		mutation{"a real value in the Secret template", func(ms []manifest) {
			set(t, doc(t, ms, "Secret", secretName), "9f86d081884c7d659a2feaa0c55ad015", "stringData", "service-token")
		}, "placeholder"},
		mutation{"the Secret template is applied", func(ms []manifest) {
			k := doc(t, ms, "Kustomization", "")
			set(t, k, append(slices.Clone(k["resources"].([]any)), secretTemplate), "resources")
		}, "kustomization"},
		mutation{"the NetworkPolicies are not applied", func(ms []manifest) {
			k := doc(t, ms, "Kustomization", "")
			set(t, k, slices.DeleteFunc(slices.Clone(k["resources"].([]any)), func(r any) bool { return r == "networkpolicy.yaml" }), "resources")
		}, "kustomization"},
		mutation{"the funnel's delivery port is open to all", func(ms []manifest) {
			remove(t, doc(t, ms, "NetworkPolicy", "ddnn-funnel"), "spec", "ingress", "1", "from")
		}, "a device outside the cluster reaching ddnn-funnel port delivery"},
		mutation{"the pipeline selector takes any namespace", func(ms []manifest) {
			set(t, doc(t, ms, "NetworkPolicy", "ddnn-inference"), map[string]any{}, "spec", "ingress", "0", "from", "0", "namespaceSelector")
		}, "in namespace default reaching ddnn-inference"},
		mutation{"monitoring may not scrape the connectors", func(ms []manifest) {
			remove(t, doc(t, ms, "NetworkPolicy", "ddnn-admin"), "spec", "ingress", "0", "from", "1")
		}, "the monitoring namespace reaching ddnn-connector"},
	)
	for _, np := range []string{"ddnn-default-deny", "ddnn-funnel", "ddnn-inference", "ddnn-admin"} {
		cases = append(cases, mutation{"no NetworkPolicy " + np, func(ms []manifest) {
			m := doc(t, ms, "NetworkPolicy", np)
			m["kind"] = "Removed"
		}, "NetworkPolicy: "})
	}
	for _, np := range []string{"ddnn-default-deny", "ddnn-egress-dns", "ddnn-egress-kafka", "ddnn-egress-connector", "ddnn-egress-scaler"} {
		cases = append(cases, mutation{"no NetworkPolicy " + np + " (egress)", func(ms []manifest) {
			m := doc(t, ms, "NetworkPolicy", np)
			m["kind"] = "Removed"
		}, "NetworkPolicy egress: "})
	}
	cases = append(cases, secureAsShippedMutations(t)...)
	cases = append(cases, rolloutMutations(t)...)
	for _, mode := range []string{"enforce", "warn", "audit"} {
		cases = append(cases, mutation{"namespace without " + mode, func(ms []manifest) {
			remove(t, doc(t, ms, "Namespace", "ddnn"), "metadata", "labels", "pod-security.kubernetes.io/"+mode)
		}, "pod-security.kubernetes.io/" + mode})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms := loadManifests(t)
			c.mutate(ms)
			got := checkManifests(ms)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, c.expect) }) {
				t.Errorf("no problem mentions %q; reported %q", c.expect, got)
			}
		})
	}
}

// secureAsShippedMutations break, one at a time, what makes the manifests
// secure as shipped: Kafka TLS and SCRAM, HTTPS and tokens for devices,
// Secret mounts that match what the pipeline reads, the Secret recipe from
// files, the scaler's narrow Role, egress, and the pinned image.
func secureAsShippedMutations(t *testing.T) []mutation {
	pl := func(old, new string) func(ms []manifest) {
		return func(ms []manifest) { editPipeline(t, ms, old, new) }
	}
	const (
		kafkaTLS  = "tls: {enabled: true, root_cas_file: /etc/ddnn/secrets/kafka-ca.pem}"
		kafkaSASL = "sasl: [{mechanism: SCRAM-SHA-512, username: ddnn-fmnist, password_file: /etc/ddnn/secrets/kafka-password}]"
		funnelTLS = "tls: {cert_file: /etc/ddnn/secrets/funnel-tls.crt, key_file: /etc/ddnn/secrets/funnel-tls.key}"
	)
	text := func(file, old, new string) func(ms []manifest) {
		return func(ms []manifest) {
			for i := range ms {
				if ms[i].file == file {
					if !strings.Contains(ms[i].text, old) {
						t.Fatalf("%s: no %q", file, old)
					}
					ms[i].text = strings.Replace(ms[i].text, old, new, 1)
				}
			}
		}
	}
	items := func(ms []manifest, name string) []any {
		return at(deployment(t, ms, name), "spec", "template", "spec", "volumes", "1", "secret", "items").([]any)
	}
	return []mutation{
		{"Kafka without TLS", pl(kafkaTLS, "tls: {enabled: false}"), "kafka.tls.enabled is not true"},
		{"Kafka TLS without a CA", pl(kafkaTLS, "tls: {enabled: true}"), "kafka.tls.root_cas_file is not set"},
		{"Kafka TLS unverified", pl(kafkaTLS, "tls: {enabled: true, skip_cert_verify: true}"), "skip_cert_verify"},
		{"Kafka without SASL", pl(kafkaSASL, "sasl: []"), "kafka.sasl is empty"},
		{"Kafka SASL PLAIN", pl("mechanism: SCRAM-SHA-512", "mechanism: PLAIN"), "mechanism PLAIN"},
		{"Kafka password from the environment", pl("password_file: /etc/ddnn/secrets/kafka-password", "password_env: KAFKA_PASSWORD"), "no password_file"},
		{"Kafka password outside the Secret", pl("password_file: /etc/ddnn/secrets/kafka-password", "password_file: /tmp/kafka-password"), "is not a file of the Secret"},
		{"devices over plain HTTP", pl(funnelTLS, ""), "funnel.tls.cert_file and key_file are not set"},
		{"devices without tokens", pl("devices: token", "devices: none"), "auth.devices"},
		{"the funnel lacks the Kafka CA", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-funnel"), slices.DeleteFunc(slices.Clone(items(ms, "ddnn-funnel")), func(it any) bool { return obj(it)["key"] == "kafka-ca.pem" }),
				"spec", "template", "spec", "volumes", "1", "secret", "items")
		}, "ddnn-funnel: kafka.tls.root_cas_file names /etc/ddnn/secrets/kafka-ca.pem, which the pod does not mount"},
		{"the scaler lacks the Kafka password", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-scaler"), slices.DeleteFunc(slices.Clone(items(ms, "ddnn-scaler")), func(it any) bool { return obj(it)["key"] == "kafka-password" }),
				"spec", "template", "spec", "volumes", "1", "secret", "items")
		}, "ddnn-scaler: kafka.sasl[0].password_file names"},
		{"a replica mounts the Kafka password unused", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-inference-fog"), append(slices.Clone(items(ms, "ddnn-inference-fog")), map[string]any{"key": "kafka-password", "path": "kafka-password"}),
				"spec", "template", "spec", "volumes", "1", "secret", "items")
		}, "ddnn-inference-fog: mounts ddnn-credentials key kafka-password, which the pipeline does not name"},
		{"the funnel's key under another name", func(ms []manifest) {
			it := slices.Clone(items(ms, "ddnn-funnel"))
			it[len(it)-1] = map[string]any{"key": "funnel-tls.key", "path": "tls.key"}
			set(t, deployment(t, ms, "ddnn-funnel"), it, "spec", "template", "spec", "volumes", "1", "secret", "items")
		}, "funnel.tls.key_file names /etc/ddnn/secrets/funnel-tls.key, which the pod does not mount"},
		{"the funnel's readiness probe over HTTP", func(ms []manifest) {
			remove(t, deployment(t, ms, "ddnn-funnel"), "spec", "template", "spec", "containers", "0", "readinessProbe", "httpGet", "scheme")
		}, "readinessProbe on the device port"},
		{"the template's recipe uses --from-literal", text(secretTemplate, "--from-file=service-token ", `--from-literal=service-token="$(ddnn token)" `), "--from-literal"},
		{"the template's recipe lacks the Kafka CA", text(secretTemplate, "--from-file=kafka-ca.pem ", ""), "makes every key"},
		{"the template's recipe makes no service token file", text(secretTemplate, "ddnn token > service-token", "openssl rand -hex 32 > service-token"), "ddnn token > service-token"},
		{"the Role may patch pods", func(ms []manifest) {
			set(t, doc(t, ms, "Role", "ddnn-scaler"), []any{"list", "patch"}, "rules", "2", "verbs")
		}, "grants patch on pods"},
		{"the Role may update Deployments", func(ms []manifest) {
			r := doc(t, ms, "Role", "ddnn-scaler")
			set(t, r, append(slices.Clone(r["rules"].([]any)), map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"get", "update"}}), "rules")
		}, "grants update on deployments"},
		{"egress not isolated by default", func(ms []manifest) {
			set(t, doc(t, ms, "NetworkPolicy", "ddnn-default-deny"), []any{"Ingress"}, "spec", "policyTypes")
		}, "a pod added later sending to"},
		{"Kafka reached on its plaintext port", func(ms []manifest) {
			set(t, doc(t, ms, "NetworkPolicy", "ddnn-egress-kafka"), []any{map[string]any{"protocol": "TCP", "port": 9092}}, "spec", "egress", "0", "ports")
		}, "Kafka's plaintext port"},
		{"the replicas may reach Kafka", func(ms []manifest) {
			set(t, doc(t, ms, "NetworkPolicy", "ddnn-egress-kafka"), []any{"funnel", "connector", "scaler", "inference"}, "spec", "podSelector", "matchExpressions", "0", "values")
		}, "ddnn-inference-edge sending to Kafka's TLS port"},
		{"the scaler may send anywhere", func(ms []manifest) {
			remove(t, doc(t, ms, "NetworkPolicy", "ddnn-egress-scaler"), "spec", "egress", "0", "ports")
		}, "ddnn-scaler sending to an address outside the cluster on port 80"},
		{"the connectors may reach any pod", func(ms []manifest) {
			set(t, doc(t, ms, "NetworkPolicy", "ddnn-egress-connector"), map[string]any{}, "spec", "egress", "0", "to", "0", "podSelector")
		}, "ddnn-connector-edge sending to a pod of namespace ddnn outside the pipeline, port 8090"},
		{"an image is latest", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-connector-fog"), "ddnn:latest", "spec", "template", "spec", "containers", "0", "image")
		}, "ddnn-connector-fog: image ddnn:latest"},
		{"an image has no tag", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-scaler"), "ddnn", "spec", "template", "spec", "containers", "0", "image")
		}, "ddnn-scaler: image ddnn,"},
		{"two images", func(ms []manifest) {
			set(t, deployment(t, ms, "ddnn-funnel"), "ddnn:0.0.9", "spec", "template", "spec", "containers", "0", "image")
		}, "want one image for every pod"},
		{"the kustomization pins no image", func(ms []manifest) {
			remove(t, doc(t, ms, "Kustomization", ""), "images")
		}, "0 images: entries for ddnn"},
		{"the kustomization sets latest", func(ms []manifest) {
			set(t, doc(t, ms, "Kustomization", ""), "latest", "images", "0", "newTag")
		}, "newTag latest"},
		{"the kustomization's tag differs from the manifests'", func(ms []manifest) {
			set(t, doc(t, ms, "Kustomization", ""), "0.2.0", "images", "0", "newTag")
		}, "newTag 0.2.0 differs"},
	}
}

// editPipeline replaces old by new in the ConfigMap's pipeline YAML.
func editPipeline(t *testing.T, ms []manifest, old, new string) {
	t.Helper()
	cm := doc(t, ms, "ConfigMap", "ddnn-pipeline")
	y := fmt.Sprint(at(cm, "data", "pipeline.yaml"))
	if !strings.Contains(y, old) {
		t.Fatalf("pipeline.yaml: no %q", old)
	}
	set(t, cm, strings.Replace(y, old, new, 1), "data", "pipeline.yaml")
}

func deploymentNames(ms []manifest) []string {
	var names []string
	for _, m := range ms {
		if m.kind() == "Deployment" {
			names = append(names, m.name())
		}
	}
	return names
}

func doc(t *testing.T, ms []manifest, kind, name string) map[string]any {
	t.Helper()
	for _, m := range ms {
		if m.kind() == kind && m.name() == name {
			return m.doc
		}
	}
	t.Fatalf("no %s %q", kind, name)
	return nil
}

func deployment(t *testing.T, ms []manifest, name string) map[string]any {
	t.Helper()
	return doc(t, ms, "Deployment", name)
}

// remove deletes the map key or list element at path, which must exist.
func remove(t *testing.T, root map[string]any, path ...string) {
	t.Helper()
	parent, last := at(root, path[:len(path)-1]...), path[len(path)-1]
	if at(root, path...) == nil {
		t.Fatalf("nothing at %v", path)
	}
	switch p := parent.(type) {
	case map[string]any:
		delete(p, last)
	case []any:
		var i int
		fmt.Sscan(last, &i)
		set(t, root, slices.Delete(slices.Clone(p), i, i+1), path[:len(path)-1]...)
	}
}

// set puts v at path, making the maps on the way.
func set(t *testing.T, root map[string]any, v any, path ...string) {
	t.Helper()
	m := root
	for i, k := range path[:len(path)-1] {
		next := at(m, k)
		switch n := next.(type) {
		case map[string]any:
			m = n
			continue
		case []any:
			// An index follows: descend through the list.
			rest := path[i+1:]
			if len(rest) == 1 {
				var j int
				fmt.Sscan(rest[0], &j)
				n[j] = v
				return
			}
			elem, ok := at(n, rest[0]).(map[string]any)
			if !ok {
				t.Fatalf("no map at %v", path[:i+2])
			}
			set(t, elem, v, rest[1:]...)
			return
		case nil:
			n2 := map[string]any{}
			m[k] = n2
			m = n2
			continue
		default:
			t.Fatalf("%v is a %T", path[:i+1], next)
		}
	}
	m[path[len(path)-1]] = v
}
