package inspect

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
)

// report is what the search found, as a Report: the ingest, the hops,
// then the result, or where the message is now, or that it is unknown.
func (s *search) report(ctx context.Context) Report {
	rep := Report{ID: s.id, Hops: []Hop{}, Searched: s.out}
	for _, h := range s.hops() {
		rep.Hops = append(rep.Hops, s.hop(h))
	}
	rep.Ingest = s.ingest()
	if res := s.result(); res != nil {
		rep.State = StateResult
		rep.Result = &Result{Result: *res.result, Where: position(res)}
		if missing := s.missingHops(res); len(missing) > 0 {
			rep.Note = fmt.Sprintf("no record read tells the hop of tier %s (its records are older than --since, or were written without %s, as ddnn monolith writes them)",
				strings.Join(missing, ", "), records.HeaderHops)
		}
	} else if f, ok := s.latest(); ok {
		s.place(ctx, &rep, f)
	} else {
		rep.State = StateUnknown
		rep.Note = "no record of this id was found"
	}
	var notes []string
	if rep.Note != "" {
		notes = append(notes, rep.Note)
	}
	if s.capped {
		notes = append(notes, fmt.Sprintf("the search stopped at --max-records %d: older records of the message may exist unread", s.max))
	}
	if len(s.out.Failures) > 0 {
		notes = append(notes, "some sites' Kafka did not answer (see failures)")
	}
	rep.Note = strings.Join(notes, "; ")
	return rep
}

// place says where the message is now, from f, the record furthest
// along: dead-lettered, waiting on f's topic (when f's consumer group has
// not consumed it), or unknown (consumed, yet no later record was found).
func (s *search) place(ctx context.Context, rep *Report, f found) {
	if f.dead != nil {
		rep.State = StateDeadLettered
		rep.DeadLetter = &DeadLetter{
			Position: position(&f), Reason: f.dead.Reason, ParkedAt: f.rec.Timestamp.UTC(),
			Source: Position{Site: f.site, Topic: f.dead.SourceTopic, Partition: f.dead.SourcePartition, Offset: f.dead.SourceOffset},
		}
		return
	}
	group := s.p.ConsumerGroup(f.topic.Tier)
	if f.topic.Kind == pipeline.TopicUplink {
		group = s.p.UplinkGroup(f.topic.Site)
	}
	w := &Waiting{Position: position(&f), Route: f.route, Group: group, Committed: -1, WrittenAt: f.rec.Timestamp.UTC()}
	consumed, err := s.consumed(ctx, f, w)
	switch {
	case err != nil:
		rep.State = StateUnknown
		rep.Note = fmt.Sprintf("its newest record is %s; the position of group %s there did not read: %v", describe(&f), group, err)
	case f.rec.Offset >= consumed:
		rep.State = StateWaiting
		w.Ahead = f.rec.Offset - consumed
		rep.Waiting = w
	default:
		rep.State = StateUnknown
		rep.Note = fmt.Sprintf("its newest record is %s, which group %s consumed (committed %d), yet no later record of it was found", describe(&f), group, w.Committed)
	}
}

// consumed is where f's group stands on f's partition (the offset its
// next fetch starts at), and sets w.Committed.
func (s *search) consumed(ctx context.Context, f found, w *Waiting) (int64, error) {
	site := s.siteOf(f.site)
	cl, err := kafka.NewClient(&site.Kafka, "inspect", nil, nil)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	lag, err := kafka.Lag(ctx, kadm.NewClient(cl), w.Group, f.name)
	if err != nil {
		return 0, err
	}
	for _, p := range lag.Partitions {
		if p.Partition == f.rec.Partition {
			w.Committed = p.Committed
			return p.Consumed, nil
		}
	}
	return 0, fmt.Errorf("topic %s has no partition %d", f.name, f.rec.Partition)
}

// ingest is where the message entered: the first tier's site, with the
// device and times its first-tier record or its result tells.
func (s *search) ingest() *Ingest {
	first := s.p.Tiers[0].Name
	in := &Ingest{Site: s.p.SiteOf(first).Name}
	known := false
	if res := s.result(); res != nil {
		in.Device = res.result.Device
		if !res.result.SentAt.IsZero() {
			t := res.result.SentAt.UTC()
			in.SentAt = &t
		}
		known = true
	}
	for i := range s.found {
		f := &s.found[i]
		if f.topic.Kind != pipeline.TopicInput || f.topic.Tier != first {
			continue
		}
		if in.WrittenAt != nil && !f.rec.Timestamp.Before(*in.WrittenAt) {
			continue // an earlier write (a replay comes later)
		}
		t := f.rec.Timestamp.UTC()
		p := position(f)
		in.WrittenAt, in.Where, known = &t, &p, true
		if m, err := records.DecodeMessage(f.rec, nil); err == nil {
			in.Device = m.Device
			if !m.SentAt.IsZero() {
				st := m.SentAt.UTC()
				in.SentAt = &st
			}
		} else if in.Device == "" {
			in.Device = string(f.rec.Key)
		}
	}
	if !known {
		return nil
	}
	return in
}

func (s *search) hop(h records.Hop) Hop {
	out := Hop{
		Tier: h.Tier, Replica: h.Replica, Model: h.Model.SHA, Version: h.Model.Version, Confidence: h.Confidence, Decision: "forward",
		FetchedAt: h.FetchedAt, KafkaWaitSeconds: h.KafkaWait.Seconds(), ServiceSeconds: h.Service.Seconds(),
	}
	if h.Exit {
		out.Decision = "exit"
	}
	if site := s.p.SiteOf(h.Tier); site != nil {
		out.Site = site.Name
	}
	return out
}

func position(f *found) Position {
	return Position{Site: f.site, Topic: f.name, Partition: f.rec.Partition, Offset: f.rec.Offset}
}

// describe names a record's place: topic[partition]@offset on site S.
func describe(f *found) string {
	return fmt.Sprintf("%s[%d]@%d on site %s", f.name, f.rec.Partition, f.rec.Offset, f.site)
}
