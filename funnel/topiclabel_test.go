package funnel

import (
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestTopicLabel: the records metric's label is the tier, results or
// uplink, whatever the site an uplink goes to.
func TestTopicLabel(t *testing.T) {
	p := &pipeline.Pipeline{Name: "t"}
	for topic, want := range map[string]string{
		"t.edge.in": "edge", "t.edge.dlq": "edge", "t.results": "results",
		"t.uplink.cloud": "uplink", "t.uplink.cloud.dlq": "uplink", "other.edge.in": "other",
	} {
		if got := topicLabel(p, topic); got != want {
			t.Errorf("topicLabel(%q) = %q, want %q", topic, got, want)
		}
	}
}
