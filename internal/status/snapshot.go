// Package status reads what a running pipeline is doing, site by site and
// tier by tier, from its Kafka and its roles' admin endpoints: what `ddnn
// status` prints and `ddnn up`'s status page shows. Collect reads it into
// a Snapshot; Print writes one as tables.
//
// It only reads: it changes nothing, joins no consumer group and fetches
// no record (lags and dead letters come from offsets), and it keeps no
// state between two reads; the metric names it reads are the contract
// with the parts that serve them (docs/streaming.md#metrics).
//
// Snapshot is the stable form (`ddnn status --json`, the page's
// /v1/status): fields are added, never renamed or removed. Durations are in
// seconds, rates per second, times RFC 3339 in UTC.
package status

import "time"

// Snapshot is the state of a pipeline at one moment.
type Snapshot struct {
	Pipeline string    `json:"pipeline"`
	Time     time.Time `json:"time"`
	Sites    []Site    `json:"sites"`
	// Problems lists, one line each, what did not answer or is unhealthy
	// (a tier down, lagging or dead-lettering; a link down; a site's Kafka
	// or funnel not answering). Empty when healthy.
	Problems []string `json:"problems"`
}

// Site is one site's Kafka, funnel, tiers and outgoing links.
type Site struct {
	Name   string   `json:"name"`
	Kafka  Endpoint `json:"kafka"`
	Funnel Endpoint `json:"funnel"`
	// Admin is the site's supervisor (`ddnn up`) or the roles' admin
	// endpoints as read.
	Admin   Endpoint `json:"admin"`
	Tiers   []Tier   `json:"tiers"`
	Uplinks []Uplink `json:"uplinks"`
}

// Endpoint is whether something answered, where, and the error if not.
type Endpoint struct {
	Address string `json:"address"`
	Up      bool   `json:"up"`
	Error   string `json:"error,omitempty"`
}

// Tier is one tier as seen on its site.
type Tier struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
	// Model is the model the pipeline file names, read where status runs;
	// Serving the models the tier's replicas say they serve
	// (ddnn_inference_model_info, sha or sha@version), sorted: one but
	// during a rollout whose old replicas serve beside the new, or with a
	// canary. Empty when no replica's metrics were read.
	Model   Model    `json:"model"`
	Serving []string `json:"serving"`
	// Replicas ready and desired; Min and Max are the scaling bounds.
	ReadyReplicas   int `json:"ready_replicas"`
	DesiredReplicas int `json:"desired_replicas"`
	MinReplicas     int `json:"min_replicas"`
	MaxReplicas     int `json:"max_replicas"`
	// Lag is the records in the tier's input topic its connector group has
	// not committed.
	Lag int64 `json:"lag"`
	// InRate and OutRate are records a second into the tier (fetched) and
	// out of it (exits plus forwards), over the last sampling interval.
	InRate  float64 `json:"in_rate"`
	OutRate float64 `json:"out_rate"`
	// ExitRatio is exits / (exits + forwards) since the replicas started;
	// null when nothing was decided yet.
	ExitRatio *float64 `json:"exit_ratio"`
	// P50 and P99 service time of an invocation, seconds, over the last
	// sampling interval; null when there was none.
	P50Seconds *float64 `json:"p50_seconds"`
	P99Seconds *float64 `json:"p99_seconds"`
	// DeadLetters in the tier's dead-letter topic, in all and in the last
	// minute.
	DeadLetters           int64 `json:"dead_letters"`
	DeadLettersLastMinute int64 `json:"dead_letters_last_minute"`
	// Down is true while the connector finds no replica answering;
	// DownSince is when that started.
	Down      bool       `json:"down"`
	DownSince *time.Time `json:"down_since,omitempty"`
	// State sums the tier up: "ok", "down", "lagging", "dead-lettering" or
	// "unknown" (nothing answered for it).
	State string `json:"state"`
	// Canary compares the tier's candidate model with its current one
	// while it runs a canary (tiers[].canary); absent otherwise.
	Canary *Canary `json:"canary,omitempty"`
}

// Model is a tier's model file and the first 12 hex digits of its sha256.
type Model struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// Uplink is a link from this site to another one: its queue on this
// site's Kafka and whether the other site's funnel takes what it sends.
type Uplink struct {
	To      string `json:"to"`
	Up      bool   `json:"up"`
	Backlog int64  `json:"backlog"`
	// Rate is records a second the other site's funnel took from the
	// uplink, over the last sampling interval.
	Rate float64 `json:"rate"`
	// DeadLetters are the records in the link's dead-letter topic (ones
	// the other site's funnel refused).
	DeadLetters int64 `json:"dead_letters"`
	// DownSince is when the link stopped delivering, while it is down.
	DownSince *time.Time `json:"down_since,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// Tier states.
const (
	StateOK            = "ok"
	StateDown          = "down"
	StateLagging       = "lagging"
	StateDeadLettering = "dead-lettering"
	StateUnknown       = "unknown"
)
