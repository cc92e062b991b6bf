package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// produceTo writes records with ids prefix0..prefix(n-1) to partition p of
// the edge topic, through a client that keeps the partition it is given.
func (e *env) produceTo(t *testing.T, p int32, n int, prefix string) {
	t.Helper()
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(e.p.Kafka.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := range n {
		m := wire.Message{ID: fmt.Sprintf("%s%d", prefix, i), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, byte(i)}}}
		rec, err := records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		rec.Partition = p
		recs = append(recs, rec)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committed is the group's committed offset on each partition of the
// edge topic, with its leader epoch; a partition without a commit is
// missing.
func (e *env) committed(t *testing.T) map[int32]kadm.Offset {
	t.Helper()
	offs, err := kadm.NewClient(e.cl).FetchOffsets(context.Background(), e.p.ConsumerGroup("edge"))
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil // nothing committed yet
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]kadm.Offset{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "t.edge.in" && o.Err == nil {
			out[o.Partition] = o.Offset
		}
	})
	return out
}

// TestCommitCarriesLeaderEpoch: the offset committed past a record carries
// that record's leader epoch, so that the broker can fence it.
func TestCommitCarriesLeaderEpoch(t *testing.T) {
	e, cluster := setupCluster(t)
	e.produceTo(t, 0, 3, "a")
	// A new leader (the same broker, elected again): epoch 1.
	if err := cluster.MoveTopicPartition("t.edge.in", 0, cluster.LeaderFor("t.edge.in", 0)); err != nil {
		t.Fatal(err)
	}
	e.produceTo(t, 0, 3, "b")
	rep := newFakeReplica(t, nil)
	e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "partition 0 committed to its end", func() bool { return e.committed(t)[0].At == 6 })
	if got := e.committed(t)[0].LeaderEpoch; got != 1 {
		t.Errorf("commit at 6 carries leader epoch %d, want 1 (that of offset 5)", got)
	}
}

// TestStuckPartitionPausesAlone: a record whose call never finishes holds
// its own partition at its share of max_pending_records; the other
// partitions' records keep being processed and committed, and the window
// never passes the limit. Once the record finishes, its partition catches
// up.
func TestStuckPartitionPausesAlone(t *testing.T) {
	e := setup(t)
	const limit = 24 // 3 partitions: a share of 8
	e.p.Tiers[0].Connector.MaxPendingRecords = limit
	e.p.Tiers[0].Connector.MaxBatch = 4
	e.p.Tiers[0].Connector.MaxAttempts = 1000
	release := make(chan struct{})
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		for _, m := range msgs {
			if m.ID == "stuck0" {
				<-release // the call times out; its retries hang again
			}
		}
		return 200, ""
	})
	var once sync.Once
	unstick := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstick) // before the replica's server closes
	e.produceTo(t, 0, 1, "stuck")
	c, _, _ := e.start(t, rep)
	testsupport.WaitFor(t, 15*time.Second, "the stuck record in flight", func() bool { return c.offsets.PendingIn(TopicPartition{"t.edge.in", 0}) == 1 })
	const n = 100
	e.produceTo(t, 0, n, "p0-")
	e.produceTo(t, 1, n, "p1-")
	e.produceTo(t, 2, n, "p2-")

	peak, peak0 := 0, 0
	testsupport.WaitFor(t, 15*time.Second, "partitions 1 and 2 processed and committed", func() bool {
		peak = max(peak, c.offsets.Window())
		peak0 = max(peak0, c.offsets.Windows()[TopicPartition{"t.edge.in", 0}])
		got := e.committed(t)
		return got[1].At == n && got[2].At == n
	})
	if miss := append(missing(rep.ids(), "p1-", n), missing(rep.ids(), "p2-", n)...); len(miss) > 0 {
		t.Errorf("partitions 1 and 2 committed, but not delivered: %v", miss)
	}
	share := (limit + 2) / 3
	if peak > limit || peak0 > share {
		t.Errorf("window peaked at %d records (limit %d), partition 0's at %d (share %d)", peak, limit, peak0, share)
	}
	if got := len(rep.ids()) - 2*n; got >= share {
		t.Errorf("%d records of the stuck partition delivered, want fewer than its share %d", got, share)
	}
	if got := e.committed(t)[0]; got.At > 0 {
		t.Errorf("partition 0 committed at %d past its stuck first record", got.At)
	}
	t.Logf("while stuck: window peak %d (limit %d), stuck partition's %d (share %d)", peak, limit, peak0, share)

	unstick()
	testsupport.WaitFor(t, 15*time.Second, "every record delivered and committed once unstuck", func() bool {
		return len(missing(rep.ids(), "p0-", n)) == 0 && e.committed(t)[0].At == n+1
	})
}
