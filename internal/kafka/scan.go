package kafka

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// What a reader for a person fetches at once: a fetch asks for at most
// readFetchBytes (a partition may fill it; a record batch larger than
// that still comes, alone), and at most readFetches are in flight or
// buffered, so the client holds about readFetches*readFetchBytes of
// record batches (several times that once decompressed), whatever the
// topic's size and partitions. kgo's defaults, 50 MiB a fetch and one
// fetch per broker, are for throughput, not for a terminal.
const (
	readFetchBytes = 512 << 10
	readFetches    = 4
)

// ReadFetchLimits are the fetch options of a client that reads a topic
// for a person (Scan, ddnn results): bounded memory, whatever the topic.
func ReadFetchLimits() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMaxBytes(readFetchBytes),
		kgo.FetchMaxPartitionBytes(readFetchBytes),
		kgo.MaxConcurrentFetches(readFetches),
	}
}

// Scan hands visit every record of topic on the cluster k describes, from
// each partition's start to the end the partition had when Scan began,
// partition by partition in offset order, until visit returns false. It
// returns an error when the topic cannot be read or ctx ends first, saying
// how many partitions were not read to their end. Memory stays bounded
// (ReadFetchLimits), whatever the topic holds.
func Scan(ctx context.Context, k *pipeline.Kafka, topic string, visit func(*kgo.Record) bool) error {
	return ScanSince(ctx, k, topic, time.Time{}, visit)
}

// ScanSince is Scan from each partition's first record written at or
// after since (its timestamp); a zero since is Scan.
func ScanSince(ctx context.Context, k *pipeline.Kafka, topic string, since time.Time, visit func(*kgo.Record) bool) error {
	adm, err := NewClient(k, "scan", nil, nil)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	starts, ends, err := TopicOffsets(ctx, kadm.NewClient(adm), topic)
	if err == nil && !since.IsZero() {
		err = startSince(ctx, kadm.NewClient(adm), topic, since, starts)
	}
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
		append(ReadFetchLimits(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))...)
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

// startSince moves each partition's start in starts to its first record
// written at or after since (its end when it has none).
func startSince(ctx context.Context, adm *kadm.Client, topic string, since time.Time, starts map[int32]int64) error {
	os, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err == nil {
		err = os.Error()
	}
	if err != nil {
		return err
	}
	os.Each(func(o kadm.ListedOffset) {
		if o.Offset >= 0 {
			starts[o.Partition] = max(starts[o.Partition], o.Offset)
		}
	})
	return nil
}

// TopicOffsets are each partition of topic's start and end offsets.
func TopicOffsets(ctx context.Context, adm *kadm.Client, topic string) (starts, ends map[int32]int64, err error) {
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
