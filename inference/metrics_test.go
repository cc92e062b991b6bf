package inference

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsExistBeforeTheFirstRequest: a new function's tier series are
// there at 0 before any request, so rate() over them sees the first
// samples a replica serves (a series born with a value shows no increase).
func TestMetricsExistBeforeTheFirstRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	newFunction(t, "fog", Config{Metrics: m})
	for _, name := range []string{"ddnn_inference_requests_total", "ddnn_inference_samples_total", "ddnn_inference_batch_size",
		"ddnn_inference_duration_seconds", "ddnn_inference_exits_total", "ddnn_inference_forwards_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series (%v) before any request, want 1", name, n, err)
		}
	}
	if v := testutil.ToFloat64(m.samples.WithLabelValues("fog")); v != 0 {
		t.Errorf("ddnn_inference_samples_total = %v before any request", v)
	}
}

// TestMetricsNameTheModelServed: once its model is loaded, a replica
// says which it serves (ddnn_inference_model_info), sha@version, as its
// answers name it: what ddnn status shows a tier serving.
func TestMetricsNameTheModelServed(t *testing.T) {
	p := shipped(t)
	p.Tiers[1].Version = "v2"
	m := NewMetrics(prometheus.NewRegistry())
	newFunction(t, "fog", Config{Pipeline: p, Metrics: m})
	if v := testutil.ToFloat64(m.model.WithLabelValues("fog", modelSHA(t, "fog")+"@v2")); v != 1 {
		t.Errorf("ddnn_inference_model_info of the fog's model = %v, want 1", v)
	}
	if n := testutil.CollectAndCount(m.model); n != 1 {
		t.Errorf("%d model series, want 1", n)
	}
}
