package pipeline

import "testing"

// TestTopicNames builds every kind of topic and parses it back.
func TestTopicNames(t *testing.T) {
	p := &Pipeline{Name: "fmnist"}
	for _, tc := range []struct {
		topic Topic
		name  string
	}{
		{Topic{Kind: TopicInput, Tier: "edge"}, "fmnist.edge.in"},
		{Topic{Kind: TopicDLQ, Tier: "fog"}, "fmnist.fog.dlq"},
		{Topic{Kind: TopicResults}, "fmnist.results"},
		{Topic{Kind: TopicUplink, Site: "cloud"}, "fmnist.uplink.cloud"},
		{Topic{Kind: TopicUplinkDLQ, Site: "cloud"}, "fmnist.uplink.cloud.dlq"},
		{Topic{Kind: TopicInput, Tier: "uplink"}, "fmnist.uplink.in"},
	} {
		if got := p.TopicName(tc.topic); got != tc.name {
			t.Errorf("TopicName(%+v) = %q, want %q", tc.topic, got, tc.name)
		}
		if got, ok := p.ParseTopic(tc.name); !ok || got != tc.topic {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v", tc.name, got, ok, tc.topic)
		}
	}
	for _, name := range []string{"other.edge.in", "fmnist", "fmnist.edge", "fmnist.edge.out", "fmnist.uplink", "fmnist.uplink.cloud.x", "fmnist..in", "fmnist.results.in.x", "fmnistx.edge.in"} {
		if got, ok := p.ParseTopic(name); ok {
			t.Errorf("ParseTopic(%q) = %+v, want not a topic of the pipeline", name, got)
		}
	}
	// The funnel parses the topic of every record it produces.
	if n := testing.AllocsPerRun(100, func() { p.ParseTopic("fmnist.uplink.cloud.dlq") }); n != 0 {
		t.Errorf("ParseTopic allocates %v times", n)
	}
	if g := p.UplinkGroup("cloud"); g != "fmnist.uplink.cloud.connector" {
		t.Errorf("UplinkGroup = %q", g)
	}
	if g := p.ConsumerGroup("edge"); g != "fmnist.edge.connector" {
		t.Errorf("ConsumerGroup = %q", g)
	}
}
