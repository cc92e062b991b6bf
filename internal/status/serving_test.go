package status

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestServing: a tier's Serving is the models its replicas say they
// serve, each once, sorted; the table names them beside the file's model
// only when they differ from it or are more than one (a rollout with the
// old replicas beside the new, a canary).
func TestServing(t *testing.T) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(`# TYPE ddnn_inference_model_info gauge
ddnn_inference_model_info{process="fog-2",tier="fog",model="bbbbbbbbbbbb@w48"} 1
ddnn_inference_model_info{process="fog-0",tier="fog",model="aaaaaaaaaaaa@v1"} 1
ddnn_inference_model_info{process="fog-1",tier="fog",model="bbbbbbbbbbbb@w48"} 1
ddnn_inference_model_info{process="edge-0",tier="edge",model="cccccccccccc"} 1
`))
	if err != nil {
		t.Fatal(err)
	}
	s := metricSet{}
	s.add(fams)
	if got := s.labelValues(mModel, labels{"tier": "fog"}, "model"); strings.Join(got, " ") != "aaaaaaaaaaaa@v1 bbbbbbbbbbbb@w48" {
		t.Errorf("fog serves %v", got)
	}
	if got := s.labelValues(mModel, labels{"tier": "cloud"}, "model"); got == nil || len(got) != 0 {
		t.Errorf("cloud serves %#v, want an empty list", got)
	}

	file := Model{File: "/m/fog.onnx", SHA256: "aaaaaaaaaaaa"}
	for _, tc := range []struct {
		serving []string
		want    string
	}{
		{nil, "fog.onnx aaaaaaaaaaaa"},
		{[]string{"aaaaaaaaaaaa@v1"}, "fog.onnx aaaaaaaaaaaa"},
		{[]string{"aaaaaaaaaaaa@v1", "bbbbbbbbbbbb@w48"}, "fog.onnx aaaaaaaaaaaa (serving aaaaaaaaaaaa@v1, bbbbbbbbbbbb@w48)"},
		{[]string{"bbbbbbbbbbbb@w48"}, "fog.onnx aaaaaaaaaaaa (serving bbbbbbbbbbbb@w48)"},
	} {
		if got := servingText(Tier{Model: file, Serving: tc.serving}); got != tc.want {
			t.Errorf("serving %v: %q, want %q", tc.serving, got, tc.want)
		}
	}
}
