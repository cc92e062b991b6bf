package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite testdata/compat/*.json from the current code")

// shippedYAML lists every pipeline the repository ships or tests with that
// existed before sites: each must keep parsing to the same streaming
// settings. The golden files were written by the code before sites.
var shippedYAML = []struct{ golden, file string }{
	{"pipeline", "../../deploy/pipeline.yaml"},
	{"burst", "../../deploy/examples/burst.yaml"},
	{"k8s-configmap", "../../deploy/k8s/configmap.yaml"},
	{"broken-chain", "../../models/testdata/broken-chain.yaml"},
	{"good", "testdata/good.yaml"},
}

// streamingSnapshot is what a single-site pipeline runs with: the sections
// `ddnn up` and the roles read, the topics and the broker's data dir.
type streamingSnapshot struct {
	Kafka   Kafka
	Funnel  Funnel
	Admin   Admin
	Topics  []string
	DataDir string // relative to the working directory
}

func snapshot(t *testing.T, p *Pipeline) streamingSnapshot {
	t.Helper()
	dir, err := p.BrokerDataDir()
	if err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	if rel, err := filepath.Rel(cwd, dir); err == nil && !strings.HasPrefix(rel, "..") {
		dir = rel
	}
	return streamingSnapshot{Kafka: p.Kafka, Funnel: p.Funnel, Admin: p.Admin, Topics: p.Topics(), DataDir: dir}
}

// loadShipped loads a shipped pipeline; the Kubernetes ConfigMap holds
// one as a string.
func loadShipped(t *testing.T, file string) *Pipeline {
	t.Helper()
	if !strings.HasSuffix(file, "configmap.yaml") {
		p, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			t.Fatalf("%s: no ConfigMap", file)
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind == "ConfigMap" {
			p, err := Parse([]byte(doc.Data["pipeline.yaml"]))
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
}

// TestShippedYAMLUnchanged checks that every shipped pipeline parses to the
// streaming settings it had before sites existed.
func TestShippedYAMLUnchanged(t *testing.T) {
	for _, tc := range shippedYAML {
		t.Run(tc.golden, func(t *testing.T) {
			p := loadShipped(t, tc.file)
			got := snapshot(t, p)
			golden := filepath.Join("testdata", "compat", tc.golden+".json")
			if *update {
				b, _ := json.MarshalIndent(got, "", "  ")
				if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			var want streamingSnapshot
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s parses to\n%+v\nwant (as before sites)\n%+v", tc.file, got, want)
			}
		})
	}
}
