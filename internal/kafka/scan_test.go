package kafka

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestScan: every record a topic holds when the scan begins is visited,
// in offset order per partition, empty partitions included; records
// produced during the scan are not waited for; a visit that says stop
// ends it; a missing topic is an error naming it.
func TestScan(t *testing.T) {
	b, err := StartBroker("127.0.0.1:0", 3, []string{"t", "empty"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := plainKafka(b.Addr())
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 25 { // partition 2 stays empty
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: int32(i % 2), Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	last := map[int32]int64{0: -1, 1: -1}
	n := 0
	err = Scan(ctx, &k, "t", func(r *kgo.Record) bool {
		if r.Offset <= last[r.Partition] {
			t.Errorf("partition %d: offset %d after %d", r.Partition, r.Offset, last[r.Partition])
		}
		last[r.Partition] = r.Offset
		if n++; n == 1 {
			// Produced during the scan: not waited for.
			cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: 2, Value: []byte("late")})
		}
		return true
	})
	if err != nil || n != 25 {
		t.Errorf("scan visited %d records (%v), want 25", n, err)
	}
	n = 0
	if err := Scan(ctx, &k, "t", func(*kgo.Record) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Errorf("a scan told to stop at 3 visited %d (%v)", n, err)
	}
	if err := Scan(ctx, &k, "empty", func(*kgo.Record) bool { t.Error("a record in an empty topic"); return true }); err != nil {
		t.Errorf("empty topic: %v", err)
	}
	if err := Scan(ctx, &k, "nowhere", func(*kgo.Record) bool { return true }); err == nil || !strings.Contains(err.Error(), "topic nowhere") {
		t.Errorf("missing topic: %v, want an error naming it", err)
	}
}

// TestScanSince: a scan since a time visits only the records written at
// or after it, on every partition; since after every record visits none.
func TestScanSince(t *testing.T) {
	b, err := StartBroker("127.0.0.1:0", 2, []string{"t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := plainKafka(b.Addr())
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cut := time.Now().Truncate(time.Millisecond)
	for i := range 20 {
		ts := cut.Add(-time.Hour)
		if i >= 12 {
			ts = cut.Add(time.Duration(i) * time.Millisecond)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: int32(i % 2), Timestamp: ts, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := ScanSince(ctx, &k, "t", cut, func(r *kgo.Record) bool { got = append(got, string(r.Value)); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Errorf("since the cut: visited %q, want the 8 records written after it", got)
	}
	for _, v := range got {
		if n, _ := strconv.Atoi(v); n < 12 {
			t.Errorf("visited record %s, written before the cut", v)
		}
	}
	n := 0
	if err := ScanSince(ctx, &k, "t", cut.Add(time.Hour), func(*kgo.Record) bool { n++; return true }); err != nil || n != 0 {
		t.Errorf("since after every record: visited %d (%v), want none", n, err)
	}
}
