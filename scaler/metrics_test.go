package scaler

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMaxReplicasGauge: every decision reports the tier's replicas.max
// beside desired and ready, so an alert can tell a tier at its limit.
func TestMaxReplicasGauge(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.observe("edge", Inputs{Ready: 2, Min: 1, Max: 4}, Decision{Replicas: 3, Reason: "scale_up"})
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"ddnn_scaler_max_replicas", testutil.ToFloat64(m.maximum.WithLabelValues("edge")), 4},
		{`ddnn_scaler_replicas{state="desired"}`, testutil.ToFloat64(m.replicas.WithLabelValues("edge", "desired")), 3},
		{`ddnn_scaler_replicas{state="ready"}`, testutil.ToFloat64(m.replicas.WithLabelValues("edge", "ready")), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
