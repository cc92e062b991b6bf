package pipeline

import "strings"

// The topics and consumer groups of a pipeline are named here and only
// here, built and parsed by the same rules (tier and site names hold no
// dots, so every name splits one way):
//
//	<name>.<tier>.in          a tier's input (TopicInput)
//	<name>.<tier>.dlq         a tier's dead letters (TopicDLQ)
//	<name>.results            one result per exited message (TopicResults)
//	<name>.uplink.<to>        what goes to site <to> (TopicUplink)
//	<name>.uplink.<to>.dlq    what site <to>'s funnel refused (TopicUplinkDLQ)

// TopicKind is what a topic of the pipeline carries.
type TopicKind int

// Kinds of topics.
const (
	TopicInput TopicKind = iota + 1
	TopicDLQ
	TopicResults
	TopicUplink
	TopicUplinkDLQ
)

// Topic is one topic of the pipeline, by kind: Tier names the tier of an
// input or dead-letter topic, Site the site an uplink goes to.
type Topic struct {
	Kind TopicKind
	Tier string
	Site string
}

// TopicName is the name of topic t.
func (p *Pipeline) TopicName(t Topic) string {
	switch t.Kind {
	case TopicInput:
		return p.Name + "." + t.Tier + ".in"
	case TopicDLQ:
		return p.Name + "." + t.Tier + ".dlq"
	case TopicResults:
		return p.Name + ".results"
	case TopicUplink:
		return p.Name + ".uplink." + t.Site
	case TopicUplinkDLQ:
		return p.Name + ".uplink." + t.Site + ".dlq"
	}
	return ""
}

// ParseTopic reads a topic name of this pipeline; ok is false for a name
// that is not one (another pipeline's, or not a form above). A tier called
// uplink is read as a tier: <name>.uplink.in is its input.
func (p *Pipeline) ParseTopic(name string) (t Topic, ok bool) {
	// Cut, not Split: the funnel labels every record it produces with it.
	rest, ok := strings.CutPrefix(name, p.Name+".")
	if !ok {
		return Topic{}, false
	}
	if rest == "results" {
		return Topic{Kind: TopicResults}, true
	}
	first, second, _ := strings.Cut(rest, ".")
	site, third, three := strings.Cut(second, ".")
	switch {
	case !three && second == "in":
		t = Topic{Kind: TopicInput, Tier: first}
	case !three && second == "dlq":
		t = Topic{Kind: TopicDLQ, Tier: first}
	case !three && first == "uplink":
		t = Topic{Kind: TopicUplink, Site: second}
	case three && first == "uplink" && third == "dlq":
		t = Topic{Kind: TopicUplinkDLQ, Site: site}
	default:
		return Topic{}, false
	}
	if t.Tier == "" && t.Site == "" {
		return Topic{}, false
	}
	return t, true
}

// InputTopic is the topic a tier consumes.
func (p *Pipeline) InputTopic(tier string) string {
	return p.TopicName(Topic{Kind: TopicInput, Tier: tier})
}

// DLQTopic is where a tier's connector parks records its function rejected.
func (p *Pipeline) DLQTopic(tier string) string {
	return p.TopicName(Topic{Kind: TopicDLQ, Tier: tier})
}

// ResultsTopic holds one result record per exited message.
func (p *Pipeline) ResultsTopic() string { return p.TopicName(Topic{Kind: TopicResults}) }

// UplinkTopic is the queue, on the sending site's Kafka, of what goes to
// the site called to.
func (p *Pipeline) UplinkTopic(to string) string {
	return p.TopicName(Topic{Kind: TopicUplink, Site: to})
}

// UplinkDLQTopic is where the uplink to the site called to parks, on the
// sending site's Kafka, the records that site's funnel refused (4xx).
func (p *Pipeline) UplinkDLQTopic(to string) string {
	return p.TopicName(Topic{Kind: TopicUplinkDLQ, Site: to})
}

// Topics lists every topic of the pipeline without sites (see TopicsOn).
func (p *Pipeline) Topics() []string {
	var ts []string
	for _, t := range p.Tiers {
		ts = append(ts, p.InputTopic(t.Name), p.DLQTopic(t.Name))
	}
	return append(ts, p.ResultsTopic())
}

// ConsumerGroup is the group of a tier's connector.
func (p *Pipeline) ConsumerGroup(tier string) string { return p.Name + "." + tier + ".connector" }

// UplinkGroup is the consumer group of the connector that ships
// UplinkTopic(to) to that site's funnel.
func (p *Pipeline) UplinkGroup(to string) string { return p.UplinkTopic(to) + ".connector" }

// MonolithGroup is the consumer group of the monolith baseline, which
// reads the first tier's input topic.
func (p *Pipeline) MonolithGroup() string { return p.Name + ".monolith" }
