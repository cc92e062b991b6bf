package pipeline

import (
	"fmt"
	"maps"
	"net"
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
	DefaultDeliveryListen       = "127.0.0.1:8081"
	DefaultCoAPListen           = "127.0.0.1:5683"
	DefaultCoAPSListen          = "off"
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

// Funnel configures the funnel that devices and inference functions write to.
type Funnel struct {
	// Listen is the HTTP address of the device zone: /v1/ingest, /healthz
	// and /readyz, nothing else.
	Listen string `yaml:"listen"`
	// DeliveryListen is the HTTP address of the delivery zone: the routes
	// the pipeline's own parts deliver to (/v1/tiers/<tier>, /v1/results,
	// /v1/drain) and /metrics, each for bearers of the service credential
	// (auth.service).
	DeliveryListen string `yaml:"delivery_listen"`
	// TLS, when its files are set, serves the device zone over HTTPS.
	TLS FunnelTLS `yaml:"tls"`
	// MaxRequestBytes bounds a device's ingest body; larger ones get 413.
	// The default, Input.IngestBytes, takes the largest valid sample in
	// either form. Delivery routes between the pipeline's parts take up to
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxConnections bounds the device listener's open HTTP connections,
	// so an overload cannot exhaust the process's file descriptors. At the
	// bound a new connection takes the place of the open one that has gone
	// longest without a request in progress (idle, or still sending its
	// header); when every one is in a request, the new one is closed.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource bounds the device listener's open
	// connections from one IP address (an IPv6 /64); past it a new one is
	// closed.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// PerSourceExempt are address prefixes whose connections are not
	// counted per source (they still count toward max_connections).
	PerSourceExempt []string `yaml:"per_source_exempt"`
	// MaxHeaderBytes bounds a device request's header; larger ones get 431
	// and the connection is closed.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout bounds the TLS handshake and the reading of a
	// device request's header, ReadTimeout the header and body together,
	// IdleTimeout how long a kept-alive connection waits for its next
	// request, and WriteTimeout how long one write of an answer may wait
	// for the device to read (one that does not read its answers is
	// closed after it).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	// CoAPListen is the UDP address of coap://HOST/v1/ingest; "off"
	// disables CoAP.
	CoAPListen string `yaml:"coap_listen"`
	// CoAPSListen is the UDP address of coaps://HOST/v1/ingest, CoAP over
	// DTLS: devices authenticate with a pre-shared key
	// (auth.devices_psk_key_file) or a client certificate (funnel.tls with
	// client_ca_file). Default "off".
	CoAPSListen string `yaml:"coaps_listen"`
	// DeviceRateLimit bounds how fast each device may send (off by
	// default); over it ingest answers 429 (CoAP 4.29).
	DeviceRateLimit RateLimit `yaml:"device_rate_limit"`
	// CoAPReassembly bounds the memory Block1 uploads hold.
	CoAPReassembly CoAPReassembly `yaml:"coap_reassembly"`
}

// FunnelTLS is the device listener's certificate, and the CA of the
// devices' client certificates (whose common name is then the device id).
type FunnelTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, asks devices for a certificate signed by it;
	// a device that presents one needs no token.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the device listener serves HTTPS.
func (t *FunnelTLS) Enabled() bool { return t.CertFile != "" }

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

// WireEncoding names how messages travel between a pipeline's parts.
type WireEncoding string

// Wire encodings.
const (
	EncodingBinary WireEncoding = "binary"
	EncodingJSON   WireEncoding = "json"
)

// Encoding is the wire encoding messages travel in.
func (p *Pipeline) Encoding() wire.Encoding {
	if p.WireEncoding == EncodingJSON {
		return wire.JSON
	}
	return wire.Binary
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

func (p *Pipeline) validateStreaming() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if p.WireEncoding != EncodingBinary && p.WireEncoding != EncodingJSON {
		bad("wire_encoding", "%q unknown (want %s or %s)", p.WireEncoding, EncodingBinary, EncodingJSON)
	}
	errs = append(errs, p.Kafka.validateSettings("kafka")...)
	errs = append(errs, p.Funnel.validateSettings("funnel")...)
	errs = append(errs, p.Auth.validate()...)
	errs = append(errs, p.validateCoAPS()...)
	if n := p.Input.RecordBytes(); n > p.Kafka.MaxRecordBytes {
		bad("input", "a %s %v sample makes Kafka records of up to %d bytes, over kafka.max_record_bytes %d (raise it together with the brokers' message.max.bytes)",
			p.Input.DType, p.Input.Shape, n, p.Kafka.MaxRecordBytes)
	}
	if len(p.SiteList) == 0 {
		errs = append(errs, p.Kafka.validatePlacement("kafka")...)
		errs = append(errs, p.Funnel.validatePlacement("funnel")...)
		if err := checkAddr("admin.listen", p.Admin.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.validateSites()...)
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

// checkAddr reports an address that is not host:port.
func checkAddr(field, v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("%s: %q is not host:port", field, v)
	}
	return nil
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

// validateSettings checks the settings a site inherits from the top-level
// funnel section; f is the section's path.
func (fu *Funnel) validateSettings(f string) []error {
	var errs []error
	if fu.MaxConnections < 16 {
		errs = append(errs, fmt.Errorf("%s.max_connections: %d must be at least 16", f, fu.MaxConnections))
	}
	if fu.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("%s.max_request_bytes: %d must be at least 1024", f, fu.MaxRequestBytes))
	}
	if t := fu.TLS; (t.CertFile == "") != (t.KeyFile == "") || (t.ClientCAFile != "" && t.CertFile == "") {
		errs = append(errs, fmt.Errorf("%s.tls: cert_file and key_file go together, and client_ca_file needs them", f))
	}
	return append(errs, fu.validateLimits(f)...)
}

// validatePlacement checks the funnel's addresses; f is the section's path.
func (fu *Funnel) validatePlacement(f string) []error {
	var errs []error
	if err := checkAddr(f+".listen", fu.Listen); err != nil {
		errs = append(errs, err)
	}
	if err := checkAddr(f+".delivery_listen", fu.DeliveryListen); err != nil {
		errs = append(errs, err)
	}
	if _, port, _ := net.SplitHostPort(fu.Listen); fu.DeliveryListen == fu.Listen && port != "0" {
		errs = append(errs, fmt.Errorf("%s.delivery_listen: %s is also %s.listen: the device and delivery zones need their own listeners", f, fu.DeliveryListen, f))
	}
	if fu.CoAPListen != "off" {
		if err := checkAddr(f+".coap_listen", fu.CoAPListen); err != nil {
			errs = append(errs, err)
		}
	}
	if fu.CoAPSListen != "off" {
		if err := checkAddr(f+".coaps_listen", fu.CoAPSListen); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// validateCoAPS checks that every site serving CoAP over DTLS has a
// credential to do it with.
func (p *Pipeline) validateCoAPS() []error {
	var errs []error
	for i, s := range p.Sites() {
		if s.Funnel.CoAPSListen == "off" || s.Funnel.CoAPSListen == "" {
			continue
		}
		f := "funnel"
		if len(p.SiteList) > 0 {
			f = p.sitePath(i) + ".funnel"
		}
		if p.Auth.DevicesPSKKeyFile == "" && !s.Funnel.TLS.Enabled() {
			errs = append(errs, fmt.Errorf("%s.coaps_listen: DTLS needs a credential: auth.devices_psk_key_file (pre-shared keys) or %s.tls (a certificate)", f, f))
		} else if p.Auth.Devices == AuthToken && p.Auth.DevicesPSKKeyFile == "" && s.Funnel.TLS.ClientCAFile == "" {
			errs = append(errs, fmt.Errorf("%s.coaps_listen: with auth.devices: token, devices need a DTLS credential: set auth.devices_psk_key_file (pre-shared keys) or %s.tls.client_ca_file (client certificates)", f, f))
		}
	}
	return errs
}

var topicConfigRE = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z0-9]+)*$`)
