package inspect

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
)

// TestLatest: the record furthest along is the one at the latest tier,
// then the newest; a dead letter written in the same millisecond as the
// record it parks is after it, whichever was read first; a replay,
// written after the dead letter, is after it.
func TestLatest(t *testing.T) {
	p, err := pipeline.Parse([]byte(oneSiteYAML))
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1765107000123)
	in := func(tier string, ts time.Time) found {
		return found{topic: pipeline.Topic{Kind: pipeline.TopicInput, Tier: tier}, name: p.InputTopic(tier), rec: &kgo.Record{Timestamp: ts}}
	}
	dead := func(tier string, ts time.Time) found {
		return found{topic: pipeline.Topic{Kind: pipeline.TopicDLQ, Tier: tier}, name: p.DLQTopic(tier), rec: &kgo.Record{Timestamp: ts}, dead: &records.Parked{}}
	}
	for name, tc := range map[string]struct {
		found []found
		want  string
	}{
		"later tier":                 {[]found{in("fog", at), in("edge", at.Add(time.Second))}, "t.fog.in"},
		"dead letter, same ms":       {[]found{in("fog", at), dead("fog", at)}, "t.fog.dlq"},
		"dead letter read first":     {[]found{dead("fog", at), in("fog", at)}, "t.fog.dlq"},
		"replayed after dead letter": {[]found{in("fog", at), dead("fog", at), in("fog", at.Add(time.Minute))}, "t.fog.in"},
	} {
		s := newSearch(p, "m", time.Time{}, 10)
		s.found = tc.found
		f, ok := s.latest()
		if !ok || f.name != tc.want || (tc.want == "t.fog.in" && name == "replayed after dead letter" && !f.rec.Timestamp.Equal(at.Add(time.Minute))) {
			t.Errorf("%s: latest %s (%v), want %s", name, f.name, ok, tc.want)
		}
	}
}
