package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// RecordCount is how many records a topic holds.
type RecordCount struct {
	// Total is the records from each partition's log start to its end
	// (what retention kept).
	Total int64
	// Since is those whose timestamp is at or after the time asked for.
	Since int64
}

// CountRecords counts the records topic holds, in all and those stamped
// at or after since, from its offsets alone: it reads no record. A record
// stamped earlier than one before it on its partition (a producer's clock
// going back) counts as after since if one before it does.
func CountRecords(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (RecordCount, error) {
	starts, ends, err := TopicOffsets(ctx, adm, topic)
	if err != nil {
		return RecordCount{}, fmt.Errorf("topic %s: %w", topic, err)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return RecordCount{}, fmt.Errorf("topic %s: offsets after %s: %w", topic, since.UTC().Format(time.RFC3339), err)
	}
	var c RecordCount
	for p, end := range ends {
		start := starts[p]
		c.Total += max(end-start, 0)
		if o, ok := after.Lookup(topic, p); ok && o.Offset >= 0 {
			c.Since += max(end-max(o.Offset, start), 0)
		}
	}
	return c, nil
}
