package up

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
)

// queue is where accepted messages wait on the site: a tier's input topic
// or a link's uplink queue, with the group that consumes it.
type queue struct {
	key, name    string // log attribute: "tier" or "uplink" (the site it goes to)
	group, topic string
}

// queues are the site's tiers' input topics (with Config.Monolith, the
// first tier's, which the monolith consumes), then its uplink queues.
func (s *Supervisor) queues() []queue {
	var qs []queue
	for _, t := range s.tiers {
		if s.cfg.Monolith {
			first := s.p.Tiers[0].Name
			qs = append(qs, queue{"tier", first, monolith.Group(s.p), s.p.InputTopic(first)})
			break
		}
		qs = append(qs, queue{"tier", t.Name, s.p.ConsumerGroup(t.Name), s.p.InputTopic(t.Name)})
	}
	for _, l := range s.links {
		qs = append(qs, queue{"uplink", l.To, s.p.UplinkGroup(l.To), s.p.UplinkTopic(l.To)})
	}
	return qs
}

// awaitBacklog gives the connectors and uplinks up to budget to finish the
// messages accepted before the intake closed, and returns early once no
// queue has any left.
func (s *Supervisor) awaitBacklog(adm *kadm.Client, budget time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	for {
		var left int64
		for _, q := range s.queues() {
			lag, err := kafka.Lag(ctx, adm, q.group, q.topic)
			if err != nil {
				return // the report says so
			}
			left += lag.Lag
		}
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Info("stopping with accepted messages unprocessed", "waited", budget.Round(time.Millisecond), "unprocessed", left)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reportBacklog logs, per tier and per uplink, how many accepted messages
// wait in its queue, and what becomes of them: at start (when is set) they
// are being processed; at stop they are processed at the next start,
// unless the embedded broker is in memory and they are lost.
func (s *Supervisor) reportBacklog(ctx context.Context, adm *kadm.Client, when string) {
	for _, q := range s.queues() {
		lag, err := kafka.Lag(ctx, adm, q.group, q.topic)
		n := lag.Lag
		switch {
		case err != nil:
			s.log.Warn("unprocessed messages unknown", q.key, q.name, "err", err)
		case when != "":
			if n > 0 {
				s.log.Info("accepted messages "+when, q.key, q.name, "unprocessed", n)
			}
		case n == 0:
			s.log.Info("every accepted message processed", q.key, q.name, "unprocessed", 0)
		case s.broker != nil && s.dataDir == "":
			s.log.Warn("accepted messages not processed; they are lost: the embedded broker kept them in memory (--ephemeral)", q.key, q.name, "unprocessed", n)
		case s.broker != nil:
			s.log.Info("accepted messages not processed yet; they will be processed at the next start", q.key, q.name, "unprocessed", n, "data_dir", s.dataDir)
		default:
			s.log.Info("accepted messages not processed yet; they stay in Kafka and will be processed at the next start", q.key, q.name, "unprocessed", n)
		}
	}
}
