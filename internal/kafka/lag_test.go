package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// lagBroker is an in-memory broker whose topic "in" has partitions 0 and 1
// with 5 records each and partition 2 with none.
func lagBroker(t *testing.T) *kadm.Client {
	t.Helper()
	b, err := StartBroker("127.0.0.1:0", 3, []string{"in"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return testsupport.Fill(t, b.Addr(), 10, "in")
}

func TestLag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		commits map[int32]int64 // partition -> committed offset
		trimTo  int64           // records deleted below this offset of partition 1
		want    [3]int64        // lag of partitions 0, 1, 2
	}{
		{name: "group never committed: every record", want: [3]int64{5, 5, 0}},
		{name: "one partition committed: the other counts in full", commits: map[int32]int64{0: 3}, want: [3]int64{2, 5, 0}},
		{name: "every partition committed to the end", commits: map[int32]int64{0: 5, 1: 5, 2: 0}, want: [3]int64{0, 0, 0}},
		{name: "never committed, start moved by retention", trimTo: 4, want: [3]int64{5, 1, 0}},
		{name: "commit below the log start counts from the start", commits: map[int32]int64{1: 1}, trimTo: 4, want: [3]int64{5, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adm := lagBroker(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.trimTo > 0 {
				del := kadm.Offsets{}
				del.Add(kadm.Offset{Topic: "in", Partition: 1, At: tc.trimTo})
				if _, err := adm.DeleteRecords(ctx, del); err != nil {
					t.Fatal(err)
				}
			}
			if len(tc.commits) > 0 {
				offs := kadm.Offsets{}
				for p, at := range tc.commits {
					offs.Add(kadm.Offset{Topic: "in", Partition: p, At: at, LeaderEpoch: -1})
				}
				if err := adm.CommitAllOffsets(ctx, "g", offs); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Lag(ctx, adm, "g", "in")
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Partitions) != 3 {
				t.Fatalf("%d partitions, want 3: %+v", len(got.Partitions), got.Partitions)
			}
			var lag, end, consumed int64
			for i, p := range got.Partitions {
				if p.Partition != int32(i) || p.Lag != tc.want[i] {
					t.Errorf("partition %d: %+v, want lag %d", i, p, tc.want[i])
				}
				if c, ok := tc.commits[p.Partition]; ok != (p.Committed >= 0) || ok && c != p.Committed {
					t.Errorf("partition %d: committed %d, want %d (committed: %t)", i, p.Committed, c, ok)
				}
				if p.Consumed+p.Lag != p.End || p.Consumed < p.Start {
					t.Errorf("partition %d: %+v: consumed and lag do not add up to the end from the start", i, p)
				}
				lag, end, consumed = lag+p.Lag, end+p.End, consumed+p.Consumed
			}
			if got.Lag != lag || got.End != end || got.Consumed != consumed {
				t.Errorf("sums %d, %d, %d; the partitions add up to %d, %d, %d", got.Lag, got.End, got.Consumed, lag, end, consumed)
			}
		})
	}
}

// A topic that does not exist is an error, not an empty lag.
func TestLagUnknownTopic(t *testing.T) {
	adm := lagBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := Lag(ctx, adm, "g", "missing"); err == nil {
		t.Errorf("Lag of a missing topic = %+v, want an error", got)
	}
}

// TestAwaitPassed: AwaitPassed returns once the group consumed what the
// topic held when it was called, and a ctx that ends first is an error
// that counts what is left; records written after the mark do not hold
// it (behind).
func TestAwaitPassed(t *testing.T) {
	adm := lagBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	commit := func(at0, at1 int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "in", Partition: 0, At: at0, LeaderEpoch: -1})
		offs.Add(kadm.Offset{Topic: "in", Partition: 1, At: at1, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, "g", offs); err != nil {
			t.Fatal(err)
		}
	}
	commit(2, 5)
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	err := AwaitPassed(short, adm, "g", "in", 10*time.Millisecond)
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "3 records before the mark not yet processed") {
		t.Fatalf("with 3 records left: %v, want an error counting them", err)
	}
	done := make(chan error, 1)
	go func() { done <- AwaitPassed(ctx, adm, "g", "in", 10*time.Millisecond) }()
	commit(5, 5)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mark := GroupLag{Partitions: []PartitionLag{{Topic: "in", Partition: 0, End: 10, Consumed: 4}, {Topic: "in", Partition: 1, End: 3, Consumed: 3}}}
	later := GroupLag{Partitions: []PartitionLag{{Topic: "in", Partition: 0, End: 50, Consumed: 10}, {Topic: "in", Partition: 1, End: 40, Consumed: 3}}}
	if n := behind(mark, later); n != 0 {
		t.Errorf("consumed to the mark with 77 records written since: %d behind, want 0", n)
	}
	later.Partitions[0].Consumed = 7
	if n := behind(mark, later); n != 3 {
		t.Errorf("3 short of the mark: %d behind", n)
	}
}
