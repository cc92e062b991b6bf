package pipeline

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errorLineRE is how every line of a Parse error starts: a YAML path as
// the user wrote it ("tiers[0] (edge).exit.threshold: ", "(top level): ",
// "kafka.sasl[0].pasword: "), or, for YAML that is not well-formed,
// yaml.v3's syntax error with its line.
var errorLineRE = regexp.MustCompile(`^(yaml: line \d+: |[^ :].*?: .)`)

// goTypeRE finds yaml.v3's messages that name Go types.
var goTypeRE = regexp.MustCompile(`not found in type|cannot unmarshal|pipeline\.[A-Z]`)

// FuzzParse: Parse never panics, and every error it returns names where
// the problem is.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.y*ml")
	files = append(files, "../../deploy/pipeline.yaml", "../../deploy/examples/burst.yaml", "../../deploy/examples/continuum.yaml", "../../deploy/examples/secure.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: t\ntiers: [{name: e, exit: {treshold: 1}}]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("kafka: {<<: {partitions: x}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err == nil {
			if p == nil || len(p.Tiers) == 0 {
				t.Fatalf("no error and no pipeline for %q", b)
			}
			return
		}
		msg := err.Error()
		if msg == "empty document" {
			return
		}
		for _, line := range strings.Split(msg, "\n") {
			if !errorLineRE.MatchString(line) || goTypeRE.MatchString(line) {
				t.Fatalf("error line without a path, or naming a Go type:\n%s\nin\n%s\nfor %q", line, msg, b)
			}
		}
	})
}
