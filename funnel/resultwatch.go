package funnel

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/records"
)

// watchRetry is how often watchResults tries again to list the results
// topic's end offsets while it cannot.
const watchRetry = time.Second

// watchResults is the funnel's one reader of the results topic, which
// answers the requests that wait (waiters): it reads the topic on the
// results site's Kafka, as the pipeline's YAML gives it, so a funnel of
// another site reads it across the WAN with that site's brokers and
// security settings. It lists every partition's end offset, retrying
// every watchRetry until it can, then reads each partition from there
// (no consumer group, no commits), decoding a result only while a
// request waits. Waits are taken from the moment the end offsets are
// known (waiters.ready), so no result of a registered waiter can come
// before the reader's start. It returns when ctx ends.
func (f *Funnel) watchResults(ctx context.Context) error {
	k := &f.p.ResultsSite().Kafka
	topic := f.p.ResultsTopic()
	from, err := f.resultsEnd(ctx, topic)
	if err != nil {
		return nil // ctx ended
	}
	cl, err := kafka.NewClient(k, "funnel-results", nil, f.log, append(kafka.ReadFetchLimits(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		// The same settings made the admin client; only ctx stops us.
		f.log.Error("results reader: kafka client", "err", err)
		<-ctx.Done()
		return nil
	}
	defer cl.Close()
	f.waits.ready.Store(true)
	defer f.waits.ready.Store(false)
	f.log.Info("answering waits: reading the results topic", "topic", topic, "brokers", strings.Join(k.SeedBrokers(), ","), "partitions", len(from))
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			f.log.Debug("results reader: fetch", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(func(rec *kgo.Record) {
			if !f.waits.waiting() {
				return
			}
			res, err := records.DecodeResult(rec)
			if err != nil {
				return
			}
			f.waits.deliver(res.Device, res.ID, rec.Value)
		})
	}
}

// resultsEnd is each partition of the results topic's end offset, asked
// of the results site's Kafka every watchRetry until it answers; the
// error is ctx's.
func (f *Funnel) resultsEnd(ctx context.Context, topic string) (map[int32]kgo.Offset, error) {
	k := &f.p.ResultsSite().Kafka
	warned := false
	for {
		from, err := f.endOffsets(ctx, topic)
		if err == nil {
			return from, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !warned {
			f.log.Warn("results reader: cannot list the results topic's end yet; requests that ask to wait are answered at once until it can",
				"topic", topic, "brokers", strings.Join(k.SeedBrokers(), ","), "err", err, "retry", watchRetry)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(watchRetry):
		}
	}
}

// endOffsets lists topic's end offsets on the results site's Kafka
// within watchRetry.
func (f *Funnel) endOffsets(ctx context.Context, topic string) (map[int32]kgo.Offset, error) {
	adm, err := kafka.NewClient(&f.p.ResultsSite().Kafka, "funnel-results", nil, f.log)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	lctx, cancel := context.WithTimeout(ctx, max(watchRetry, 3*time.Second))
	defer cancel()
	_, ends, err := kafka.TopicOffsets(lctx, kadm.NewClient(adm), topic)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	from := make(map[int32]kgo.Offset, len(ends))
	for p, end := range ends {
		from[p] = kgo.NewOffset().At(end)
	}
	return from, nil
}
