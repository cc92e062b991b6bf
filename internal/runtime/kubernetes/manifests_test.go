package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestManifests reads deploy/k8s as an operator would apply it: every
// document parses, Deployments have probes and run the ddnn image, the
// scaler's Role grants only what the runtime calls, and the pipeline in
// the ConfigMap passes ddnn's own strict validation.
func TestManifests(t *testing.T) {
	files, err := filepath.Glob("../../../deploy/k8s/*.yaml")
	if err != nil || len(files) < 6 {
		t.Fatalf("manifests: %v %v", files, err)
	}
	kinds := map[string]int{}
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
			if doc == nil {
				continue
			}
			kind, _ := doc["kind"].(string)
			kinds[kind]++
			switch kind {
			case "Deployment":
				checkDeployment(t, f, doc)
			case "Role":
				checkRole(t, doc)
			case "ConfigMap":
				data := doc["data"].(map[string]any)
				p, err := pipeline.Parse([]byte(data["pipeline.yaml"].(string)))
				if err != nil {
					t.Errorf("%s: pipeline.yaml: %v", f, err)
					continue
				}
				for _, tier := range p.Tiers {
					if tier.Replicas.Runtime != pipeline.RuntimeKubernetes || tier.Replicas.Kubernetes.Deployment != "ddnn-inference-"+tier.Name {
						t.Errorf("tier %s replicas %+v", tier.Name, tier.Replicas)
					}
				}
			}
		}
	}
	want := map[string]int{"Namespace": 1, "ConfigMap": 1, "Deployment": 8, "Service": 5, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "Kustomization": 1}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
}

func checkDeployment(t *testing.T, file string, doc map[string]any) {
	name := doc["metadata"].(map[string]any)["name"].(string)
	spec := doc["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, c := range spec["containers"].([]any) {
		c := c.(map[string]any)
		if c["image"] != "ddnn:latest" {
			t.Errorf("%s %s: image %v", file, name, c["image"])
		}
		if c["readinessProbe"] == nil || c["livenessProbe"] == nil {
			t.Errorf("%s %s: probes missing", file, name)
		}
		args := c["args"].([]any)
		if len(args) < 3 || args[1] != "-f" || args[2] != "/etc/ddnn/pipeline.yaml" {
			t.Errorf("%s %s: args %v", file, name, args)
		}
		role := strings.TrimPrefix(name, "ddnn-")
		if !strings.HasPrefix(role, args[0].(string)) {
			t.Errorf("%s %s runs %v", file, name, args[0])
		}
	}
}

func checkRole(t *testing.T, doc map[string]any) {
	type rule struct{ groups, resources, verbs string }
	var got []rule
	join := func(v any) string {
		var s []string
		for _, x := range v.([]any) {
			s = append(s, x.(string))
		}
		return strings.Join(s, ",")
	}
	for _, r := range doc["rules"].([]any) {
		r := r.(map[string]any)
		got = append(got, rule{join(r["apiGroups"]), join(r["resources"]), join(r["verbs"])})
	}
	want := []rule{{"apps", "deployments/scale", "get,update,patch"}, {"", "pods", "get,list,patch"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Role rules %v, want only %v", got, want)
	}
}
