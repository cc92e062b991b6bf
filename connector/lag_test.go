package connector

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestLagGauge: with the tier's only replica gone, records wait and
// ddnn_connector_lag_records shows them; once a replica answers again it
// falls back to 0. ddnn_connector_replicas counts the replica set.
func TestLagGauge(t *testing.T) {
	e := setup(t)
	first := newFakeReplica(t, nil)
	addr := first.srv.Listener.Addr().String()
	c, _, _ := e.start(t, first)
	if n := testutil.ToFloat64(c.lag.replicas); n != 1 {
		t.Errorf("ddnn_connector_replicas = %v, want 1", n)
	}
	first.srv.CloseClientConnections()
	first.srv.Close()
	e.produce(t, 60, "a")
	testsupport.WaitFor(t, 20*time.Second, "the lag gauge at 60", func() bool { return testutil.ToFloat64(c.lag.lag) == 60 })
	newFakeReplicaOn(t, addr, nil)
	testsupport.WaitFor(t, 30*time.Second, "the lag gauge back at 0", func() bool { return testutil.ToFloat64(c.lag.lag) == 0 && e.lag(t) == 0 })
	if n := testutil.ToFloat64(c.lag.lagError); n != 0 {
		t.Errorf("%v lag reads failed", n)
	}
}
