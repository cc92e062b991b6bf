package wire_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// FuzzDecodeRecord feeds arbitrary record values, keys and an encoding
// header to the record decoder: no panic, and an accepted record re-encodes
// to the same message.
func FuzzDecodeRecord(f *testing.F) {
	m := wire.Message{ID: "a", Device: "d", SentAt: time.Unix(0, 5).UTC(), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{1, 2, 3, 4}}}
	for _, enc := range []wire.Encoding{wire.Binary, wire.JSON} {
		v, err := wire.AppendMessage(nil, enc, &m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte("k"), v, enc.String())
		f.Add([]byte(nil), v, "")
	}
	f.Add([]byte("raw"), []byte{9, 8, 7, 6}, "")
	f.Add([]byte(nil), []byte{9, 8, 7}, "raw")
	f.Add([]byte(nil), []byte(`{"tensor":{"dtype":"uint8","shape":[4],"data":[1,2,3,4]}}`), "")
	raw := &wire.RawInput{DType: wire.Uint8, Shape: []int{4}}
	f.Fuzz(func(t *testing.T, key, value []byte, enc string) {
		var hs []wire.Header
		if enc != "" {
			hs = append(hs, wire.Header{Key: wire.HeaderEncoding, Value: []byte(enc)})
		}
		got, err := wire.DecodeRecord(key, value, hs, raw, "fallback")
		if err != nil {
			return
		}
		if got.ID == "" {
			t.Fatal("accepted record without an id")
		}
		v, err := wire.AppendMessage(nil, wire.Binary, &got)
		if err != nil {
			return // e.g. an id that is not valid UTF-8 cannot be re-encoded
		}
		again, err := wire.DecodeRecord(nil, v, []wire.Header{{Key: wire.HeaderEncoding, Value: []byte("binary")}}, raw, "other")
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(got)) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", again, got)
		}
	})
}

func normalize(m wire.Message) wire.Message {
	if len(m.Hops) == 0 {
		m.Hops = nil
	}
	return m
}

// FuzzDecodeIngestJSON: the ingest decoder never panics, what it accepts
// has exactly the input's element count, encoding/json reads its strings
// the same way, and it re-encodes to the same message.
func FuzzDecodeIngestJSON(f *testing.F) {
	f.Add([]byte(`{"id":"a","device":"d","data":[0,1,255,3]}`))
	f.Add([]byte(`{"data":[1e2,2,3,4]}`))
	f.Add([]byte(`{"data":[1,2,3]}`))
	f.Add([]byte(`{"id":"\u00e9","sent_at":"2026-01-02T03:04:05.5+01:00","data":[0.5,-1,3e2,4]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dt := range []wire.DType{wire.Uint8, wire.Float32} {
			m, err := wire.DecodeIngestJSON(b, dt, []int{2, 2})
			if err != nil {
				continue
			}
			if m.Tensor.Len() != 4 || m.Tensor.DType != dt || len(m.Tensor.Data) != 4*dt.Size() {
				t.Fatalf("accepted tensor %+v", m.Tensor)
			}
			var ref struct{ ID, Device string }
			if err := json.Unmarshal(b, &ref); err != nil || ref.ID != m.ID || ref.Device != m.Device {
				t.Fatalf("encoding/json reads %+v (%v), DecodeIngestJSON %q, %q", ref, err, m.ID, m.Device)
			}
			out, err := wire.AppendIngestJSON(nil, &m)
			if err != nil {
				if m.Tensor.Validate() == nil {
					t.Fatalf("AppendIngestJSON of an accepted message: %v", err)
				}
				continue
			}
			again, err := wire.DecodeIngestJSON(out, dt, []int{2, 2})
			if err != nil {
				t.Fatalf("re-encoded %s does not decode: %v", out, err)
			}
			checkEqual(t, "ingest message after a round trip", again, m)
		}
	})
}

// FuzzDecodeResults: result batches never panic the decoder and accepted
// ones round-trip.
func FuzzDecodeResults(f *testing.F) {
	b, _ := wire.AppendResults(nil, []wire.Result{{ID: "a", Tier: "edge", Class: 3, Label: "Dress", Confidence: 0.9,
		SentAt: time.Unix(1, 0).UTC(), ExitedAt: time.Unix(2, 0).UTC(), Hops: []wire.Hop{{Tier: "edge", At: time.Unix(1, 5).UTC()}}}})
	f.Add(b)
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"id":1}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := wire.DecodeResults(b)
		if err != nil {
			return
		}
		// encoding/json, an independent decoder, reads the same results.
		var ref []wire.Result
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("encoding/json rejects accepted %q: %v", b, err)
		}
		if !reflect.DeepEqual(normalizeResults(ref), normalizeResults(rs)) {
			t.Fatalf("encoding/json reads %+v, DecodeResults %+v", ref, rs)
		}
		out, err := wire.AppendResults(nil, rs)
		if err != nil {
			return
		}
		again, err := wire.DecodeResults(out)
		if err != nil {
			t.Fatalf("re-encoded results do not decode: %v", err)
		}
		if len(again) != len(rs) {
			t.Fatalf("%d results became %d", len(rs), len(again))
		}
	})
}

// normalizeResults clears what the two decoders may leave differently
// without a difference in meaning: nil and empty hops.
func normalizeResults(rs []wire.Result) []wire.Result {
	out := make([]wire.Result, len(rs))
	for i, r := range rs {
		if len(r.Hops) == 0 {
			r.Hops = nil
		}
		out[i] = r
	}
	return out
}
