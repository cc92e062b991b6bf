package up

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// backlogBroker is an in-memory broker with n records on each of the
// given topics, spread over partitions 0 and 1 (testsupport.Fill).
func backlogBroker(t *testing.T, partitions int32, n int, topics ...string) (*kafka.Broker, *kadm.Client) {
	t.Helper()
	b, err := kafka.StartBroker("127.0.0.1:0", partitions, topics, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, testsupport.Fill(t, b.Addr(), n, topics...)
}

// TestReportBacklogSaysWhatBecomesOfThem: the stop report promises
// processing at the next start only when the broker keeps the records.
func TestReportBacklogSaysWhatBecomesOfThem(t *testing.T) {
	p := &pipeline.Pipeline{Name: "bk", Tiers: []pipeline.Tier{{Name: "edge"}, {Name: "fog"}}}
	b, adm := backlogBroker(t, 2, 3, p.InputTopic("fog"), p.InputTopic("edge"))
	for _, tc := range []struct {
		name    string
		broker  *kafka.Broker
		dataDir string
		when    string
		want    []string
		notWant string
	}{
		{
			name: "durable embedded broker", broker: b, dataDir: "/d",
			want: []string{
				`level=INFO msg="accepted messages not processed yet; they will be processed at the next start" component=up tier=edge unprocessed=3 data_dir=/d`,
				`tier=fog unprocessed=3`,
			},
		},
		{
			name: "ephemeral embedded broker", broker: b,
			want: []string{
				`level=WARN msg="accepted messages not processed; they are lost: the embedded broker kept them in memory (--ephemeral)" component=up tier=edge unprocessed=3`,
			},
			notWant: "next start",
		},
		{
			name: "real Kafka",
			want: []string{
				`msg="accepted messages not processed yet; they stay in Kafka and will be processed at the next start" component=up tier=fog unprocessed=3`,
			},
		},
		{
			name: "at start", broker: b, dataDir: "/d", when: "left from the last run; processing them now",
			want: []string{`msg="accepted messages left from the last run; processing them now" component=up tier=edge unprocessed=3`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out testsupport.Buffer
			p := *p
			s := &Supervisor{p: &p, tiers: p.Tiers, broker: tc.broker, dataDir: tc.dataDir,
				log: slog.New(slog.NewTextHandler(&out, nil)).With("component", "up")}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.reportBacklog(ctx, adm, tc.when)
			got := out.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("log lacks %q:\n%s", w, got)
				}
			}
			if tc.notWant != "" && strings.Contains(got, tc.notWant) {
				t.Errorf("log says %q:\n%s", tc.notWant, got)
			}
		})
	}
}
