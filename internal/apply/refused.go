package apply

import (
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// refused lists every setting that differs between old and new, each
// with the reason it cannot change while the pipeline runs. Compute has
// already made the Live and Rollout settings of old equal to new's, so
// what is left here is refused: the walk covers every field of the
// pipeline, those added later included.
func refused(old, new *pipeline.Pipeline) []Change {
	var out []Change
	for _, d := range pipeline.Diff("", *old, *new) {
		out = append(out, Change{Path: d.Path, Old: d.Old, New: d.New, Reason: reason(d.Path)})
	}
	return out
}

// reasons say why the settings under a path cannot change live, the
// most specific path first; a setting under none of them gets
// defaultReason.
var reasons = []struct{ prefix, reason string }{
	{"name", "the pipeline's name names every topic and consumer group: a new name is another pipeline"},
	{"input", "devices and the first tier's model are built for the input's type and shape"},
	{"classes", "the models' exit heads give their scores in the classes' order"},
	{"tiers", "tiers cannot be added, removed, renamed or reordered while the pipeline runs: each has its own topics, groups and backlog"},
	{"sites", "a site's Kafka, funnel and admin are where the pipeline runs: its addresses and settings are fixed at start"},
	{"results", "the results topic lives on one site's Kafka"},
	{"kafka", "the Kafka clients, brokers and topics are made with these settings at start"},
	{"funnel", "the funnel's listeners and bounds are set when it starts"},
	{"admin", "ddnn up's admin address is where apply reaches it"},
	{"auth", "credentials are loaded by every part at start"},
	{"wire_encoding", "records already in the topics are written in the running encoding"},
}

// defaultReason is the reason of a setting not classified.
const defaultReason = "not a setting that changes while the pipeline runs: stop ddnn up and start it with the file"

// reason says why the setting at path cannot change live.
func reason(path string) string {
	for _, r := range reasons {
		if path == r.prefix || strings.HasPrefix(path, r.prefix+".") || strings.HasPrefix(path, r.prefix+"[") {
			if r.prefix == "tiers" && strings.Count(path, ".") > 0 {
				return tierReason(path)
			}
			return r.reason
		}
	}
	return defaultReason
}

// tierReason says why a setting of one tier cannot change live.
func tierReason(path string) string {
	switch {
	case strings.HasSuffix(path, ".name"):
		return "a tier's name names its topics, consumer group and replicas: renaming or reordering tiers makes another pipeline"
	case strings.HasSuffix(path, ".site"):
		return "a tier's input topic and its backlog live on its site's Kafka"
	case strings.Contains(path, ".replicas."):
		return "a tier's runtime and where its replicas run are fixed at start"
	default:
		return "a tier's model interface (input, exit output and scores, forward) and its connector's other bounds are read when its parts start: stop ddnn up and start it with the file"
	}
}
