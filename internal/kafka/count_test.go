package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestCountRecords: the records a topic holds, in all and since a time,
// read from offsets: records stamped an hour ago count in the total only,
// those stamped now in both, on every partition, an empty one included; a
// missing topic is an error naming it.
func TestCountRecords(t *testing.T) {
	c := testsupport.KafkaCluster(t, 3, "dlq")
	cl := testsupport.KafkaClient(t, kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, now := time.Now().Add(-time.Hour), time.Now()
	var recs []*kgo.Record
	for i := range 7 { // partition 2 stays empty
		recs = append(recs, &kgo.Record{Topic: "dlq", Partition: int32(i % 2), Timestamp: old})
	}
	for i := range 4 {
		recs = append(recs, &kgo.Record{Topic: "dlq", Partition: int32(i % 2), Timestamp: now})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, err := CountRecords(ctx, adm, "dlq", now.Add(-time.Minute))
	if err != nil || got != (RecordCount{Total: 11, Since: 4}) {
		t.Errorf("count = %+v (%v), want 11 in all, 4 in the last minute", got, err)
	}
	got, err = CountRecords(ctx, adm, "dlq", now.Add(time.Minute))
	if err != nil || got != (RecordCount{Total: 11, Since: 0}) {
		t.Errorf("count since a minute ahead = %+v (%v), want 11 in all, none since", got, err)
	}
	if _, err := CountRecords(ctx, adm, "nowhere", now); err == nil || !strings.Contains(err.Error(), "topic nowhere") {
		t.Errorf("missing topic: %v, want an error naming it", err)
	}
}
