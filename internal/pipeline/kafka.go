package pipeline

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// Defaults of the kafka section.
const (
	DefaultEmbeddedBroker = "127.0.0.1:9092"
	DefaultPartitions     = 4
	DefaultClientID       = "ddnn"
	DefaultProduceTimeout = 5 * time.Second
	DefaultMaxRecordBytes = 1000000
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
	// default.replication.factor; 0 (the default) means 1 on the embedded broker
	// and -1 with brokers (see Replication).
	ReplicationFactor int16 `yaml:"replication_factor"`
	// TopicConfig is set on the topics ddnn creates and checked on the
	// topics that exist (e.g. min.insync.replicas, retention.ms).
	TopicConfig map[string]string `yaml:"topic_config"`

	// TLS and SASL are how every client of the pipeline (each role, `ddnn
	// up`'s admin client, bench, results) connects; see kafkasec.go and
	// docs/kafka-security.md.
	TLS  *KafkaTLS   `yaml:"tls"`
	SASL []KafkaSASL `yaml:"sasl"`
	// EmbeddedTLS makes the embedded broker accept TLS connections only.
	EmbeddedTLS *EmbeddedTLS `yaml:"embedded_tls"`
	// EmbeddedUsers makes the embedded broker require SASL, with these
	// users.
	EmbeddedUsers []EmbeddedUser `yaml:"embedded_users"`
	// EmbeddedACLs makes the embedded broker check ACLs: each user may do
	// what its role allows.
	EmbeddedACLs bool `yaml:"embedded_acls"`
	// EmbeddedAllowInsecure lets the embedded broker listen beyond
	// loopback without TLS and SASL (see CheckEmbeddedExposure): anyone
	// who reaches it may then read and write every topic.
	EmbeddedAllowInsecure bool `yaml:"embedded_allow_insecure"`
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

// BrokerDataDir is the embedded broker's data directory of a one-site
// pipeline, absolute: kafka.embedded_data_dir resolved against the YAML's
// directory, or by default .run/<name>/kafka under the working directory,
// so a pipeline started again from the same directory finds its data (see
// SiteDataDir for a declared site).
func (p *Pipeline) BrokerDataDir() (string, error) {
	return p.SiteDataDir(&p.Sites()[0])
}

// SeedBrokers is what clients dial: the configured brokers or the embedded
// broker's address.
func (k *Kafka) SeedBrokers() []string {
	if k.Embedded() {
		return []string{k.EmbeddedListen}
	}
	return k.Brokers
}

// validateSettings checks the settings a site inherits from the top-level
// kafka section; f is the section's path.
func (k *Kafka) validateSettings(f string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{f, field}, args...)...))
	}
	if k.ClientID == "" {
		bad("client_id", "required: it prefixes the Kafka client ids")
	}
	if k.Partitions < 1 || k.Partitions > 1024 {
		bad("partitions", "%d must be in [1, 1024]", k.Partitions)
	}
	if k.ProduceTimeout < time.Second {
		bad("produce_timeout", "%s must be at least 1s", k.ProduceTimeout)
	}
	if k.MaxRecordBytes < 4096 {
		bad("max_record_bytes", "%d must be at least 4096", k.MaxRecordBytes)
	}
	if k.ReplicationFactor < -1 {
		bad("replication_factor", "%d must be -1 (the cluster's default) or at least 1", k.ReplicationFactor)
	}
	errs = append(errs, k.validateSecurity(f)...)
	for _, key := range slices.Sorted(maps.Keys(k.TopicConfig)) {
		v := k.TopicConfig[key]
		field := fmt.Sprintf("topic_config[%s]", key)
		if !topicConfigRE.MatchString(key) {
			bad(field, "%q is not a topic config name (like min.insync.replicas)", key)
			continue
		}
		if v == "" {
			bad(field, "empty value")
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		switch key {
		case "min.insync.replicas":
			if err != nil || n < 1 {
				bad(field, "%q must be a whole number at least 1", v)
			}
		case "retention.ms", "retention.bytes":
			if err != nil || n < -1 {
				bad(field, "%q must be a whole number, -1 for no limit", v)
			}
		}
	}
	return errs
}

// validatePlacement checks what depends on where the Kafka is: its
// addresses, and the topic settings the embedded broker cannot honour; f
// is the section's path.
func (k *Kafka) validatePlacement(f string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{f, field}, args...)...))
	}
	for i, b := range k.Brokers {
		if err := checkAddr(fmt.Sprintf("%s.brokers[%d]", f, i), b); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkAddr(f+".embedded_listen", k.EmbeddedListen); err != nil {
		errs = append(errs, err)
	}
	rf := k.Replication()
	if k.Embedded() && rf > 1 {
		bad("replication_factor", "%d needs kafka.brokers: the embedded broker is one node", rf)
	}
	if k.Embedded() && len(k.TopicConfig) > 0 {
		bad("topic_config", "needs kafka.brokers: the embedded broker makes its topics with its own defaults")
	}
	if v, ok := k.TopicConfig["min.insync.replicas"]; ok && rf > 0 {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > int64(rf) {
			bad("topic_config[min.insync.replicas]", "%d is over kafka.replication_factor %d: no write could be acknowledged", n, rf)
		}
	}
	return append(errs, k.validateEmbeddedSecurity(f)...)
}

var topicConfigRE = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z0-9]+)*$`)
