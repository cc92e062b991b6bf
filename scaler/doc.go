// Package scaler owns the queue-lag autoscaler: per tier it reads the
// connector group's lag and the topic's end and committed offsets
// (kafka.Lag, never-committed partitions included), derives the
// arrival rate λ, the service rate μ and the per-replica capacity measured
// while a backlog keeps replicas busy, and asks the tier's runtime for the
// count Decide returns.
//
// It also owns setting a site's tiers up for both replica managers, `ddnn
// up` and `ddnn scaler` (StartTiers): a runtime per tier, each started at
// its minimum, and a Target for each tier whose size may change.
//
// Decide is a pure function (time comes from its inputs): up at once, down
// one step at a time after a stabilization window, to zero only after an
// idle cooldown, and hold when lag cannot be read. The scaler never routes
// traffic or starts processes itself; runtimes do that.
package scaler
