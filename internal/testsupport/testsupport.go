// Package testsupport holds the helpers the tests of several packages
// share: waiting on a condition with a deadline (WaitFor), a buffer that
// logs and output are written to while the test reads it (Buffer), a
// one-broker kfake Kafka cluster and clients of it (KafkaCluster,
// KafkaClient), a cluster for each site of a pipeline (SiteClusters), and the
// shipped pipeline files ready to write anywhere (Shipped, SamplePipeline),
// and headless Chromium for pages (Browser, WaitPage, Eval).
//
// It is imported by _test.go files only. Whatever a helper starts is
// stopped when the test ends (testing.TB.Cleanup); it never sleeps in
// place of a condition.
package testsupport

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test (naming what it
// waited for) when it still does not after within.
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
