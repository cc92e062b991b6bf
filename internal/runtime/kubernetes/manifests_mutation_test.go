package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestManifestsCatchRemovals breaks the shipped manifests one field at a
// time and requires checkManifests to report each break, naming the
// Deployment where it is one's: a field the test would not miss is a field
// nobody would notice losing.
func TestManifestsCatchRemovals(t *testing.T) {
	type mutation struct {
		name   string
		mutate func(ms []manifest) // must change something
		expect string              // a problem must contain this
	}
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
			set(t, doc(t, ms, "Role", "ddnn-scaler"), []any{"list", "patch", "create"}, "rules", "1", "verbs")
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
