package pipeline

import (
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Defaults of the streaming part of a pipeline.
const (
	DefaultEmbeddedBroker       = "127.0.0.1:9092"
	DefaultPartitions           = 4
	DefaultClientID             = "ddnn"
	DefaultProduceTimeout       = 5 * time.Second
	DefaultFunnelListen         = "127.0.0.1:8080"
	DefaultCoAPListen           = "127.0.0.1:5683"
	DefaultFunnelMaxConnections = 4096
	DefaultAdminListen          = "127.0.0.1:9464"
	DefaultConnectorMaxBatch    = 64
	DefaultInFlightPerReplica   = 4
	DefaultMaxAttempts          = 5
	DefaultMaxPendingRecords    = 10000
	DefaultMaxRecordBytes       = 1000000
	DefaultBackoff              = 50 * time.Millisecond
	DefaultMaxBackoff           = 2 * time.Second
	DefaultRequestTimeout       = 10 * time.Second
	DefaultReplicas             = 1
)

// Kafka says where the pipeline's topics live.
type Kafka struct {
	// Brokers of a real Kafka cluster; empty means the embedded broker that
	// `ddnn up` starts.
	Brokers []string `yaml:"brokers"`
	// EmbeddedListen is where the embedded broker listens.
	EmbeddedListen string `yaml:"embedded_listen"`
	// EmbeddedDataDir is where the embedded broker keeps topics, records
	// and committed offsets across restarts; a relative path resolves
	// against the YAML's directory. Empty means .run/<name>/kafka under
	// the directory ddnn starts in (see Pipeline.BrokerDataDir).
	EmbeddedDataDir string `yaml:"embedded_data_dir"`
	// EmbeddedSyncWrites makes the embedded broker fsync every record
	// batch and commit, so a machine crash (not only a killed process)
	// loses nothing acknowledged.
	EmbeddedSyncWrites bool `yaml:"embedded_sync_writes"`
	// Partitions per topic, when ddnn creates the topics.
	Partitions int32 `yaml:"partitions"`
	// ClientID prefixes the Kafka client ids of every role.
	ClientID string `yaml:"client_id"`
	// ProduceTimeout bounds how long a funnel waits for Kafka to acknowledge
	// a write before answering 503.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// MaxRecordBytes is the largest record ddnn produces: at most what the
	// brokers accept (message.max.bytes, a topic's max.message.bytes;
	// Kafka's and the embedded broker's default is 1 MiB per batch).
	// Dead-letter copies that would be larger are truncated to fit.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// ReplicationFactor of the topics ddnn creates: -1 takes the cluster's
	// default.replication.factor; unset (0) means 1 on the embedded broker
	// and -1 with brokers (see Replication).
	ReplicationFactor int16 `yaml:"replication_factor"`
	// TopicConfig is set on the topics ddnn creates and checked on the
	// topics that exist (e.g. min.insync.replicas, retention.ms).
	TopicConfig map[string]string `yaml:"topic_config"`
}

// Replication is the replication factor topics are created with: the
// configured one, else 1 on the embedded broker (it has one node) and -1,
// the cluster's default, with brokers.
func (k *Kafka) Replication() int16 {
	switch {
	case k.ReplicationFactor != 0:
		return k.ReplicationFactor
	case k.Embedded():
		return 1
	default:
		return -1
	}
}

// Embedded reports whether the pipeline uses the embedded broker.
func (k *Kafka) Embedded() bool { return len(k.Brokers) == 0 }

// BrokerDataDir is the embedded broker's data directory, absolute:
// kafka.embedded_data_dir resolved against the YAML's directory, or by
// default .run/<name>/kafka under the working directory, so a pipeline
// started again from the same directory finds its data.
func (p *Pipeline) BrokerDataDir() (string, error) {
	if d := p.Kafka.EmbeddedDataDir; d != "" {
		return filepath.Abs(p.Path(d))
	}
	return filepath.Abs(filepath.Join(".run", p.Name, "kafka"))
}

// SeedBrokers is what clients dial: the configured brokers or the embedded
// broker's address.
func (k *Kafka) SeedBrokers() []string {
	if k.Embedded() {
		return []string{k.EmbeddedListen}
	}
	return k.Brokers
}

// Funnel configures the funnel that devices and inference functions write to.
type Funnel struct {
	// Listen is the HTTP address of /v1/ingest and the internal delivery
	// routes.
	Listen string `yaml:"listen"`
	// MaxRequestBytes bounds a device's ingest body; larger ones get 413.
	// The default, Input.IngestBytes, takes the largest valid sample in
	// either form. Delivery routes between the pipeline's parts take up to
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxConnections bounds the open HTTP connections; further ones wait in
	// the kernel's accept queue, so an overload cannot exhaust the
	// process's file descriptors.
	MaxConnections int `yaml:"max_connections"`
	// CoAPListen is the UDP address of coap://HOST/v1/ingest; "off"
	// disables CoAP.
	CoAPListen string `yaml:"coap_listen"`
}

// Admin configures the supervisor's /metrics, /healthz and /readyz.
type Admin struct {
	Listen string `yaml:"listen"`
}

// Connector tunes a tier's kafka-to-http connector.
type Connector struct {
	// MaxBatch is the most records in one invocation.
	MaxBatch int `yaml:"max_batch"`
	// MaxWait is how long a partial batch waits for more records; 0 (the
	// default) sends it as soon as no more records are queued.
	MaxWait time.Duration `yaml:"max_wait"`
	// InFlightPerReplica bounds concurrent invocations of one replica.
	InFlightPerReplica int `yaml:"in_flight_per_replica"`
	// MaxAttempts is how many failures a record may be charged (the model
	// failed on it, or the replica that failed it delivered other
	// records meanwhile)
	// before it is dead-lettered, the last time alone in its call, with
	// reason "attempts exhausted: <last error>". Failures while no invocation of
	// the tier succeeds (every replica down, the funnel unreachable) are
	// not the record's fault: they are retried without limit.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxPendingRecords bounds the records fetched and not yet committable
	// (in flight, or done behind an unfinished one); at the bound the
	// connector stops fetching until the oldest finish.
	MaxPendingRecords int `yaml:"max_pending_records"`
	// Backoff is the first retry delay; it doubles up to MaxBackoff, with
	// jitter.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// RequestTimeout bounds one invocation.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// Topic names, derived from the pipeline name.

// InputTopic is the topic a tier consumes.
func (p *Pipeline) InputTopic(tier string) string { return p.Name + "." + tier + ".in" }

// DLQTopic is where a tier's connector parks records its function rejected.
func (p *Pipeline) DLQTopic(tier string) string { return p.Name + "." + tier + ".dlq" }

// ResultsTopic holds one result record per exited message.
func (p *Pipeline) ResultsTopic() string { return p.Name + ".results" }

// Topics lists every topic of the pipeline.
func (p *Pipeline) Topics() []string {
	var ts []string
	for _, t := range p.Tiers {
		ts = append(ts, p.InputTopic(t.Name), p.DLQTopic(t.Name))
	}
	return append(ts, p.ResultsTopic())
}

// ConsumerGroup is the group of a tier's connector.
func (p *Pipeline) ConsumerGroup(tier string) string { return p.Name + "." + tier + ".connector" }

// Encoding is the wire encoding messages travel in.
func (p *Pipeline) Encoding() wire.Encoding {
	if p.WireEncoding == "json" {
		return wire.JSON
	}
	return wire.Binary
}

func (p *Pipeline) setStreamingDefaults() {
	setDefault(&p.WireEncoding, "binary")
	k := &p.Kafka
	if k.EmbeddedListen == "" {
		k.EmbeddedListen = DefaultEmbeddedBroker
	}
	if k.Partitions == 0 {
		k.Partitions = DefaultPartitions
	}
	if k.ClientID == "" {
		k.ClientID = DefaultClientID
	}
	if k.ProduceTimeout == 0 {
		k.ProduceTimeout = DefaultProduceTimeout
	}
	setDefault(&k.MaxRecordBytes, DefaultMaxRecordBytes)
	if p.Funnel.Listen == "" {
		p.Funnel.Listen = DefaultFunnelListen
	}
	setDefault(&p.Funnel.CoAPListen, DefaultCoAPListen)
	setDefault(&p.Funnel.MaxConnections, DefaultFunnelMaxConnections)
	setDefault(&p.Funnel.MaxRequestBytes, p.Input.IngestBytes())
	if p.Admin.Listen == "" {
		p.Admin.Listen = DefaultAdminListen
	}
	for i := range p.Tiers {
		c := &p.Tiers[i].Connector
		setDefault(&c.MaxBatch, DefaultConnectorMaxBatch)
		setDefault(&c.InFlightPerReplica, DefaultInFlightPerReplica)
		setDefault(&c.MaxAttempts, DefaultMaxAttempts)
		setDefault(&c.MaxPendingRecords, DefaultMaxPendingRecords)
		setDefault(&c.Backoff, DefaultBackoff)
		setDefault(&c.MaxBackoff, DefaultMaxBackoff)
		setDefault(&c.RequestTimeout, DefaultRequestTimeout)
		p.setScalingDefaults(&p.Tiers[i])
	}
}

// Envelope bounds of one sample besides its data: the id, device and
// fields around them in a JSON ingest body or a Kafka record.
const (
	ingestEnvelopeBytes = 64 << 10
	recordEnvelopeBytes = 4 << 10
)

// IngestBytes is the largest valid ingest body for the input: raw bytes,
// or JSON with each element written at its longest (a float32 as a
// float64 text with exponent and sign, a uint8 with spaces around it) and
// room for the id, device and whitespace.
func (in *Input) IngestBytes() int64 {
	perElement := 8 // " 255, " and a little
	if in.DType == wire.Float32 {
		perElement = 32 // "-2.2250738585072014e-308, "
	}
	return int64(max(0, wire.NumElements(in.Shape))*perElement + ingestEnvelopeBytes)
}

// RecordBytes bounds the Kafka record of one input sample: its data plus
// the envelope.
func (in *Input) RecordBytes() int {
	return max(0, wire.NumElements(in.Shape))*in.DType.Size() + recordEnvelopeBytes
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (p *Pipeline) validateStreaming() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	addr := func(field, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(field, "%q is not host:port", v)
		}
	}
	if p.WireEncoding != "binary" && p.WireEncoding != "json" {
		bad("wire_encoding", "%q unknown (want binary or json)", p.WireEncoding)
	}
	k := &p.Kafka
	for i, b := range k.Brokers {
		addr(fmt.Sprintf("kafka.brokers[%d]", i), b)
	}
	addr("kafka.embedded_listen", k.EmbeddedListen)
	if k.Partitions < 1 || k.Partitions > 1024 {
		bad("kafka.partitions", "%d must be in [1, 1024]", k.Partitions)
	}
	if k.ProduceTimeout < time.Second {
		bad("kafka.produce_timeout", "%s must be at least 1s", k.ProduceTimeout)
	}
	if k.MaxRecordBytes < 4096 {
		bad("kafka.max_record_bytes", "%d must be at least 4096", k.MaxRecordBytes)
	}
	errs = append(errs, k.validateTopics()...)
	addr("funnel.listen", p.Funnel.Listen)
	if p.Funnel.CoAPListen != "off" {
		addr("funnel.coap_listen", p.Funnel.CoAPListen)
	}
	if p.Funnel.MaxConnections < 16 {
		bad("funnel.max_connections", "%d must be at least 16", p.Funnel.MaxConnections)
	}
	if p.Funnel.MaxRequestBytes < 1024 {
		bad("funnel.max_request_bytes", "%d must be at least 1024", p.Funnel.MaxRequestBytes)
	}
	if n := p.Input.RecordBytes(); n > k.MaxRecordBytes {
		bad("input", "a %s %v sample makes Kafka records of up to %d bytes, over kafka.max_record_bytes %d (raise it together with the brokers' message.max.bytes)",
			p.Input.DType, p.Input.Shape, n, k.MaxRecordBytes)
	}
	addr("admin.listen", p.Admin.Listen)
	for i := range p.Tiers {
		t := &p.Tiers[i]
		f := fmt.Sprintf("tiers[%d] (%s)", i, t.Name)
		c := &t.Connector
		if c.MaxBatch < 1 {
			bad(f+".connector.max_batch", "%d must be at least 1", c.MaxBatch)
		}
		if c.MaxBatch > t.Inference.MaxBatch {
			bad(f+".connector.max_batch", "%d is over the function's inference.max_batch %d", c.MaxBatch, t.Inference.MaxBatch)
		}
		if c.MaxWait < 0 {
			bad(f+".connector.max_wait", "%s must not be negative", c.MaxWait)
		}
		if c.InFlightPerReplica < 1 {
			bad(f+".connector.in_flight_per_replica", "%d must be at least 1", c.InFlightPerReplica)
		}
		if c.MaxAttempts < 1 {
			bad(f+".connector.max_attempts", "%d must be at least 1", c.MaxAttempts)
		}
		if c.MaxPendingRecords < c.MaxBatch {
			bad(f+".connector.max_pending_records", "%d must be at least max_batch %d", c.MaxPendingRecords, c.MaxBatch)
		}
		if c.Backoff <= 0 || c.MaxBackoff < c.Backoff {
			bad(f+".connector.backoff", "%s must be positive and at most max_backoff %s", c.Backoff, c.MaxBackoff)
		}
		if c.RequestTimeout < 10*time.Millisecond {
			bad(f+".connector.request_timeout", "%s must be at least 10ms", c.RequestTimeout)
		}
		errs = append(errs, validateScaling(f, t)...)
	}
	return errs
}

var topicConfigRE = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z0-9]+)*$`)

// validateTopics checks the replication factor and the topic configs ddnn
// can judge on its own; the broker validates the rest when it creates a
// topic.
func (k *Kafka) validateTopics() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	rf := k.Replication()
	switch {
	case rf < -1:
		bad("kafka.replication_factor", "%d must be -1 (the cluster's default) or at least 1", rf)
	case k.Embedded() && rf != 1 && rf != -1:
		bad("kafka.replication_factor", "%d needs kafka.brokers: the embedded broker is one node", rf)
	}
	if k.Embedded() && len(k.TopicConfig) > 0 {
		bad("kafka.topic_config", "needs kafka.brokers: the embedded broker makes its topics with its own defaults")
	}
	for _, key := range slices.Sorted(maps.Keys(k.TopicConfig)) {
		v := k.TopicConfig[key]
		f := fmt.Sprintf("kafka.topic_config[%s]", key)
		if !topicConfigRE.MatchString(key) {
			bad(f, "%q is not a topic config name (like min.insync.replicas)", key)
			continue
		}
		if v == "" {
			bad(f, "empty value")
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		switch key {
		case "min.insync.replicas":
			switch {
			case err != nil || n < 1:
				bad(f, "%q must be a whole number at least 1", v)
			case rf > 0 && n > int64(rf):
				bad(f, "%d is over kafka.replication_factor %d: no write could be acknowledged", n, rf)
			}
		case "retention.ms", "retention.bytes":
			if err != nil || n < -1 {
				bad(f, "%q must be a whole number, -1 for no limit", v)
			}
		}
	}
	return errs
}
