package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsIngestExamples: the ingest examples of the README and
// docs/security.md can be pasted as they are: a file a command sends
// (curl's @FILE) is one the repository ships, and a $TOKEN a block uses is
// set in that block first.
func TestDocsIngestExamples(t *testing.T) {
	sendsFile := regexp.MustCompile(`--data-binary @(\S+)`)
	for _, doc := range []string{"README.md", "docs/security.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		blocks := strings.Split(string(b), "```sh\n")[1:]
		for _, block := range blocks {
			block, _, _ = strings.Cut(block, "```")
			set := false
			for line := range strings.Lines(block) {
				if strings.HasPrefix(line, "TOKEN=") {
					set = true
				}
				if strings.Contains(line, "$TOKEN") && !set {
					t.Errorf("%s: $TOKEN used before the block sets it: %s", doc, strings.TrimSpace(line))
				}
				for _, m := range sendsFile.FindAllStringSubmatch(line, -1) {
					if _, err := os.Stat(m[1]); err != nil {
						t.Errorf("%s: sends %s, which is not in the repository (from its root): %v", doc, m[1], err)
					}
				}
			}
		}
	}
}
