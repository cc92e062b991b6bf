package connector

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// BenchmarkDecisionWrite: a batch of 64 answered decisions, half exits
// and half forwards of 64 float32s, read and turned into the records
// they become (the connector's part of the data path after a call).
func BenchmarkDecisionWrite(b *testing.B) {
	p, err := pipeline.Parse([]byte(testYAML))
	if err != nil {
		b.Fatal(err)
	}
	site, err := p.OnTierSite("edge")
	if err != nil {
		b.Fatal(err)
	}
	w := newDecisionWriter(site, "edge", 0)
	const n = 64
	batch := make([]item, n)
	ds := make([]wire.Decision, n)
	now := time.Now()
	for i := range batch {
		id := fmt.Sprintf("m%d", i)
		batch[i] = item{
			rec:     &kgo.Record{Topic: "t.edge.in", Offset: int64(i), Timestamp: now},
			msg:     wire.Message{ID: id, Device: "cam", SentAt: now},
			fetched: now,
		}
		ds[i] = wire.Decision{ID: id, Tier: "edge", Confidence: 0.4}
		if i%2 == 0 {
			ds[i].Exit, ds[i].Label = true, "a"
		} else {
			fw := wire.Float32Tensor([]int{64}, make([]float32, 64))
			ds[i].Forward = &fw
		}
	}
	answer, err := wire.AppendDecisions(nil, wire.Binary, ds)
	if err != nil {
		b.Fatal(err)
	}

	call := reply{body: answer, sent: now, took: time.Millisecond, replica: "127.0.0.1:9000", model: wire.ModelVersion{SHA: "0123456789ab", Version: "v2"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.write(batch, call); err != nil {
			b.Fatal(err)
		}
	}
}
