package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestResultRoundTrip: a result reads back as written, with its exit
// model's version label, with a sha alone, and (written before results
// named a model) with none.
func TestResultRoundTrip(t *testing.T) {
	const prefix = `{"id":"a","device":"d","tier":"fog","class":3,"label":"Dress","confidence":0.93,"sent_at":"1970-01-01T00:00:01.000000005Z","exited_at":"1970-01-01T00:00:02Z","hops":[{"tier":"edge","at":"1970-01-01T00:00:01.000000007Z"}]`
	for _, tc := range []struct {
		name  string
		model wire.ModelVersion
		want  string
	}{
		{"labeled", wire.ModelVersion{SHA: "3f9a1c0b2d4e", Version: "v2"}, prefix + `,"model":{"sha":"3f9a1c0b2d4e","version":"v2"}}`},
		{"sha alone", wire.ModelVersion{SHA: "3f9a1c0b2d4e"}, prefix + `,"model":{"sha":"3f9a1c0b2d4e"}}`},
		{"no model", wire.ModelVersion{}, prefix + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.Result{ID: "a", Device: "d", Tier: "fog", Class: 3, Label: "Dress", Confidence: 0.93,
				SentAt: time.Unix(1, 5).UTC(), ExitedAt: time.Unix(2, 0).UTC(), Hops: []wire.Hop{{Tier: "edge", At: time.Unix(1, 7).UTC()}},
				Model: tc.model}
			b, err := wire.AppendResult(nil, &r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("AppendResult = %s\nwant %s", b, tc.want)
			}
			got, err := wire.DecodeResult(b)
			if err != nil {
				t.Fatal(err)
			}
			checkEqual(t, "DecodeResult", got, r)
		})
	}
}

func TestDecodeResultErrors(t *testing.T) {
	const ok = `"id":"a","tier":"edge","class":1,"label":"b","confidence":0.5,"exited_at":"1970-01-01T00:00:02Z"`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"field names are case-sensitive", `{"ID":"x",` + ok + `}`, `result record: unknown field "ID" (want id, device, tier, class, label, confidence, sent_at, exited_at, hops, model) at offset 1`},
		{"unknown model field", `{` + ok + `,"model":{"sha":"3f9a1c0b2d4e","label":"v2"}}`, `result record: model: unknown field "label" (want sha, version) at offset`},
		{"unknown hop field", `{` + ok + `,"hops":[{"tier":"edge","when":1}]}`, `result record: hop 0: unknown field "when" (want tier, at) at offset`},
		{"duplicate field", `{` + ok + `,"id":"b"}`, `result record: duplicate field "id" at offset`},
		{"trailing data", `{` + ok + `} {}`, `result record: trailing data at offset`},
		{"class not an integer", `{"class":1.5}`, `result record: class: "1.5" is not an integer at offset 9`},
		{"empty", ``, `result record: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.DecodeResult([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewResult(t *testing.T) {
	sent, exited := time.Unix(1, 0).UTC(), time.Unix(2, 0).UTC()
	m := wire.Message{ID: "a", Device: "d", SentAt: sent, Route: "fog", Hops: []wire.Hop{{Tier: "edge", At: sent}}, Tensor: jsonTensorValue}
	d := wire.Decision{ID: "a", Tier: "fog", Exit: true, Class: 3, Label: "Dress", Confidence: 0.9}
	model := wire.ModelVersion{SHA: "3f9a1c0b2d4e", Version: "v2"}
	want := wire.Result{ID: "a", Device: "d", Tier: "fog", Class: 3, Label: "Dress", Confidence: 0.9, SentAt: sent, ExitedAt: exited, Hops: m.Hops, Model: model}
	checkEqual(t, "NewResult", wire.NewResult(&m, &d, model, exited), want)
}
