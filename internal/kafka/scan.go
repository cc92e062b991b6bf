package kafka

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// What Scan's client fetches at once: at most scanFetches fetches of at
// most scanFetchBytes each are in flight or buffered, whatever the
// topic's size (kgo's defaults, 50 MiB a fetch, are for throughput).
const (
	scanFetchBytes = 512 << 10
	scanFetches    = 4
)

// Scan hands visit every record of topic on the cluster k describes, from
// each partition's start to the end the partition had when Scan began,
// partition by partition in offset order, until visit returns false. It
// returns an error when the topic cannot be read or ctx ends first, saying
// how many partitions were not read to their end. Memory stays bounded
// by the fetch limits above, whatever the topic holds.
func Scan(ctx context.Context, k *pipeline.Kafka, topic string, visit func(*kgo.Record) bool) error {
	adm, err := NewClient(k, "scan", nil, nil)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	starts, ends, err := topicOffsets(ctx, kadm.NewClient(adm), topic)
	adm.Close()
	if err != nil {
		return fmt.Errorf("topic %s on %s: %w", topic, strings.Join(k.SeedBrokers(), ","), err)
	}
	from := map[int32]kgo.Offset{}
	until := map[int32]int64{}
	for p, end := range ends {
		if start := starts[p]; end > start {
			from[p] = kgo.NewOffset().At(start)
			until[p] = end
		}
	}
	if len(until) == 0 {
		return nil
	}
	cl, err := NewClient(k, "scan", nil, nil,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMaxBytes(scanFetchBytes), kgo.FetchMaxPartitionBytes(scanFetchBytes), kgo.MaxConcurrentFetches(scanFetches))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for len(until) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("topic %s: %d partitions not read to their end: %w", topic, len(until), ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("topic %s: %w", topic, err)
		}
		for _, rec := range fs.Records() {
			end, ok := until[rec.Partition]
			if !ok || rec.Offset >= end {
				continue
			}
			if rec.Offset+1 >= end {
				delete(until, rec.Partition)
			}
			if !visit(rec) {
				return nil
			}
		}
	}
	return nil
}

// topicOffsets are each partition of topic's start and end offsets.
func topicOffsets(ctx context.Context, adm *kadm.Client, topic string) (starts, ends map[int32]int64, err error) {
	ss, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = ss.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	es, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = es.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	starts, ends = map[int32]int64{}, map[int32]int64{}
	ss.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	es.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	if len(ends) == 0 {
		return nil, nil, fmt.Errorf("no partitions")
	}
	return starts, ends, nil
}
