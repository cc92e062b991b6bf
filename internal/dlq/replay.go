package dlq

import (
	"context"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
)

// replay sends the records dead parks back to the input of c.ToTier (or
// c.Tier), but for the dead letters whose message already has a result
// (read from the results topic, on the results site: a replay repeated
// after the first one's messages got their results sends them no second
// time), whose copy was cut, and whose id another dead letter of this
// replay has already (a record dead-lettered, replayed and dead-lettered
// again). A dead letter without an id cannot be checked and is replayed.
func (c *Command) replay(ctx context.Context, w io.Writer, p *pipeline.Pipeline, dlqTopic string, dead []*kgo.Record) error {
	to := c.ToTier
	if to == "" {
		to = c.Tier
	}
	site, err := p.OnTierSite(to)
	if err != nil {
		return command.Usagef("--to-tier: %v", err)
	}
	if len(dead) == 0 {
		fmt.Fprintf(w, "no dead letters in %s that match: nothing to replay\n", dlqTopic)
		return nil
	}
	ids := make([]string, len(dead))
	candidates := map[string]bool{}
	for i, r := range dead {
		if ids[i] = records.ReadDeadLetter(r).ID; ids[i] != "" {
			candidates[ids[i]] = false
		}
	}
	if err := markResults(ctx, p, candidates); err != nil {
		return err
	}
	var send []*kgo.Record
	var withResult, cut, repeated int
	planned := map[string]bool{}
	for i, r := range dead {
		id := ids[i]
		switch {
		case id != "" && candidates[id]:
			withResult++
			continue
		case id != "" && planned[id]:
			repeated++
			continue
		}
		rec, err := records.Replay(p.InputTopic(to), r)
		if err != nil {
			cut++
			fmt.Fprintf(w, "skipping %s/%d/%d (id %q): %v\n", r.Topic, r.Partition, r.Offset, id, err)
			continue
		}
		planned[id] = true
		send = append(send, rec)
	}
	verb := "replayed"
	if c.DryRun {
		verb = "would replay"
	}
	summary := fmt.Sprintf("%s %d of %d dead letters of %s to %s; skipped %d whose message has a result, %d cut, %d repeating an id",
		verb, len(send), len(dead), dlqTopic, p.InputTopic(to), withResult, cut, repeated)
	if c.DryRun || len(send) == 0 {
		for _, r := range send {
			fmt.Fprintf(w, "%s  from %s\n", idOf(r), records.Header(r, records.HeaderReplayedFrom))
		}
		fmt.Fprintln(w, summary)
		return nil
	}
	cl, err := kafka.NewClient(&site.Kafka, "dlq-replay", nil, nil, kafka.ProducerOptions(&site.Kafka)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, send...).FirstErr(); err != nil {
		return fmt.Errorf("replay to %s: %w (records acknowledged before the error are replayed; running the replay again skips those that got a result)", p.InputTopic(to), err)
	}
	fmt.Fprintln(w, summary)
	return nil
}

// markResults sets candidates[id] for every id with a result on the
// results topic.
func markResults(ctx context.Context, p *pipeline.Pipeline, candidates map[string]bool) error {
	if len(candidates) == 0 {
		return nil
	}
	rs, err := p.OnSite(p.ResultsSite().Name)
	if err != nil {
		return err
	}
	return kafka.Scan(ctx, &rs.Kafka, p.ResultsTopic(), func(r *kgo.Record) bool {
		if res, err := records.DecodeResult(r); err == nil {
			if _, ok := candidates[res.ID]; ok {
				candidates[res.ID] = true
			}
		}
		return true
	})
}

// idOf is a record's message id, as a dead letter of it would say.
func idOf(r *kgo.Record) string { return records.ReadDeadLetter(r).ID }
