package connector

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// stillNotReady fails the test if c becomes ready within d.
func stillNotReady(t *testing.T, c *Connector, d time.Duration, why string) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c.Ready() {
			t.Fatalf("ready %s", why)
		}
	}
}

// TestReadyWhenJoinedWithItsReplicas: a connector is ready only once its
// consumer joined the group and it knows its replica set: not while its
// Kafka does not answer, nor while the replica list cannot be read; an
// empty list read is a known set (a tier scaled to zero).
func TestReadyWhenJoinedWithItsReplicas(t *testing.T) {
	t.Run("kafka unreachable", func(t *testing.T) {
		e := setup(t)
		e.p.Kafka.Brokers = []string{proctest.FreeAddr(t)} // nothing listens
		c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: []string{"http://127.0.0.1:1"}, Registerer: prometheus.NewRegistry(), DrainTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runUntilCleanup(t, c)
		stillNotReady(t, c, 2*time.Second, "without a Kafka to join a group on")
	})
	t.Run("replica list", func(t *testing.T) {
		e := setup(t)
		var serve atomic.Bool
		list := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !serve.Load() {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
			json.NewEncoder(w).Encode([]httpapi.ListedReplica{})
		}))
		defer list.Close()
		c, err := New(Config{Pipeline: e.p, Tier: "edge", ReplicasURL: list.URL, Registerer: prometheus.NewRegistry(), DrainTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runUntilCleanup(t, c)
		testsupport.WaitFor(t, 15*time.Second, "the group joined", c.joined.Load)
		stillNotReady(t, c, time.Second, "with a replica list that does not read")
		serve.Store(true)
		testsupport.WaitFor(t, 15*time.Second, "ready with an empty replica set read", c.Ready)
	})
	t.Run("fixed replicas", func(t *testing.T) {
		e := setup(t)
		c, _, _ := e.start(t, newFakeReplica(t, nil))
		testsupport.WaitFor(t, 15*time.Second, "ready once joined", c.Ready)
	})
}
