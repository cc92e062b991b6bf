package inspect

import (
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// States of a message (Report.State).
const (
	StateResult       = "result"        // it exited: Result says where and how
	StateWaiting      = "waiting"       // its record waits on a topic: Waiting
	StateDeadLettered = "dead-lettered" // parked: DeadLetter
	StateUnknown      = "unknown"       // not found, or not placeable: Note and Searched
)

// Report is one message's path, the stable form of ddnn inspect --json:
// fields are added, never renamed or removed. Times are RFC 3339 in UTC,
// durations in seconds.
type Report struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Note says why a state is unknown, or what else is worth knowing
	// (a search cut short by --max-records, a site that did not answer).
	Note   string  `json:"note,omitempty"`
	Ingest *Ingest `json:"ingest,omitempty"`
	// Hops are the tiers that decided on the message, in tier order.
	Hops       []Hop       `json:"hops"`
	Result     *Result     `json:"result,omitempty"`
	Waiting    *Waiting    `json:"waiting,omitempty"`
	DeadLetter *DeadLetter `json:"dead_letter,omitempty"`
	Searched   Searched    `json:"searched"`
}

// Ingest is where the message entered the pipeline.
type Ingest struct {
	Site   string `json:"site"`
	Device string `json:"device,omitempty"`
	// SentAt is the device's send time, when known; WrittenAt when the
	// funnel (or the device) wrote the record to the first tier's input,
	// when that record was found.
	SentAt    *time.Time `json:"sent_at,omitempty"`
	WrittenAt *time.Time `json:"written_at,omitempty"`
	Where     *Position  `json:"record,omitempty"`
}

// Position is a record's place.
type Position struct {
	Site      string `json:"site"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Hop is what one tier did with the message (records.Hop).
type Hop struct {
	Tier    string `json:"tier"`
	Site    string `json:"site"`
	Replica string `json:"replica"`
	// Model is the sha256 prefix of the model the replica ran, Version
	// the tier's version label; either empty when the replica did not say.
	Model      string    `json:"model,omitempty"`
	Version    string    `json:"version,omitempty"`
	Confidence float32   `json:"confidence"`
	Decision   string    `json:"decision"` // "exit" or "forward"
	FetchedAt  time.Time `json:"fetched_at"`
	// KafkaWaitSeconds is from the record's write to its fetch by the
	// tier's connector; ServiceSeconds the call to the replica.
	KafkaWaitSeconds float64 `json:"kafka_wait_seconds"`
	ServiceSeconds   float64 `json:"service_seconds"`
}

// Result is the message's result as the results topic holds it.
type Result struct {
	wire.Result
	Where Position `json:"record"`
}

// Waiting is a record of the message that its topic's consumer group
// has not consumed yet.
type Waiting struct {
	Position
	// Route is where the record goes, for an uplink queue's record
	// ("tier:<name>" or "results").
	Route string `json:"route,omitempty"`
	Group string `json:"group"`
	// Committed is the group's committed offset on the partition (-1:
	// none); Ahead the records between the group's position and this
	// one, which the group takes first.
	Committed int64     `json:"committed"`
	Ahead     int64     `json:"ahead"`
	WrittenAt time.Time `json:"written_at"`
}

// DeadLetter is a dead letter of the message.
type DeadLetter struct {
	Position
	Reason   string    `json:"reason"`
	ParkedAt time.Time `json:"parked_at"`
	// Source is where the parked record was read.
	Source Position `json:"source"`
}

// Searched is what the search read.
type Searched struct {
	// Since is the oldest write time read; MaxRecords the bound on
	// records read in all.
	Since      time.Time     `json:"since"`
	MaxRecords int           `json:"max_records"`
	Records    int           `json:"records"`
	Topics     []TopicSearch `json:"topics"`
	// Complete is false when the search stopped at MaxRecords or a
	// site's Kafka did not answer (Failures).
	Complete bool     `json:"complete"`
	Failures []string `json:"failures,omitempty"`
}

// TopicSearch is one topic read.
type TopicSearch struct {
	Site    string `json:"site"`
	Topic   string `json:"topic"`
	Records int    `json:"records"`
	// Found counts the records of the message.
	Found int `json:"found"`
}
