package connector

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// newUplink builds the uplink of cfg.Link: the connector of the link's
// queue on the sending site, delivering to the receiving site's funnel.
func newUplink(cfg Config) (*Connector, error) {
	p, l := cfg.Pipeline, *cfg.Link
	name := fmt.Sprintf("uplink %q -> %q", l.From, l.To)
	if l.From == l.To {
		return nil, fmt.Errorf("%s: a link joins two sites", name)
	}
	from, err := p.OnSite(l.From)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := p.OnSite(l.To); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cfg.Tier != "" || len(cfg.Replicas) > 0 || cfg.ReplicasURL != "" {
		return nil, fmt.Errorf("%s: takes no tier or replicas: it delivers to the funnel of site %q", name, l.To)
	}
	for _, s := range p.Sites() {
		if s.Name == l.To {
			cfg.Replicas = []string{s.Funnel.URL}
		}
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry() // counted, not exported
	}
	labels := prometheus.Labels{"from": l.From, "to": l.To}
	c := newConnector(cfg, &Connector{
		site:      from,
		t:         &uplinkTarget{p: p, links: newLinkMetrics(prometheus.WrapRegistererWith(labels, cfg.Registerer))},
		conn:      UplinkSettings(p, l.To),
		name:      name,
		topic:     p.UplinkTopic(l.To),
		group:     p.UplinkGroup(l.To),
		dlq:       p.UplinkDLQTopic(l.To),
		clientID:  "uplink-" + l.To,
		spanName:  fmt.Sprintf("uplink %s->%s", l.From, l.To),
		spanAttrs: []attribute.KeyValue{telemetry.AttrLink.String(l.From + "->" + l.To)},
	}, labels)
	return c, nil
}

// UplinkSettings are the connector settings of the uplink to site to: those
// of the first tier placed there, or, for a site that runs no tier (it
// holds only the results), those of the first tier.
func UplinkSettings(p *pipeline.Pipeline, to string) pipeline.Connector {
	for _, t := range p.Tiers {
		if s := p.SiteOf(t.Name); s != nil && s.Name == to {
			return t.Connector
		}
	}
	return p.Tiers[0].Connector
}

// uplinkTarget posts an uplink queue's records to the receiving site's
// funnel: messages as a wire batch to /v1/tiers/<tier>, result records as
// a JSON array to /v1/results, as replicas deliver them.
type uplinkTarget struct {
	p     *pipeline.Pipeline
	links *linkMetrics
}

func (t *uplinkTarget) decode(r *kgo.Record) (item, error) {
	it := item{rec: r}
	tier, results, err := records.Route(r)
	if err != nil {
		return it, err
	}
	if results {
		res, err := records.DecodeResult(r)
		if err != nil {
			return it, err
		}
		it.route, it.result = wire.RouteResults, &res
		return it, nil
	}
	if _, _, err := t.p.Tier(tier); err != nil {
		return it, fmt.Errorf("header %s: %w", wire.HeaderRoute, err)
	}
	it.route = wire.RouteTier(tier)
	it.msg, err = records.DecodeMessage(r, nil)
	return it, err
}

func (t *uplinkTarget) request(batch []item) (request, error) {
	if len(batch) == 0 {
		return request{}, errors.New("empty batch")
	}
	if batch[0].result != nil {
		rs := make([]wire.Result, len(batch))
		for i := range batch {
			rs[i] = *batch[i].result
		}
		body, err := wire.AppendResults(nil, rs)
		return request{path: httpapi.PathResults, contentType: "application/json", body: body}, err
	}
	tier, _, _ := wire.ParseRoute(batch[0].route)
	enc := t.p.Encoding()
	body, err := appendMessages(enc, batch)
	return request{path: httpapi.TierPath(tier), contentType: enc.ContentType(), body: body}, err
}

// accepted: the remote funnel wrote the records; they are done.
func (t *uplinkTarget) accepted(call request, batch []item, _ reply) ([]settled, error) {
	t.links.bytes.Add(float64(len(call.body)))
	t.links.messages.Add(float64(len(batch)))
	ss := make([]settled, len(batch))
	for i := range batch {
		ss[i] = settled{src: batch[i].rec}
	}
	return ss, nil
}

func (*uplinkTarget) chargeable() bool   { return false }
func (*uplinkTarget) refusesWhole() bool { return true }
func (*uplinkTarget) peer() string       { return "funnel" }
func (*uplinkTarget) answerer() string   { return "funnel" }
func (*uplinkTarget) downMessage() string {
	return "link down: the remote funnel does not answer; records wait in the uplink queue and are retried"
}
func (*uplinkTarget) upMessage() string { return "link up again" }

// linkMetrics count what an uplink delivered to the remote site; the
// caller adds the from and to labels.
type linkMetrics struct {
	bytes, messages prometheus.Counter
}

func newLinkMetrics(reg prometheus.Registerer) *linkMetrics {
	m := &linkMetrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_link_bytes_total", Help: "Request body bytes the uplink delivered to the remote site's funnel (accepted calls).",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_link_messages_total", Help: "Records (messages and results) the uplink delivered to the remote site's funnel.",
		}),
	}
	reg.MustRegister(m.bytes, m.messages)
	return m
}
