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
