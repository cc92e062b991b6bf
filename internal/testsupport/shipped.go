package testsupport

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// relativePath matches a shipped pipeline's setting that names a file
// relative to the YAML: a tier's model and the eval set's images and labels.
var relativePath = regexp.MustCompile(`(?m)^(\s*(?:model|images|labels):\s*)(\.\.?/\S+)$`)

// Shipped returns the text of a pipeline file of the checkout, rel from its
// root (such as "deploy/pipeline.yaml"), with the files it names made
// absolute, so that a test can write it anywhere and edit it.
func Shipped(tb testing.TB, rel string) string {
	tb.Helper()
	file := filepath.Join(Root(tb), rel)
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Dir(file)
	return relativePath.ReplaceAllStringFunc(string(b), func(m string) string {
		s := relativePath.FindStringSubmatch(m)
		return s[1] + filepath.Join(dir, s[2])
	})
}

// Root is the checkout's root: the nearest directory above the test's
// working directory that holds go.mod.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// SamplePipeline writes the sample pipeline (deploy/pipeline.yaml, see
// Shipped) with extra appended and its Kafka on a KafkaCluster of its own
// holding its topics; it returns the file and the cluster's address.
func SamplePipeline(tb testing.TB, extra string) (file, broker string) {
	tb.Helper()
	y := Shipped(tb, "deploy/pipeline.yaml") + extra
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		tb.Fatal(err)
	}
	broker = KafkaCluster(tb, p.Kafka.Partitions, p.Topics()...).ListenAddrs()[0]
	file = filepath.Join(tb.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(y+"kafka:\n  brokers: ["+broker+"]\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return file, broker
}
