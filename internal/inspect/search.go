package inspect

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// found is a record of the message the search read.
type found struct {
	site  string
	topic pipeline.Topic
	name  string // the topic's name
	rec   *kgo.Record
	// route is an uplink record's route (wire.HeaderRoute), also of one
	// parked on an uplink's dead-letter topic.
	route string
	// result is set for a result record: on the results topic, or on an
	// uplink queue on its way there.
	result *wire.Result
	dead   *records.Parked
}

// search reads a pipeline's topics, site by site, for the records of
// one message, within its bounds: records written since since, at most
// max records read in all.
type search struct {
	p     *pipeline.Pipeline
	id    string
	idb   []byte
	since time.Time
	max   int

	out    Searched
	found  []found
	capped bool            // stopped at max
	failed map[string]bool // sites whose Kafka did not answer
}

func newSearch(p *pipeline.Pipeline, id string, since time.Time, maxRecords int) *search {
	return &search{
		p: p, id: id, idb: []byte(id), since: since, max: maxRecords,
		out:    Searched{Since: since, MaxRecords: maxRecords, Topics: []TopicSearch{}},
		failed: map[string]bool{},
	}
}

// run reads the results topic first, and stops there when the message
// has a result whose every hop is known. Otherwise it reads each site's
// topics (TopicsOn), but, once a result is found, only those that may
// hold the hops still missing: the input topics and uplink queues of the
// sites of those hops' tiers. It stops at max records read.
func (s *search) run(ctx context.Context) {
	rs := s.p.ResultsSite()
	s.topic(ctx, rs, s.p.ResultsTopic())
	for _, site := range s.p.Sites() {
		for _, name := range s.p.TopicsOn(site.Name) {
			if s.capped || s.failed[site.Name] || ctx.Err() != nil {
				break
			}
			if name == s.p.ResultsTopic() || !s.needs(site.Name, name) {
				continue
			}
			s.topic(ctx, &site, name)
		}
	}
	s.out.Complete = !s.capped && len(s.failed) == 0
}

// needs says whether topic name on site may still tell something: every
// topic until a result is found, then those that may hold a missing hop.
func (s *search) needs(site, name string) bool {
	res := s.result()
	if res == nil {
		return true
	}
	t, _ := s.p.ParseTopic(name)
	if t.Kind != pipeline.TopicInput && t.Kind != pipeline.TopicUplink {
		return false
	}
	for _, tier := range s.missingHops(res) {
		if ts := s.p.SiteOf(tier); ts != nil && ts.Name == site {
			return true
		}
	}
	return false
}

// missingHops are the tiers the result says the message entered whose
// hop no record read so far carries.
func (s *search) missingHops(res *found) []string {
	have := map[string]bool{}
	for _, h := range s.hops() {
		have[h.Tier] = true
	}
	var missing []string
	for _, h := range res.result.Hops {
		if !have[h.Tier] {
			missing = append(missing, h.Tier)
		}
	}
	return missing
}

// result is the result record found on the results topic, nil if none.
func (s *search) result() *found {
	for i := range s.found {
		if f := &s.found[i]; f.topic.Kind == pipeline.TopicResults {
			return f
		}
	}
	return nil
}

// hops are the hops the records found carry (records.HeaderHops), one a
// tier, in tier order.
func (s *search) hops() []records.Hop {
	byTier := map[string]records.Hop{}
	for _, f := range s.found {
		hs, err := records.ReadHops(f.rec)
		if err != nil {
			continue
		}
		for _, h := range hs {
			byTier[h.Tier] = h
		}
	}
	var out []records.Hop
	for _, t := range s.p.Tiers {
		if h, ok := byTier[t.Name]; ok {
			out = append(out, h)
		}
	}
	return out
}

// topic reads topic name on site for the message's records.
func (s *search) topic(ctx context.Context, site *pipeline.Site, name string) {
	t, _ := s.p.ParseTopic(name)
	ts := TopicSearch{Site: site.Name, Topic: name}
	err := kafka.ScanSince(ctx, &site.Kafka, name, s.since, func(r *kgo.Record) bool {
		if s.out.Records >= s.max {
			s.capped = true
			return false
		}
		s.out.Records++
		ts.Records++
		if f, ok := s.match(site.Name, t, r); ok {
			f.name = name
			s.found = append(s.found, f)
			ts.Found++
		}
		return true
	})
	if err != nil {
		// The site's other topics would fail alike: they are not read.
		s.failed[site.Name] = true
		s.out.Failures = append(s.out.Failures, fmt.Sprintf("site %s: %v", site.Name, err))
	}
	s.out.Topics = append(s.out.Topics, ts)
}

// match says whether r, read on topic t of site, is a record of the
// message, and what it is.
func (s *search) match(site string, t pipeline.Topic, r *kgo.Record) (found, bool) {
	f := found{site: site, topic: t, rec: r}
	switch t.Kind {
	case pipeline.TopicResults:
		f.result = s.readResult(r)
		return f, f.result != nil
	case pipeline.TopicDLQ, pipeline.TopicUplinkDLQ:
		p := records.ReadDeadLetter(r)
		if p.ID != s.id && fallbackID(p.SourceTopic, p.SourcePartition, p.SourceOffset) != s.id {
			return f, false
		}
		f.dead, f.route = &p, records.Header(r, wire.HeaderRoute)
		return f, true
	case pipeline.TopicUplink:
		f.route = records.Header(r, wire.HeaderRoute)
		if _, results, err := wire.ParseRoute(f.route); err == nil && results {
			f.result = s.readResult(r)
			return f, f.result != nil
		}
	}
	return f, s.isMessage(r)
}

// readResult is r's result when it is the message's, else nil.
func (s *search) readResult(r *kgo.Record) *wire.Result {
	if !bytes.Contains(r.Value, s.idb) {
		return nil
	}
	res, err := records.DecodeResult(r)
	if err != nil || res.ID != s.id {
		return nil
	}
	return &res
}

// isMessage says whether message record r is the message's, by its id
// as records.DecodeMessage reads it: the envelope's, else the
// wire.HeaderID header, else the key, else the record's place. A value
// is decoded only when it holds the id's bytes or is a raw sample.
func (s *search) isMessage(r *kgo.Record) bool {
	if id := records.Header(r, wire.HeaderID); id != "" {
		return id == s.id
	}
	byPlace := string(r.Key) == s.id || fallbackID(r.Topic, r.Partition, r.Offset) == s.id
	if !byPlace && !bytes.Contains(r.Value, s.idb) {
		return false
	}
	m, err := records.DecodeMessage(r, nil)
	if err != nil {
		return byPlace // a raw sample: its id is its key or its place
	}
	return m.ID == s.id
}

// fallbackID is the id of a record that carries none
// (records.DecodeMessage).
func fallbackID(topic string, partition int32, offset int64) string {
	return fmt.Sprintf("%s-%d-%d", topic, partition, offset)
}

// latest is the record found furthest along the pipeline: by the tier it
// is at or on its way to (results last), then the newest, then a dead
// letter before the record it parks, written in the same millisecond. A
// dead letter and a record of its replay are at the same tier: the newer
// wins. Results are not among the candidates. ok is false when nothing
// but results was found.
func (s *search) latest() (found, bool) {
	var best found
	bestAt, ok := -1, false
	for _, f := range s.found {
		if f.topic.Kind == pipeline.TopicResults {
			continue
		}
		at := s.at(f)
		later := at > bestAt
		if at == bestAt {
			switch t := f.rec.Timestamp.Compare(best.rec.Timestamp); {
			case t > 0:
				later = true
			case t == 0:
				later = f.dead != nil && best.dead == nil
			}
		}
		if !ok || later {
			best, bestAt, ok = f, at, true
		}
	}
	return best, ok
}

// at is the index of the tier a record is at or on its way to; the
// tier count for a result.
func (s *search) at(f found) int {
	n := len(s.p.Tiers)
	tierIndex := func(name string) int {
		_, i, err := s.p.Tier(name)
		if err != nil {
			return -1
		}
		return i
	}
	switch f.topic.Kind {
	case pipeline.TopicInput, pipeline.TopicDLQ:
		return tierIndex(f.topic.Tier)
	}
	tier, results, err := wire.ParseRoute(f.route)
	switch {
	case err != nil:
		return -1
	case results:
		return n
	}
	return tierIndex(tier)
}

// siteOf is the effective site called name.
func (s *search) siteOf(name string) *pipeline.Site {
	i := slices.IndexFunc(s.p.Sites(), func(x pipeline.Site) bool { return x.Name == name })
	if i < 0 {
		return nil
	}
	return &s.p.Sites()[i]
}
