package status

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// queue is what a site's Kafka says of one consumed topic: the lag of its
// consumer group and its dead-letter topic's records.
type queue struct {
	lag      int64
	lagErr   error
	dead     kafka.RecordCount
	deadErr  error
	dlqTopic string
}

// siteKafka is what status read from one site's Kafka.
type siteKafka struct {
	endpoint Endpoint
	tiers    map[string]queue // by tier
	uplinks  map[string]queue // by the site the link goes to
}

// readKafka reads site's Kafka (with the pipeline's security settings):
// whether it answers, then the lag of each of tiers' connector groups on
// its input topic and of each uplink's group on its queue, and the dead
// letters of each. It waits at most timeout for the first answer.
func readKafka(ctx context.Context, v *pipeline.SiteView, tiers []string, links []pipeline.Link, timeout time.Duration, now time.Time) siteKafka {
	p := v.Pipeline
	k := siteKafka{
		endpoint: Endpoint{Address: strings.Join(v.Kafka.SeedBrokers(), ",")},
		tiers:    map[string]queue{}, uplinks: map[string]queue{},
	}
	cl, err := kafka.NewClient(&v.Kafka, "status", nil, nil)
	if err != nil {
		k.endpoint.Error = err.Error()
		return k
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = adm.BrokerMetadata(pctx)
	cancel()
	if err != nil {
		k.endpoint.Error = brief(err).Error()
		return k
	}
	k.endpoint.Up = true
	// Each read gets its own deadline: one topic that does not answer
	// (missing, or its leader away) holds up only its own line.
	read := func(group, topic, dlq string) queue {
		q := queue{dlqTopic: dlq}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if g, err := kafka.Lag(rctx, adm, group, topic); err != nil {
			q.lagErr = brief(err)
		} else {
			q.lag = g.Lag
		}
		if q.dead, err = kafka.CountRecords(rctx, adm, dlq, now.Add(-time.Minute)); err != nil {
			q.deadErr = brief(err)
		}
		return q
	}
	for _, t := range tiers {
		k.tiers[t] = read(p.ConsumerGroup(t), p.InputTopic(t), p.DLQTopic(t))
	}
	for _, l := range links {
		k.uplinks[l.To] = read(p.UplinkGroup(l.To), p.UplinkTopic(l.To), p.UplinkDLQTopic(l.To))
	}
	return k
}

// errText is err's text, "" for nil; errors from outside (a broker's, a
// server's status line) are made printable where they are shown.
func errText(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return fmt.Sprint(err)
}
