package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestMessagesRoundTrip(t *testing.T) {
	cases := roundTripMessages()
	var all []wire.Message
	for _, name := range sortedKeys(cases) {
		all = append(all, cases[name])
	}
	cases["whole batch"] = wire.Message{} // marker, handled below
	for _, enc := range encodings {
		for name, m := range cases {
			t.Run(enc.String()+"/"+name, func(t *testing.T) {
				batch := []wire.Message{m}
				if name == "whole batch" {
					batch = all
				}
				prefix := []byte("prefix")
				b, err := wire.AppendMessages(slices.Clip(prefix), enc, batch)
				if err != nil {
					t.Fatalf("AppendMessages: %v", err)
				}
				if !bytes.HasPrefix(b, prefix) {
					t.Fatalf("AppendMessages overwrote dst: %q", b[:len(prefix)])
				}
				got, err := wire.DecodeMessages(enc, b[len(prefix):])
				if err != nil {
					t.Fatalf("DecodeMessages: %v", err)
				}
				checkEqual(t, "DecodeMessages", got, batch)
				if enc == wire.JSON && !json.Valid(b[len(prefix):]) {
					t.Errorf("AppendMessages wrote invalid JSON: %s", b[len(prefix):])
				}

				// Decoded data must not alias the input.
				clear(b)
				checkEqual(t, "DecodeMessages after clearing the input", got, batch)

				if name == "whole batch" {
					return
				}
				b1, err := wire.AppendMessage(nil, enc, &m)
				if err != nil {
					t.Fatalf("AppendMessage: %v", err)
				}
				got1, err := wire.DecodeMessage(enc, b1)
				if err != nil {
					t.Fatalf("DecodeMessage: %v", err)
				}
				checkEqual(t, "DecodeMessage", got1, m)
			})
		}
	}
}

func TestDecisionsRoundTrip(t *testing.T) {
	cases := roundTripDecisions()
	var all []wire.Decision
	for _, name := range sortedKeys(cases) {
		all = append(all, cases[name])
	}
	for _, enc := range encodings {
		for name, d := range cases {
			t.Run(enc.String()+"/"+name, func(t *testing.T) {
				checkDecisionsRoundTrip(t, enc, []wire.Decision{d})
			})
		}
		t.Run(enc.String()+"/whole batch", func(t *testing.T) {
			checkDecisionsRoundTrip(t, enc, all)
		})
	}
}

func checkDecisionsRoundTrip(t *testing.T, enc wire.Encoding, ds []wire.Decision) {
	t.Helper()
	b, err := wire.AppendDecisions(nil, enc, ds)
	if err != nil {
		t.Fatalf("AppendDecisions: %v", err)
	}
	if enc == wire.JSON && !json.Valid(b) {
		t.Errorf("AppendDecisions wrote invalid JSON: %s", b)
	}
	got, err := wire.DecodeDecisions(enc, b)
	if err != nil {
		t.Fatalf("DecodeDecisions: %v", err)
	}
	checkEqual(t, "DecodeDecisions", got, ds)
	clear(b)
	checkEqual(t, "DecodeDecisions after clearing the input", got, ds)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestEmptyBatch(t *testing.T) {
	tests := []struct {
		name string
		enc  wire.Encoding
		in   string
	}{
		{"binary", wire.Binary, "DDN\x01M\x00"},
		{"json", wire.JSON, `{"messages":[]}`},
		{"json with spaces", wire.JSON, " {\n \"messages\" : [ ] }\n"},
		{"json without the field", wire.JSON, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeMessages(tt.enc, []byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeMessages: %v", err)
			}
			if len(got) != 0 {
				t.Errorf("DecodeMessages = %v, want no messages", got)
			}
		})
	}
	for _, enc := range encodings {
		b, err := wire.AppendMessages(nil, enc, nil)
		if err != nil {
			t.Fatalf("%v: AppendMessages(nil): %v", enc, err)
		}
		if got, err := wire.DecodeMessages(enc, b); err != nil || len(got) != 0 {
			t.Errorf("%v: DecodeMessages(%q) = %v, %v; want no messages", enc, b, got, err)
		}
		b, err = wire.AppendDecisions(nil, enc, nil)
		if err != nil {
			t.Fatalf("%v: AppendDecisions(nil): %v", enc, err)
		}
		if got, err := wire.DecodeDecisions(enc, b); err != nil || len(got) != 0 {
			t.Errorf("%v: DecodeDecisions(%q) = %v, %v; want no decisions", enc, b, got, err)
		}
	}
}

// The exact forms, as documentation and to catch accidental format changes.
func TestGolden(t *testing.T) {
	msg := wire.Message{
		ID: "a1", Device: "d7", SentAt: t0, Route: "fog",
		Hops:   []wire.Hop{{Tier: "edge", At: t0}},
		Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{1, 2, 2}, Data: []byte{0, 12, 255, 7}},
	}
	fwd := wire.Float32Tensor([]int{2}, []float32{0.5, -1e-7})
	decisions := []wire.Decision{
		{ID: "a1", Tier: "edge", Exit: true, Class: 3, Label: "Dress", Confidence: 0.97},
		{ID: "a2", Tier: "edge", Confidence: 0.41, Forward: &fwd},
	}
	nanos := sv(t0.UnixNano())
	tests := []struct {
		name string
		enc  func() ([]byte, error)
		want []byte
	}{
		{
			"json messages",
			func() ([]byte, error) { return wire.AppendMessages(nil, wire.JSON, []wire.Message{msg}) },
			[]byte(`{"messages":[{"id":"a1","device":"d7","sent_at":"2026-11-22T10:00:00.123456789Z","route":"fog",` +
				`"hops":[{"tier":"edge","at":"2026-11-22T10:00:00.123456789Z"}],` +
				`"tensor":{"dtype":"uint8","shape":[1,2,2],"data":[0,12,255,7]}}]}`),
		},
		{
			"json message",
			func() ([]byte, error) { return wire.AppendMessage(nil, wire.JSON, &wire.Message{Tensor: fwd}) },
			[]byte(`{"tensor":{"dtype":"float32","shape":[2],"data":[0.5,-1e-07]}}`),
		},
		{
			"json decisions",
			func() ([]byte, error) { return wire.AppendDecisions(nil, wire.JSON, decisions) },
			[]byte(`{"decisions":[{"id":"a1","tier":"edge","exit":true,"class":3,"label":"Dress","confidence":0.97},` +
				`{"id":"a2","tier":"edge","exit":false,"confidence":0.41,"forward":{"dtype":"float32","shape":[2],"data":[0.5,-1e-07]}}]}`),
		},
		{
			"binary messages",
			func() ([]byte, error) { return wire.AppendMessages(nil, wire.Binary, []wire.Message{msg}) },
			cat([]byte("DDN\x01M"), uv(1),
				str("a1"), str("d7"), str("fog"), nanos, uv(1), str("edge"), nanos,
				[]byte{2}, uv(3), uv(1), uv(2), uv(2), uv(4), []byte{0, 12, 255, 7}),
		},
		{
			"binary message",
			func() ([]byte, error) { return wire.AppendMessage(nil, wire.Binary, &wire.Message{Tensor: fwd}) },
			cat([]byte("DDN\x01m"), str(""), str(""), str(""), sv(0), uv(0),
				[]byte{1}, uv(1), uv(2), uv(8), fwd.Data),
		},
		{
			"binary decisions",
			func() ([]byte, error) { return wire.AppendDecisions(nil, wire.Binary, decisions) },
			cat([]byte("DDN\x01D"), uv(2),
				str("a1"), str("edge"), []byte{1}, sv(3), str("Dress"), binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.97)),
				str("a2"), str("edge"), []byte{2}, sv(0), str(""), binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.41)),
				[]byte{1}, uv(1), uv(2), uv(8), fwd.Data),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.enc()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", dump(got), dump(tt.want))
			}
		})
	}
}

func dump(b []byte) string {
	if json.Valid(b) {
		return string(b)
	}
	return hex.Dump(b)
}

// People type JSON by hand: any key order, spacing, time zones.
func TestDecodeHandWrittenJSON(t *testing.T) {
	in := `{ "messages": [
		{"tensor": {"data": [ 1 , 2,3 ], "shape": [3], "dtype": "uint8"},
		 "sent_at": "2026-11-22T12:00:00.123456789+02:00", "device": "d7"},
		{"tensor": {"shape": [2], "dtype": "float32", "data": [1E2, -0.0000015]}, "hops": null, "route": "cloud"}
	] }`
	want := []wire.Message{
		{Device: "d7", SentAt: t0, Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{3}, Data: []byte{1, 2, 3}}},
		{Route: "cloud", Tensor: wire.Float32Tensor([]int{2}, []float32{100, -0.0000015})},
	}
	got, err := wire.DecodeMessages(wire.JSON, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "DecodeMessages", got, want)
}

func TestDecodeMessagesJSONErrors(t *testing.T) {
	const u8 = `"tensor":{"dtype":"uint8","shape":[2],"data":[1,2]}`
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"empty input", ``, "empty input"},
		{"only spaces", "  \n", "empty input"},
		{"not an object", `[]`, `want an object at offset 0, got "[]"`},
		{"null", `null`, `want an object at offset 0, got "null"`},
		{"unknown top-level field", `{"msgs":[]}`, `unknown field "msgs" (want messages)`},
		{"duplicate field", `{"messages":[],"messages":[]}`, `duplicate field "messages"`},
		{"messages not an array", `{"messages":{}}`, `messages: want an array at offset 12, got an object`},
		{"unknown message field", `{"messages":[{"idd":"x",` + u8 + `}]}`, `message 0: unknown field "idd" (want id, device, sent_at, route, hops, tensor)`},
		{"unknown tensor field", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1],"data":[1],"scale":2}}]}`, `unknown field "scale"`},
		{"unknown hop field", `{"messages":[{"hops":[{"tier":"a","when":"x"}],` + u8 + `}]}`, `unknown field "when"`},
		{"second message at fault", `{"messages":[{` + u8 + `},{"id":7,` + u8 + `}]}`, "message 1: "},
		{"message null", `{"messages":[null]}`, "message 0: tensor: missing"},
		{"missing tensor", `{"messages":[{"id":"a"}]}`, "message 0: tensor: missing"},
		{"missing dtype", `{"messages":[{"tensor":{"shape":[1],"data":[1]}}]}`, "tensor: dtype: missing"},
		{"unknown dtype", `{"messages":[{"tensor":{"dtype":"float64","shape":[1],"data":[1]}}]}`, `tensor: dtype: unknown dtype "float64": want "float32" or "uint8"`},
		{"missing data", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1]}}]}`, "tensor: data: missing"},
		{"null data", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1],"data":null}}]}`, "tensor: data: missing"},
		{"missing shape", `{"messages":[{"tensor":{"dtype":"uint8","data":[1]}}]}`, "tensor: shape: missing"},
		{"rank 0", `{"messages":[{"tensor":{"dtype":"uint8","shape":[],"data":[1]}}]}`, "rank 0 is not in 1..8"},
		{"rank 9", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1,1,1,1,1,1,1,1,1],"data":[1]}}]}`, "tensor: shape: more than 8 dims"},
		{"dim 0", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1,0],"data":[]}}]}`, "dim 1 is 0, want >= 1"},
		{"negative dim", `{"messages":[{"tensor":{"dtype":"uint8","shape":[-1],"data":[1]}}]}`, "dim 0 is -1"},
		{"fractional dim", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1.5],"data":[1]}}]}`, `message 0: tensor: shape: dim 0: "1.5" is not an integer`},
		{"too many elements", `{"messages":[{"tensor":{"dtype":"uint8","shape":[4096,4096,2],"data":[1]}}]}`, "more than 16777216 elements"},
		{"too few elements", `{"messages":[{"tensor":{"dtype":"uint8","shape":[3],"data":[1,2]}}]}`, "data: has 2 elements, want 3"},
		{"no elements", `{"messages":[{"tensor":{"dtype":"uint8","shape":[3],"data":[]}}]}`, "data: has 0 elements, want 3"},
		{"too many data elements", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1],"data":[1,2]}}]}`, "data: more than 1 elements"},
		{"uint8 256", `{"messages":[{"tensor":{"dtype":"uint8","shape":[2],"data":[0,256]}}]}`, `element 1: "256" is not an integer in 0..255`},
		{"uint8 -1", `{"messages":[{"tensor":{"dtype":"uint8","shape":[2],"data":[-1,0]}}]}`, `element 0: "-1" is not an integer in 0..255`},
		{"uint8 1.5", `{"messages":[{"tensor":{"dtype":"uint8","shape":[2],"data":[0,1.5]}}]}`, `element 1: "1.5" is not an integer`},
		{"uint8 1e2", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1],"data":[1e2]}}]}`, `element 0: "1e2" is not an integer`},
		{"uint8 1000", `{"messages":[{"tensor":{"dtype":"uint8","shape":[1],"data":[1000]}}]}`, `"1000" is not an integer`},
		{"string element", `{"messages":[{"tensor":{"dtype":"uint8","shape":[2],"data":[1,"2"]}}]}`, `element 1: want a number at offset 62, got "\"2\"]"`},
		{"null element", `{"messages":[{"tensor":{"dtype":"float32","shape":[1],"data":[null]}}]}`, `element 0: want a number`},
		{"nested array", `{"messages":[{"tensor":{"dtype":"float32","shape":[1,2],"data":[[1,2]]}}]}`, `element 0: want a number`},
		{"float32 out of range", `{"messages":[{"tensor":{"dtype":"float32","shape":[2],"data":[1,-1e39]}}]}`, `element 1: "-1e39" is out of the float32 range`},
		{"bad time", `{"messages":[{"sent_at":"yesterday",` + u8 + `}]}`, "message 0: "},
		{"time out of range", `{"messages":[{"sent_at":"3000-01-01T00:00:00Z",` + u8 + `}]}`, "sent_at: time 3000-01-01T00:00:00Z is outside the years 1678..2262"},
		{"hop time out of range", `{"messages":[{"hops":[{"at":"1000-01-01T00:00:00Z"}],` + u8 + `}]}`, "hop 0: at: time"},
		{"truncated", `{"messages":[{` + u8, "message 0: input ends at offset 65: unexpected EOF"},
		{"truncated array", `{"messages":[`, "unexpected EOF"},
		{"unclosed object", `{"messages":[]`, "EOF"},
		{"trailing garbage", `{"messages":[]} x`, "trailing data at offset"},
		{"second object", `{"messages":[]}{"messages":[]}`, "trailing data"},
		{"syntax error", `{"messages":[{"id" "a"}]}`, `message 0: id: invalid character '"' after object name (expecting ':') at offset 19`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeMessages(wire.JSON, []byte(tt.in))
			checkErr(t, got, err, tt.want)
		})
	}
}

func TestDecodeMessagesBinaryErrors(t *testing.T) {
	valid := cat(msgsHeader, uv(1), msgItem(u8Tensor(1, 2, 3, 4)))
	tensor := func(dtype byte, rank uint64, rest ...[]byte) []byte {
		return cat(msgsHeader, uv(1), msgItem(cat([]byte{dtype}, uv(rank), cat(rest...))))
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty input", nil, "header needs 5 bytes, 0 remain: unexpected EOF"},
		{"short header", []byte("DDN\x01"), "header needs 5 bytes, 4 remain"},
		{"bad magic", cat([]byte("XDN\x01M"), uv(0)), `bad magic "XDN", want "DDN"`},
		{"json given to the binary decoder", []byte(`{"messages":[]}`), `bad magic "{\"m"`},
		{"bad version", cat([]byte("DDN\x02M"), uv(0)), "unsupported binary version 2 (this build reads version 1)"},
		{"decision batch", cat(decsHeader, uv(0)), "kind 'D' (decision batch), want 'M' (message batch)"},
		{"single message", cat(msgHeader, msgItem(u8Tensor(1))), "kind 'm' (single message), want 'M'"},
		{"unknown kind", cat([]byte("DDN\x01X"), uv(0)), "kind 0x58"},
		{"missing count", msgsHeader, "message count: unexpected EOF"},
		{"huge count", cat(msgsHeader, uv(1<<62), msgItem(u8Tensor(1))), "message count 4611686018427387904 is more than the 11 remaining bytes can hold"},
		{"count too large for input", cat(msgsHeader, uv(2), msgItem(u8Tensor(1))), "message count 2 is more than"},
		{"count overflows", cat(msgsHeader, bytes.Repeat([]byte{0xff}, 10), []byte{1}), "message count: varint overflows 64 bits"},
		{"truncated", valid[:len(valid)-1], "message 0: tensor: data needs 4 bytes, 3 remain: unexpected EOF"},
		{"trailing byte", cat(valid, []byte{0}), "after 1 messages: 1 trailing bytes"},
		{"huge string length", cat(msgsHeader, uv(1), uv(1<<40), bytes.Repeat([]byte{0}, 16)), "message 0: id needs"},
		{"invalid UTF-8 id", cat(msgsHeader, uv(1), str("\xff"), str(""), str(""), sv(0), uv(0), u8Tensor(1)), "message 0: id: invalid UTF-8"},
		{"huge hop count", cat(msgsHeader, uv(1), str(""), str(""), str(""), sv(0), uv(1<<40), u8Tensor(1)), "message 0: hop count 1099511627776 is more than"},
		{"invalid UTF-8 tier", cat(msgsHeader, uv(1), str(""), str(""), str(""), sv(0), uv(1), str("\xc3"), sv(0), u8Tensor(1)), "message 0: hop 0: tier: invalid UTF-8"},
		{"unknown dtype", tensor(3, 1, uv(1), uv(1), []byte{0}), "message 0: tensor: unknown dtype 3"},
		{"invalid dtype", tensor(0, 1, uv(1), uv(1), []byte{0}), "tensor: unknown dtype 0"},
		{"rank 0", tensor(2, 0, uv(1), []byte{0}), "tensor: rank 0 is not in 1..8"},
		{"rank 9", tensor(2, 9, bytes.Repeat(uv(1), 9), uv(1), []byte{0}), "tensor: rank 9 is not in 1..8"},
		{"dim 0", tensor(2, 2, uv(1), uv(0), uv(0)), "tensor: dim 1 is 0, want 1..16777216"},
		{"huge dim", tensor(2, 1, uv(1<<30), uv(1<<30)), "tensor: dim 0 is 1073741824"},
		{"too many elements", tensor(2, 3, uv(4096), uv(4096), uv(2), uv(1<<25)), "more than 16777216 elements"},
		{"data longer than shape", tensor(2, 1, uv(3), uv(4), []byte{1, 2, 3, 4}), "tensor: data is 4 bytes, want 3 for shape [3] uint8"},
		{"data shorter than shape", tensor(1, 1, uv(3), uv(3), []byte{1, 2, 3}), "tensor: data is 3 bytes, want 12 for shape [3] float32"},
		{"huge data", tensor(1, 2, uv(1<<12), uv(1<<12), uv(1<<26), []byte{1, 2, 3}), "tensor: data needs 67108864 bytes, 3 remain"},
		{"data length overflows", tensor(2, 1, uv(1), bytes.Repeat([]byte{0x80}, 10), []byte{1}), "tensor: data length: varint overflows 64 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeMessages(wire.Binary, tt.in)
			checkErr(t, got, err, tt.want)
		})
	}
}

func TestDecodeMessageErrors(t *testing.T) {
	valid, err := wire.AppendMessage(nil, wire.Binary, &wire.Message{ID: "a", Tensor: uint8Tensor(1, 4)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		enc  wire.Encoding
		in   []byte
		want string
	}{
		{"binary batch", wire.Binary, cat(msgsHeader, uv(1), msgItem(u8Tensor(1))), "message: kind 'M' (message batch), want 'm' (single message)"},
		{"binary trailing", wire.Binary, cat(valid, []byte{0}), "message: 1 trailing bytes"},
		{"binary truncated", wire.Binary, valid[:len(valid)-2], "unexpected EOF"},
		{"binary bad tensor", wire.Binary, cat(msgHeader, msgItem(cat([]byte{2}, uv(0)))), "message: tensor: rank 0"},
		{"json empty", wire.JSON, nil, "message: empty input"},
		{"json batch", wire.JSON, []byte(`{"messages":[]}`), `message: unknown field "messages" (want id, device, sent_at, route, hops, tensor)`},
		{"json trailing", wire.JSON, []byte(`{"tensor":{"dtype":"uint8","shape":[1],"data":[1]}} {}`), "message: trailing data"},
		{"json bad tensor", wire.JSON, []byte(`{"tensor":{"dtype":"uint8","shape":[1],"data":[300]}}`), `message: tensor: data: element 0: "300"`},
		{"unknown encoding", wire.Encoding(7), valid, "unknown encoding 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeMessage(tt.enc, tt.in)
			checkErr(t, got, err, tt.want)
		})
	}
}

func TestDecodeDecisionsErrors(t *testing.T) {
	fwd := u8Tensor(1, 2)
	tests := []struct {
		name string
		enc  wire.Encoding
		in   []byte
		want string
	}{
		{"binary message batch", wire.Binary, cat(msgsHeader, uv(0)), "kind 'M' (message batch), want 'D' (decision batch)"},
		{"binary huge count", wire.Binary, cat(decsHeader, uv(1<<50), decItem(0, 1)), "decision count 1125899906842624 is more than the 14 remaining bytes can hold"},
		{"binary unknown flags", wire.Binary, cat(decsHeader, uv(1), decItem(4, 1)), "decision 0: flags 0x04 has unknown bits"},
		{"binary exit with forward", wire.Binary, cat(decsHeader, uv(1), decItem(3, 1, fwd...)), "decision 0: exit decision has a forward tensor"},
		{"binary NaN confidence", wire.Binary, cat(decsHeader, uv(1), decItem(1, float32(math.NaN()))), "decision 0: confidence is NaN"},
		{"binary +Inf confidence", wire.Binary, cat(decsHeader, uv(1), decItem(1, float32(math.Inf(1)))), "decision 0: confidence is +Inf"},
		{"binary truncated confidence", wire.Binary, cat(decsHeader, uv(1), decItem(1, 1)[:13]), "decision 0: confidence needs 4 bytes, 3 remain"},
		{"binary missing forward", wire.Binary, cat(decsHeader, uv(1), decItem(2, 1)), "decision 0: forward: dtype needs 1 bytes, 0 remain"},
		{"binary bad forward", wire.Binary, cat(decsHeader, uv(1), decItem(2, 1, 2, 1, 0)), "decision 0: forward: dim 0 is 0"},
		{"binary trailing forward", wire.Binary, cat(decsHeader, uv(1), decItem(0, 1, fwd...)), "after 1 decisions: 6 trailing bytes"},
		{"json exit with forward", wire.JSON, []byte(`{"decisions":[{"exit":true,"forward":{"dtype":"uint8","shape":[1],"data":[1]}}]}`), "decision 0: exit decision has a forward tensor"},
		{"json unknown field", wire.JSON, []byte(`{"decisions":[{},{"score":1}]}`), `decision 1: unknown field "score" (want id, tier, exit, class, label, confidence, forward)`},
		{"json bad forward", wire.JSON, []byte(`{"decisions":[{"forward":{"dtype":"uint8","shape":[2],"data":[1]}}]}`), "decision 0: forward: data: has 1 elements, want 2"},
		{"json confidence out of range", wire.JSON, []byte(`{"decisions":[{"confidence":1e39}]}`), `decision 0: confidence: "1e39" is out of the float32 range`},
		{"json messages", wire.JSON, []byte(`{"messages":[]}`), `unknown field "messages" (want decisions)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeDecisions(tt.enc, tt.in)
			checkErr(t, got, err, tt.want)
		})
	}
}

func checkErr[T any](t *testing.T, got T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got %s, nil error; want error containing %q", describe(got), want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if !reflect.ValueOf(&got).Elem().IsZero() {
		t.Errorf("got %s with the error, want the zero value", describe(got))
	}
}

// Every proper prefix of a valid encoding is an error, never a panic.
func TestDecodeTruncated(t *testing.T) {
	msgs := slicesOf(roundTripMessages())
	ds := slicesOf(roundTripDecisions())
	for _, enc := range encodings {
		b, err := wire.AppendMessages(nil, enc, msgs)
		if err != nil {
			t.Fatal(err)
		}
		for n := range len(b) {
			if _, err := wire.DecodeMessages(enc, b[:n]); err == nil {
				t.Fatalf("%v: DecodeMessages of the first %d of %d bytes succeeded", enc, n, len(b))
			}
		}
		b, err = wire.AppendDecisions(nil, enc, ds)
		if err != nil {
			t.Fatal(err)
		}
		for n := range len(b) {
			if _, err := wire.DecodeDecisions(enc, b[:n]); err == nil {
				t.Fatalf("%v: DecodeDecisions of the first %d of %d bytes succeeded", enc, n, len(b))
			}
		}
		b, err = wire.AppendMessage(nil, enc, &msgs[0])
		if err != nil {
			t.Fatal(err)
		}
		for n := range len(b) {
			if _, err := wire.DecodeMessage(enc, b[:n]); err == nil {
				t.Fatalf("%v: DecodeMessage of the first %d of %d bytes succeeded", enc, n, len(b))
			}
		}
	}
}

func slicesOf[V any](m map[string]V) []V {
	var s []V
	for _, k := range sortedKeys(m) {
		s = append(s, m[k])
	}
	return s
}

// A tiny input declaring huge sizes must fail without allocating much.
// Not parallel, so that other tests do not disturb the measurement.
func TestDecodeHugeDeclaredSizes(t *testing.T) {
	tests := []struct {
		name   string
		decode func() error
	}{
		{"binary message count", func() error {
			_, err := wire.DecodeMessages(wire.Binary, cat(msgsHeader, uv(1<<40), bytes.Repeat([]byte{1}, 64)))
			return err
		}},
		{"binary decision count", func() error {
			_, err := wire.DecodeDecisions(wire.Binary, cat(decsHeader, uv(1<<40), bytes.Repeat([]byte{1}, 64)))
			return err
		}},
		{"binary hop count", func() error {
			_, err := wire.DecodeMessages(wire.Binary, cat(msgsHeader, uv(1), str(""), str(""), str(""), sv(0), uv(1<<40), bytes.Repeat([]byte{1}, 64)))
			return err
		}},
		{"binary string length", func() error {
			_, err := wire.DecodeMessages(wire.Binary, cat(msgsHeader, uv(1), uv(1<<40), bytes.Repeat([]byte{1}, 64)))
			return err
		}},
		{"binary data length", func() error {
			_, err := wire.DecodeMessages(wire.Binary, cat(msgsHeader, uv(1), msgItem(cat([]byte{1}, uv(2), uv(1<<11), uv(1<<11), uv(1<<24), []byte{1, 2, 3}))))
			return err
		}},
		{"json elements", func() error {
			_, err := wire.DecodeMessages(wire.JSON, []byte(`{"messages":[{"tensor":{"dtype":"float32","shape":[4096,4096],"data":[1,2,3]}}]}`))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := tt.decode()
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("decoding succeeded, want an error")
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("decoding allocated %d bytes (error %v)", n, err)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	good := uint8Tensor(1, 2)
	nan := wire.Float32Tensor([]int{2}, []float32{1, float32(math.NaN())})
	tests := []struct {
		name    string
		msg     wire.Message
		binary  string // expected error for Binary, "" if it succeeds
		jsonErr string // expected error for JSON, "" if it succeeds
	}{
		{"invalid dtype", wire.Message{Tensor: wire.Tensor{Shape: []int{1}, Data: []byte{1}}}, "message 1: tensor: dtype 0 is invalid", "message 1: tensor: dtype 0 is invalid"},
		{"data length", wire.Message{Tensor: wire.Tensor{DType: wire.Float32, Shape: []int{2}, Data: []byte{1}}}, "tensor: data is 1 bytes, want 8", "tensor: data is 1 bytes, want 8"},
		{"rank 0", wire.Message{Tensor: wire.Tensor{DType: wire.Uint8, Data: []byte{1}}}, "tensor: shape []: rank 0", "tensor: shape []: rank 0"},
		{"invalid UTF-8 device", wire.Message{Device: "\xff", Tensor: good}, "message 1: device: invalid UTF-8", "message 1: device: invalid UTF-8"},
		{"invalid UTF-8 hop tier", wire.Message{Hops: []wire.Hop{{}, {Tier: "\xff"}}, Tensor: good}, "message 1: hop 1: tier: invalid UTF-8", "hop 1: tier: invalid UTF-8"},
		{"sent_at out of range", wire.Message{SentAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), Tensor: good}, "message 1: sent_at: time 3000-01-01T00:00:00Z is outside", "sent_at: time 3000"},
		{"hop at out of range", wire.Message{Hops: []wire.Hop{{At: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}}, Tensor: good}, "hop 0: at: time 1600", "hop 0: at: time 1600"},
		{"NaN data", wire.Message{Tensor: nan}, "", "message 1: tensor: element 1 is NaN, which JSON cannot express"},
	}
	for _, enc := range encodings {
		for _, tt := range tests {
			t.Run(enc.String()+"/"+tt.name, func(t *testing.T) {
				want := tt.binary
				if enc == wire.JSON {
					want = tt.jsonErr
				}
				dst := []byte("prefix")
				got, err := wire.AppendMessages(dst, enc, []wire.Message{{Tensor: good}, tt.msg})
				if want == "" {
					if err != nil {
						t.Fatalf("AppendMessages: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("AppendMessages error = %v, want one containing %q", err, want)
				}
				if string(got) != "prefix" {
					t.Errorf("AppendMessages returned %q with the error, want dst unchanged", got)
				}
			})
		}
	}
}

func TestAppendDecisionsErrors(t *testing.T) {
	fwd := uint8Tensor(1, 2)
	bad := wire.Tensor{DType: wire.Uint8, Shape: []int{3}, Data: []byte{1}}
	tests := []struct {
		name string
		d    wire.Decision
		want string
	}{
		{"exit with forward", wire.Decision{Exit: true, Forward: &fwd}, "decision 0: exit decision has a forward tensor"},
		{"NaN confidence", wire.Decision{Confidence: float32(math.NaN())}, "decision 0: confidence is NaN"},
		{"-Inf confidence", wire.Decision{Confidence: float32(math.Inf(-1))}, "decision 0: confidence is -Inf"},
		{"bad forward", wire.Decision{Forward: &bad}, "decision 0: forward: data is 1 bytes, want 3"},
		{"invalid UTF-8 label", wire.Decision{Label: "\xff"}, "decision 0: label: invalid UTF-8"},
	}
	for _, enc := range encodings {
		for _, tt := range tests {
			t.Run(enc.String()+"/"+tt.name, func(t *testing.T) {
				got, err := wire.AppendDecisions(nil, enc, []wire.Decision{tt.d})
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("AppendDecisions error = %v, want one containing %q", err, tt.want)
				}
				if got != nil {
					t.Errorf("AppendDecisions returned %q with the error, want dst unchanged", got)
				}
			})
		}
	}
	if _, err := wire.AppendDecisions(nil, wire.Encoding(2), nil); err == nil || !strings.Contains(err.Error(), "unknown encoding 2") {
		t.Errorf("AppendDecisions with encoding 2: error = %v, want unknown encoding", err)
	}
}

func TestEncodingFor(t *testing.T) {
	tests := []struct {
		contentType string
		want        wire.Encoding
		wantErr     string // "" for success
	}{
		{"application/json", wire.JSON, ""},
		{"application/json; charset=utf-8", wire.JSON, ""},
		{"Application/JSON", wire.JSON, ""},
		{"application/json; charset", wire.JSON, ""}, // malformed parameter, ignored
		{"application/x-ddnn-batch", wire.Binary, ""},
		{"application/x-ddnn-batch; v=1", wire.Binary, ""},
		{"text/plain", 0, `unsupported content type "text/plain" (supported: application/json, application/x-ddnn-batch)`},
		{"application/octet-stream", 0, `unsupported content type "application/octet-stream"`},
		{"", 0, "missing content type (supported: application/json, application/x-ddnn-batch)"},
		{"/json", 0, `unsupported content type "/json"`},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			got, err := wire.EncodingFor(tt.contentType)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("EncodingFor(%q) = %v, %v; want %v", tt.contentType, got, err, tt.want)
				}
				if ct := got.ContentType(); !strings.HasPrefix(strings.ToLower(tt.contentType), ct) {
					t.Errorf("%v.ContentType() = %q", got, ct)
				}
				return
			}
			uerr, ok := errors.AsType[*wire.UnsupportedContentTypeError](err)
			if !ok {
				t.Fatalf("EncodingFor(%q) error = %#v, want an *UnsupportedContentTypeError", tt.contentType, err)
			}
			if uerr.ContentType != tt.contentType {
				t.Errorf("ContentType = %q, want %q", uerr.ContentType, tt.contentType)
			}
			if err.Error() != tt.wantErr && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
	if ct := wire.Encoding(5).ContentType(); ct != "" {
		t.Errorf("Encoding(5).ContentType() = %q, want empty", ct)
	}
}

// Decoded messages may share backing arrays, but appending to one must not
// change another.
func TestDecodedMessagesAreIndependent(t *testing.T) {
	want := slicesOf(roundTripMessages())
	for _, enc := range encodings {
		t.Run(enc.String(), func(t *testing.T) {
			b, err := wire.AppendMessages(nil, enc, want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.DecodeMessages(enc, b)
			if err != nil {
				t.Fatal(err)
			}
			m0 := &got[0]
			m0.Tensor.Data = append(m0.Tensor.Data, 0xAA, 0xBB, 0xCC, 0xDD)
			m0.Tensor.Shape = append(m0.Tensor.Shape, 9)
			m0.Hops = append(m0.Hops, wire.Hop{Tier: "x"})
			checkEqual(t, "other messages", got[1:], want[1:])
		})
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		v, tier string
		results bool
		err     string
	}{
		{v: wire.RouteTier("fog"), tier: "fog"},
		{v: wire.RouteResults, results: true},
		{v: "tier:", err: `header ddnn-route: "tier:" is neither "results" nor "tier:"<tier>`},
		{v: "", err: `header ddnn-route: "" is neither "results" nor "tier:"<tier>`},
	} {
		tier, results, err := wire.ParseRoute(tc.v)
		if tier != tc.tier || results != tc.results || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("ParseRoute(%q) = %q, %v, %v; want %q, %v, %s", tc.v, tier, results, err, tc.tier, tc.results, tc.err)
		}
	}
}
