// Package records builds and reads every Kafka record ddnn writes:
// message records (a tier's input, an uplink queue's messages), result
// records, dead letters, the provenance of a message's hops
// (HeaderHops), and where a record goes from a site (Destination).
// Funnels, connectors and the monolith all write through it, so a record
// reads the same whoever wrote it.
package records

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Destination is where a record goes: a topic of the writing site's
// Kafka, and, for an uplink queue, the route (wire.RouteTier or
// wire.RouteResults) the link's uplink delivers it by on the remote site.
type Destination struct {
	Topic string
	// Route is "" for a topic of the pipeline's own on this site.
	Route string
}

// DestinationOf is where a record for tier (or a result, tier "")
// written on the site called from goes: the tier's input topic or the
// results topic when that lives on from's Kafka, else the queue of the
// link to its site (pipeline.UplinkTopic) with the route, for that link's
// uplink to carry.
func DestinationOf(p *pipeline.Pipeline, from, tier string) Destination {
	site, local, route := p.ResultsSite(), p.ResultsTopic(), wire.RouteResults
	if tier != "" {
		site, local, route = p.SiteOf(tier), p.InputTopic(tier), wire.RouteTier(tier)
	}
	if site.Name == from {
		return Destination{Topic: local}
	}
	return Destination{Topic: p.UplinkTopic(site.Name), Route: route}
}

// Uplink says whether d is the queue of a link to another site.
func (d Destination) Uplink() bool { return d.Route != "" }

// record is a record for d keyed by device, with headers hs and then
// d's route header.
func (d Destination) record(device string, value []byte, hs ...kgo.RecordHeader) *kgo.Record {
	rec := &kgo.Record{Topic: d.Topic, Key: keyFor(device), Value: value, Headers: hs}
	if d.Route != "" {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: wire.HeaderRoute, Value: []byte(d.Route)})
	}
	return rec
}

func keyFor(device string) []byte {
	if device == "" {
		return nil
	}
	return []byte(device)
}

// Message is m as a record for d, keyed by device: its envelope in enc,
// with the encoding and the id as headers (so that tools such as kcat
// show the id), then the route.
func Message(d Destination, enc wire.Encoding, m *wire.Message) (*kgo.Record, error) {
	v, err := wire.AppendMessage(nil, enc, m)
	if err != nil {
		return nil, err
	}
	return d.record(m.Device, v, messageHeaders(enc, m.ID)...), nil
}

// Forward is m as a binary message record for d, as Message builds it,
// with t, a forward tensor as the function's answer holds it
// (wire.DecodeDecisionsSpliced), in place of m.Tensor: its bytes are
// copied into the record as they are.
func Forward(d Destination, m *wire.Message, t wire.EncodedTensor) (*kgo.Record, error) {
	v, err := wire.AppendMessageSpliced(nil, m, t)
	if err != nil {
		return nil, err
	}
	return d.record(m.Device, v, messageHeaders(wire.Binary, m.ID)...), nil
}

// messageHeaders leaves room for the route and the hops (HopAppender), so that
// adding them does not copy the headers.
func messageHeaders(enc wire.Encoding, id string) []kgo.RecordHeader {
	return append(make([]kgo.RecordHeader, 0, 4),
		kgo.RecordHeader{Key: wire.HeaderEncoding, Value: []byte(enc.String())},
		kgo.RecordHeader{Key: wire.HeaderID, Value: []byte(id)},
	)
}

// SignDevice adds the signature of rec's device claim (wire.HeaderDeviceSig)
// made with service's claim key: with device authentication on, the
// first tier believes a claim only signed (CheckClaim). A record that
// claims no device is left alone.
func SignDevice(rec *kgo.Record, service *auth.Tokens, device string) {
	if device == "" {
		return
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: wire.HeaderDeviceSig, Value: []byte(service.SignClaim(device, rec.Value))})
}

// Result is r as a result record for d, keyed by device.
func Result(d Destination, r *wire.Result) (*kgo.Record, error) {
	v, err := wire.AppendResult(nil, r)
	if err != nil {
		return nil, err
	}
	// Room for the route and the hops (HopAppender).
	return d.record(r.Device, v, make([]kgo.RecordHeader, 0, 2)...), nil
}
