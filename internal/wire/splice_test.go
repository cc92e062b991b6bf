package wire

import (
	"bytes"
	"fmt"
	"testing"
	"time"
	"unsafe"
)

func spliceBatch(t *testing.T) ([]byte, []Decision) {
	t.Helper()
	f32 := Float32Tensor([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	u8 := Tensor{DType: Uint8, Shape: []int{4}, Data: []byte{9, 8, 7, 6}}
	ds := []Decision{
		{ID: "a", Tier: "edge", Exit: true, Class: 1, Label: "x", Confidence: 0.9},
		{ID: "b", Tier: "edge", Confidence: 0.2, Forward: &f32},
		{ID: "c", Tier: "edge", Confidence: 0.3, Forward: &u8},
	}
	b, err := AppendDecisions(nil, Binary, ds)
	if err != nil {
		t.Fatal(err)
	}
	return b, ds
}

// TestSpliceMatchesDecoding: a forward tensor spliced from a decisions
// batch into a message envelope gives the bytes AppendMessage gives for
// the same message with the decoded tensor; the rest of each decision
// decodes as DecodeDecisions reads it.
func TestSpliceMatchesDecoding(t *testing.T) {
	b, _ := spliceBatch(t)
	want, err := DecodeDecisions(Binary, b)
	if err != nil {
		t.Fatal(err)
	}
	ds, fwds, err := DecodeDecisionsSpliced(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || fwds[0] != nil || fwds[1] == nil || fwds[2] == nil {
		t.Fatalf("decisions %+v, forwards %v", ds, fwds)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range ds {
		if ds[i].ID != want[i].ID || ds[i].Exit != want[i].Exit || ds[i].Label != want[i].Label || ds[i].Confidence != want[i].Confidence || ds[i].Forward != nil {
			t.Errorf("decision %d: %+v, want %+v without its forward", i, ds[i], want[i])
		}
		if fwds[i] == nil {
			continue
		}
		m := Message{ID: ds[i].ID, Device: "cam", Route: "fog", SentAt: at, Hops: []Hop{{Tier: "edge", At: at}}}
		got, err := AppendMessageSpliced([]byte("keep"), &m, fwds[i])
		if err != nil {
			t.Fatal(err)
		}
		m.Tensor = *want[i].Forward
		exp, err := AppendMessage([]byte("keep"), Binary, &m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, exp) {
			t.Errorf("decision %d: spliced\n%x\nwant\n%x", i, got, exp)
		}
	}
}

// TestSpliceRefusesWhatDecodingRefuses: every batch made by changing one
// byte of a valid one is refused by the spliced decoder exactly when
// DecodeDecisions refuses it, and so is every truncation.
func TestSpliceRefusesWhatDecodingRefuses(t *testing.T) {
	b, _ := spliceBatch(t)
	check := func(what string, in []byte) {
		_, err := DecodeDecisions(Binary, in)
		_, _, serr := DecodeDecisionsSpliced(in)
		if (err == nil) != (serr == nil) {
			t.Errorf("%s: DecodeDecisions %v, spliced %v", what, err, serr)
		}
	}
	for i := range b {
		for _, v := range []byte{0, 1, 2, 0x7f, 0x80, 0xff, b[i] + 1, b[i] - 1} {
			c := bytes.Clone(b)
			c[i] = v
			check(fmt.Sprintf("byte %d set to %#x", i, v), c)
		}
		check(fmt.Sprintf("cut to %d bytes", i), b[:i])
	}
}

// TestSpliceCopiesOnce: splicing a forward into a record allocates no
// more than encoding the message with its tensor at hand (the value), and
// Float32TensorOf does not copy the model's output.
func TestSpliceCopiesOnce(t *testing.T) {
	v := make([]float32, 1024)
	shape := []int{1024}
	if tn := Float32TensorOf(shape, v); &tn.Data[0] != (*byte)(unsafe.Pointer(&v[0])) {
		t.Error("Float32TensorOf copied the elements")
	}
	fw := Float32TensorOf(shape, v)
	b, err := AppendDecisions(nil, Binary, []Decision{{ID: "m", Tier: "edge", Forward: &fw}})
	if err != nil {
		t.Fatal(err)
	}
	_, fwds, err := DecodeDecisionsSpliced(b)
	if err != nil {
		t.Fatal(err)
	}
	m := Message{ID: "m", Route: "fog", Hops: []Hop{{Tier: "edge", At: time.Unix(1, 0)}}}
	spliced := testing.AllocsPerRun(100, func() {
		if _, err := AppendMessageSpliced(nil, &m, fwds[0]); err != nil {
			t.Fatal(err)
		}
	})
	// Encoding a message whose tensor is at hand: one allocation, the
	// value (more with the race detector).
	withTensor := m
	withTensor.Tensor = fw
	encoded := testing.AllocsPerRun(100, func() {
		if _, err := AppendMessage(nil, Binary, &withTensor); err != nil {
			t.Fatal(err)
		}
	})
	if spliced > encoded {
		t.Errorf("%v allocations to splice one forward, %v to encode the message with its tensor at hand", spliced, encoded)
	}
}
