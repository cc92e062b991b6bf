package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// PartitionLag is where a consumer group stands on one partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	// Start and End are the partition's log start and end offsets.
	Start, End int64
	// Committed is the group's committed offset; -1 when it has none.
	Committed int64
	// Consumed is where the group's next fetch starts: its commit, or
	// the log start without one or below it (GroupConsumerOptions resets
	// to the start).
	Consumed int64
	// Lag is the records from Consumed to End.
	Lag int64
}

// GroupLag is a consumer group's lag over its topics.
type GroupLag struct {
	// Partitions are every partition of the topics, whether the group
	// committed, or has a member assigned, or not.
	Partitions []PartitionLag
	// Lag, End and Consumed are the partitions' sums.
	Lag, End, Consumed int64
}

// Lag reads group's lag on every partition of topics. A partition the
// group never committed counts from its log start, as its consumer
// (GroupConsumerOptions) starts there; so does one whose commit fell
// below the log start. Unlike kadm's Lag, it counts partitions that no
// member holds and the group never committed, as those of a group whose
// members left or have not joined yet. A group that does not exist has
// committed nothing.
func Lag(ctx context.Context, adm *kadm.Client, group string, topics ...string) (GroupLag, error) {
	if len(topics) == 0 {
		return GroupLag{}, fmt.Errorf("group %s: lag of no topic", group)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return GroupLag{}, fmt.Errorf("start offsets of %v: %w", topics, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return GroupLag{}, fmt.Errorf("end offsets of %v: %w", topics, err)
	}
	commits, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return GroupLag{}, fmt.Errorf("group %s: committed offsets: %w", group, err)
	}
	var (
		g    GroupLag
		errs []error
	)
	for _, end := range ends.Offsets().Sorted() {
		p := PartitionLag{Topic: end.Topic, Partition: end.Partition, End: end.At, Committed: -1}
		if st, ok := starts.Lookup(end.Topic, end.Partition); ok {
			p.Start = st.Offset
		}
		if c, ok := commits.Lookup(end.Topic, end.Partition); ok {
			if c.Err != nil {
				errs = append(errs, fmt.Errorf("group %s: %s[%d]: %w", group, end.Topic, end.Partition, c.Err))
				continue
			}
			if c.At >= 0 {
				p.Committed = c.At
			}
		}
		p.Consumed = max(p.Start, p.Committed)
		p.Lag = max(p.End-p.Consumed, 0)
		g.Partitions = append(g.Partitions, p)
		g.Lag += p.Lag
		g.End += p.End
		g.Consumed += p.Consumed
	}
	if err := errors.Join(errs...); err != nil {
		return GroupLag{}, err
	}
	return g, nil
}

// AwaitPassed waits until group has consumed topic past where its end
// was when called: every record written to topic before the call is
// processed and committed. It reads the lag every interval; ctx bounds
// it.
func AwaitPassed(ctx context.Context, adm *kadm.Client, group, topic string, interval time.Duration) error {
	mark, err := Lag(ctx, adm, group, topic)
	if err != nil {
		return err
	}
	for {
		now, err := Lag(ctx, adm, group, topic)
		if err != nil {
			return err
		}
		if passed(mark, now) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %s on %s: %d records before the mark not yet processed: %w", group, topic, behind(mark, now), ctx.Err())
		case <-time.After(interval):
		}
	}
}

// passed reports whether every partition of now was consumed up to its
// end in mark.
func passed(mark, now GroupLag) bool { return behind(mark, now) == 0 }

// behind counts the records of mark's partitions below their end in mark
// that now has not consumed.
func behind(mark, now GroupLag) int64 {
	var n int64
	for _, m := range mark.Partitions {
		consumed := int64(-1)
		for _, p := range now.Partitions {
			if p.Topic == m.Topic && p.Partition == m.Partition {
				consumed = p.Consumed
			}
		}
		if consumed < 0 {
			consumed = m.Consumed
		}
		if d := m.End - consumed; d > 0 {
			n += d
		}
	}
	return n
}
