package records

import (
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestDeadLetterFitsEverything(t *testing.T) {
	const limit = 4096
	huge := make([]byte, 10_000)
	cases := map[string]*kgo.Record{
		"small":        {Topic: "in", Key: []byte("k"), Value: []byte("v")},
		"large value":  {Topic: "in", Value: huge},
		"large header": {Topic: "in", Value: huge, Headers: []kgo.RecordHeader{{Key: "x", Value: huge}}},
		"large key":    {Topic: "in", Key: huge, Value: huge, Headers: []kgo.RecordHeader{{Key: "x", Value: huge}}},
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			d := DeadLetter("dlq", rec, "why", limit)
			if n := kafka.RecordSize(d); n > limit {
				t.Errorf("copy of %d bytes over %d", n, limit)
			}
			if Header(d, wire.HeaderReason) != "why" || Header(d, HeaderOriginalSize) != strconv.Itoa(len(rec.Value)) {
				t.Errorf("headers lost: %v", d.Headers)
			}
			truncated := Header(d, HeaderTruncated) != ""
			if want := name != "small"; truncated != want {
				t.Errorf("truncated %v, want %v", truncated, want)
			}
		})
	}
}
