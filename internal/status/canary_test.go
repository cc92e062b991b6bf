package status

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// canaryMetrics is what the fog tier's connector counted while running a
// canary: 900 decisions of the current model (450 exits), 100 of the
// candidate (80 exits), 3 fallbacks, 40 shadow-scored of which 38 agreed,
// a dropped and a failed shadow batch, service times and errors.
const canaryMetrics = `# TYPE ddnn_connector_canary_decisions_total counter
ddnn_connector_canary_decisions_total{decision="exit",tier="fog",variant="current"} 450
ddnn_connector_canary_decisions_total{decision="forward",tier="fog",variant="current"} 450
ddnn_connector_canary_decisions_total{decision="exit",tier="fog",variant="canary"} 80
ddnn_connector_canary_decisions_total{decision="forward",tier="fog",variant="canary"} 20
# TYPE ddnn_connector_canary_errors_total counter
ddnn_connector_canary_errors_total{tier="fog",variant="current"} 0
ddnn_connector_canary_errors_total{tier="fog",variant="canary"} 2
# TYPE ddnn_connector_canary_fallback_records_total counter
ddnn_connector_canary_fallback_records_total{tier="fog"} 3
# TYPE ddnn_connector_canary_shadow_records_total counter
ddnn_connector_canary_shadow_records_total{outcome="agreed",tier="fog"} 38
ddnn_connector_canary_shadow_records_total{outcome="disagreed",tier="fog"} 2
# TYPE ddnn_connector_canary_shadow_batches_total counter
ddnn_connector_canary_shadow_batches_total{outcome="compared",tier="fog"} 9
ddnn_connector_canary_shadow_batches_total{outcome="dropped",tier="fog"} 1
ddnn_connector_canary_shadow_batches_total{outcome="failed",tier="fog"} 1
# TYPE ddnn_connector_canary_service_seconds histogram
ddnn_connector_canary_service_seconds_bucket{tier="fog",variant="current",le="0.001"} 10
ddnn_connector_canary_service_seconds_bucket{tier="fog",variant="current",le="0.01"} 10
ddnn_connector_canary_service_seconds_bucket{tier="fog",variant="current",le="+Inf"} 10
ddnn_connector_canary_service_seconds_sum{tier="fog",variant="current"} 0.005
ddnn_connector_canary_service_seconds_count{tier="fog",variant="current"} 10
ddnn_connector_canary_service_seconds_bucket{tier="fog",variant="canary",le="0.001"} 0
ddnn_connector_canary_service_seconds_bucket{tier="fog",variant="canary",le="0.01"} 4
ddnn_connector_canary_service_seconds_bucket{tier="fog",variant="canary",le="+Inf"} 4
ddnn_connector_canary_service_seconds_sum{tier="fog",variant="canary"} 0.02
ddnn_connector_canary_service_seconds_count{tier="fog",variant="canary"} 4
`

func readSet(t *testing.T, text string) metricSet {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	s := metricSet{}
	s.add(fams)
	return s
}

// TestCanaryCompared: a tier running a canary shows both models side by
// side from its connector's metrics: share seen, exit ratio, service
// time quantiles, errors, fallbacks and agreement; a tier without one
// shows none.
func TestCanaryCompared(t *testing.T) {
	p := &pipeline.Pipeline{Tiers: []pipeline.Tier{
		{Name: "fog", Model: "fog.onnx", Canary: &pipeline.Canary{Model: "fog-v2.onnx", Version: "v2", Share: 0.1, ShadowRatio: 0.1}},
		{Name: "cloud", Model: "cloud.onnx"},
	}}
	r := siteReads{view: &pipeline.SiteView{Pipeline: p}, after: readSet(t, canaryMetrics)}
	if k := r.canary(&p.Tiers[1]); k != nil {
		t.Errorf("a tier without canary compared: %+v", k)
	}
	k := r.canary(&p.Tiers[0])
	if k == nil {
		t.Fatal("no comparison")
	}
	near := func(what string, got *float64, want float64) {
		t.Helper()
		if got == nil || math.Abs(*got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	near("share seen", k.ShareSeen, 0.1)
	near("current exit ratio", k.Current.ExitRatio, 0.5)
	near("canary exit ratio", k.Candidate.ExitRatio, 0.8)
	near("agreement", k.Agreement, 0.95)
	near("current p50", k.Current.P50Seconds, 0.0005)
	near("canary p50", k.Candidate.P50Seconds, 0.0055)
	if k.Current.Decisions != 900 || k.Candidate.Decisions != 100 || k.Candidate.Errors != 2 || k.Current.Errors != 0 ||
		k.Fallbacks != 3 || k.ShadowCompared != 40 || k.ShadowAgreed != 38 || k.ShadowDropped != 2 || k.Share != 0.1 || k.Version != "v2" {
		t.Errorf("comparison %+v", k)
	}

	var out bytes.Buffer
	printCanaries(&out, []Tier{{Name: "fog", Model: Model{File: "fog.onnx", SHA256: "76fe6d81ff0f"}, Canary: k}, {Name: "cloud"}}, false)
	t.Logf("\n%s", out.String())
	var rows []string
	for _, l := range strings.Split(out.String(), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"CANARY MODEL SHARE SEEN DECISIONS EXITS P50 P99 ERRORS AGREEMENT FALLBACKS",
		"fog current fog.onnx 76fe6d81ff0f 90% 90% 900 50% 500µs 990µs 0",
		"fog canary fog-v2.onnx (unread) 10% 10% 100 80% 5.5ms 9.9ms 2 95% of 40 3",
	} {
		if !slices.Contains(rows, want) {
			t.Errorf("table lacks the row %q:\n%s", want, out.String())
		}
	}
	k.Model.SHA256 = "0123456789ab"
	out.Reset()
	printCanaries(&out, []Tier{{Name: "fog", Canary: k}}, false)
	if !strings.Contains(out.String(), "fog-v2.onnx 0123456789ab@v2") {
		t.Errorf("the candidate is not named sha@version:\n%s", out.String())
	}
	out.Reset()
	printCanaries(&out, []Tier{{Name: "cloud"}}, false)
	if out.Len() != 0 {
		t.Errorf("a table without canaries:\n%s", out.String())
	}
}
