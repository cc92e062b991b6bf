package wire_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// The fuzz tests check that decoders never panic and that whatever they
// accept re-encodes to something that decodes to the same value. More seeds
// live in testdata/fuzz/<FuzzName>/.

func FuzzDecodeMessagesBinary(f *testing.F) {
	addSeeds(f, func(msgs []wire.Message) ([]byte, error) {
		return wire.AppendMessages(nil, wire.Binary, msgs)
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := wire.DecodeMessages(wire.Binary, b)
		if err != nil {
			return
		}
		checkMessagesRoundTrip(t, wire.Binary, msgs)
		// Apart from non-finite float32 data, JSON accepts what binary does.
		for _, m := range msgs {
			if m.Tensor.Validate() != nil {
				return
			}
		}
		checkMessagesRoundTrip(t, wire.JSON, msgs)
	})
}

func FuzzDecodeMessagesJSON(f *testing.F) {
	addSeeds(f, func(msgs []wire.Message) ([]byte, error) {
		return wire.AppendMessages(nil, wire.JSON, msgs)
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := wire.DecodeMessages(wire.JSON, b)
		if err != nil {
			return
		}
		checkMessagesRoundTrip(t, wire.JSON, msgs)
		checkMessagesRoundTrip(t, wire.Binary, msgs)
		checkLikeEncodingJSON(t, b, msgs)
	})
}

// checkLikeEncodingJSON checks that b, which DecodeMessages accepted, is
// valid JSON whose strings encoding/json reads the same way.
func checkLikeEncodingJSON(t *testing.T, b []byte, msgs []wire.Message) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("DecodeMessages accepted invalid JSON %q", b)
	}
	type hop struct{ Tier string }
	var ref struct {
		Messages []struct {
			ID, Device, Route string
			Hops              []hop
		}
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("encoding/json rejects %q: %v", b, err)
	}
	if len(ref.Messages) != len(msgs) {
		t.Fatalf("encoding/json reads %d messages, DecodeMessages %d", len(ref.Messages), len(msgs))
	}
	for i, m := range msgs {
		r := ref.Messages[i]
		var hops []hop
		for _, h := range m.Hops {
			hops = append(hops, hop{h.Tier})
		}
		if r.ID != m.ID || r.Device != m.Device || r.Route != m.Route || !slices.Equal(r.Hops, hops) {
			t.Fatalf("message %d: encoding/json reads %+v, DecodeMessages %+v", i, r, m)
		}
	}
}

func FuzzDecodeMessageBinary(f *testing.F) {
	for _, m := range slicesOf(roundTripMessages()) {
		b, err := wire.AppendMessage(nil, wire.Binary, &m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := wire.DecodeMessage(wire.Binary, b)
		if err != nil {
			return
		}
		b2, err := wire.AppendMessage(nil, wire.Binary, &m)
		if err != nil {
			t.Fatalf("AppendMessage of a decoded message: %v", err)
		}
		m2, err := wire.DecodeMessage(wire.Binary, b2)
		if err != nil {
			t.Fatalf("DecodeMessage of a re-encoded message: %v", err)
		}
		checkEqual(t, "message after a round trip", m2, m)
	})
}

func FuzzDecodeDecisionsBinary(f *testing.F) {
	ds := slicesOf(roundTripDecisions())
	for i := range ds {
		b, err := wire.AppendDecisions(nil, wire.Binary, ds[i:i+1])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, err := wire.AppendDecisions(nil, wire.Binary, ds)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := wire.DecodeDecisions(wire.Binary, b)
		if err != nil {
			return
		}
		checkDecisionsRoundTripFuzz(t, wire.Binary, ds)
		for _, d := range ds {
			if d.Forward != nil && d.Forward.Validate() != nil {
				return
			}
		}
		checkDecisionsRoundTripFuzz(t, wire.JSON, ds)
	})
}

func addSeeds(f *testing.F, encode func([]wire.Message) ([]byte, error)) {
	msgs := slicesOf(roundTripMessages())
	for i := range msgs {
		b, err := encode(msgs[i : i+1])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, batch := range [][]wire.Message{nil, msgs} {
		b, err := encode(batch)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func checkMessagesRoundTrip(t *testing.T, enc wire.Encoding, msgs []wire.Message) {
	t.Helper()
	b, err := wire.AppendMessages(nil, enc, msgs)
	if err != nil {
		t.Fatalf("%v: AppendMessages of decoded messages: %v", enc, err)
	}
	got, err := wire.DecodeMessages(enc, b)
	if err != nil {
		t.Fatalf("%v: DecodeMessages of re-encoded messages: %v\n%s", enc, err, dump(b))
	}
	checkEqual(t, enc.String()+": messages after a round trip", got, msgs)
}

func checkDecisionsRoundTripFuzz(t *testing.T, enc wire.Encoding, ds []wire.Decision) {
	t.Helper()
	b, err := wire.AppendDecisions(nil, enc, ds)
	if err != nil {
		t.Fatalf("%v: AppendDecisions of decoded decisions: %v", enc, err)
	}
	got, err := wire.DecodeDecisions(enc, b)
	if err != nil {
		t.Fatalf("%v: DecodeDecisions of re-encoded decisions: %v\n%s", enc, err, dump(b))
	}
	checkEqual(t, enc.String()+": decisions after a round trip", got, ds)
}
