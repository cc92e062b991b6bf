package status

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that Collect leaves nothing running: no Kafka client,
// no HTTP connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
