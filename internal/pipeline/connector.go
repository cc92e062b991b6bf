package pipeline

import (
	"fmt"
	"time"
)

// Defaults of a tier's connector section.
const (
	DefaultConnectorMaxBatch  = 64
	DefaultInFlightPerReplica = 4
	DefaultMaxAttempts        = 5
	DefaultMaxPendingRecords  = 10000
	DefaultBackoff            = 50 * time.Millisecond
	DefaultMaxBackoff         = 2 * time.Second
	DefaultRequestTimeout     = 10 * time.Second
)

// Connector tunes a tier's kafka-to-http connector.
type Connector struct {
	// MaxBatch is the most records in one invocation.
	MaxBatch int `yaml:"max_batch"`
	// MaxWait is how long a partial batch waits for more records; 0 (the
	// default) sends it as soon as no more records are queued.
	MaxWait time.Duration `yaml:"max_wait"`
	// InFlightPerReplica bounds concurrent invocations of one replica.
	InFlightPerReplica int `yaml:"in_flight_per_replica"`
	// MaxAttempts is how many failures a record may be charged before it
	// is dead-lettered with reason "attempts exhausted: <last error>". A
	// failure is charged to the records of a call when the function
	// answered 500 (the model failed on them) or when the replica that
	// failed them delivered other records meanwhile; a charged call of
	// several records is split in halves and retried, so a bad record ends
	// up alone. Failures while no invocation of the tier succeeds (every
	// replica down, the funnel unreachable, 401, 403, 408, 429) are not
	// the records' fault: they are retried without limit. Records the
	// function refuses with another 4xx are dead-lettered at once, with no
	// attempts.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxPendingRecords bounds the records fetched and not yet committable
	// (in flight, or done behind an unfinished one); at the bound the
	// connector stops fetching until the oldest finish.
	MaxPendingRecords int `yaml:"max_pending_records"`
	// Backoff is the delay before the first retry of a failed call, and
	// how long a replica that failed is passed over; each further failure
	// in a row doubles the delay up to MaxBackoff. The delay slept is
	// random between half of it and all of it.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// RequestTimeout bounds one invocation.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// validate checks the connector section of a tier whose function takes
// batches of up to inferenceMaxBatch; f is the section's path.
func (c *Connector) validate(f string, inferenceMaxBatch int) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{f, field}, args...)...))
	}
	if c.MaxBatch < 1 {
		bad("max_batch", "%d must be at least 1", c.MaxBatch)
	}
	if c.MaxBatch > inferenceMaxBatch {
		bad("max_batch", "%d is over the function's inference.max_batch %d", c.MaxBatch, inferenceMaxBatch)
	}
	if c.MaxWait < 0 {
		bad("max_wait", "%s must not be negative", c.MaxWait)
	}
	if c.InFlightPerReplica < 1 {
		bad("in_flight_per_replica", "%d must be at least 1", c.InFlightPerReplica)
	}
	if c.MaxAttempts < 1 {
		bad("max_attempts", "%d must be at least 1", c.MaxAttempts)
	}
	if c.MaxPendingRecords < c.MaxBatch {
		bad("max_pending_records", "%d must be at least max_batch %d", c.MaxPendingRecords, c.MaxBatch)
	}
	if c.Backoff <= 0 || c.MaxBackoff < c.Backoff {
		bad("backoff", "%s must be positive and at most max_backoff %s", c.Backoff, c.MaxBackoff)
	}
	if c.RequestTimeout < 10*time.Millisecond {
		bad("request_timeout", "%s must be at least 10ms", c.RequestTimeout)
	}
	return errs
}
