package connector

import (
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// forwardChain is the way of one forwarded tensor from a tier's model
// output (out) to the next tier's input record, as the function answers
// it and the connector writes it; spliced says whether the connector
// splices the tensor's bytes or decodes and encodes them again (as it
// does for a JSON answer).
func forwardChain(tb testing.TB, out []float32, spliced bool) {
	m := wire.Message{ID: "m1", Device: "cam", SentAt: time.Unix(1, 0), Hops: []wire.Hop{{Tier: "edge", At: time.Unix(2, 0)}}, Route: "fog"}
	dest := records.Destination{Topic: "t.fog.in"}
	// The function: the model's output, written into the answer.
	fw := wire.Float32TensorOf([]int{len(out)}, out)
	answer, err := wire.AppendDecisions(nil, wire.Binary, []wire.Decision{{ID: "m1", Tier: "edge", Confidence: 0.5, Forward: &fw}})
	if err != nil {
		tb.Fatal(err)
	}
	// The connector: the answer read, the next tier's record built.
	if spliced {
		_, fwds, err := wire.DecodeDecisionsSpliced(answer)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := records.Forward(dest, &m, fwds[0]); err != nil {
			tb.Fatal(err)
		}
		return
	}
	ds, err := wire.DecodeDecisions(wire.Binary, answer)
	if err != nil {
		tb.Fatal(err)
	}
	m.Tensor = *ds[0].Forward
	if _, err := records.Message(dest, wire.Binary, &m); err != nil {
		tb.Fatal(err)
	}
}

// TestForwardSplicedAllocations: splicing a forwarded tensor saves the
// decoded copy of its data and its shape.
func TestForwardSplicedAllocations(t *testing.T) {
	out := make([]float32, 1024)
	spliced := testing.AllocsPerRun(100, func() { forwardChain(t, out, true) })
	decoded := testing.AllocsPerRun(100, func() { forwardChain(t, out, false) })
	t.Logf("allocations per forwarded tensor, model output to record: %v spliced, %v decoded", spliced, decoded)
	if spliced >= decoded {
		t.Errorf("spliced %v allocations, decoded %v: splicing saves nothing", spliced, decoded)
	}
}

// BenchmarkForwardedTensor: one forwarded tensor of 1,024 float32s from
// the model's output to the next tier's record.
func BenchmarkForwardedTensor(b *testing.B) {
	out := make([]float32, 1024)
	for _, tc := range []struct {
		name    string
		spliced bool
	}{{"spliced", true}, {"decoded", false}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				forwardChain(b, out, tc.spliced)
			}
		})
	}
}
