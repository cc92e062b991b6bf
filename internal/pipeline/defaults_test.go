package pipeline

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// defaultsBase is a one-tier pipeline without its input: top-level keys
// go in the first %s, exit keys in the tier's exit, tier keys in the
// tier.
const defaultsBase = `name: t
classes: [a, b]
%s
tiers:
  - name: edge
    model: e.onnx
    exit: {output: o%s}
%s
`

// place builds a pipeline with snippet at where: "top", "tier" or "exit".
func place(where, snippet string) string {
	top, exit, tier := "input: {dtype: uint8, shape: [4]}\n", "", ""
	switch where {
	case "top":
		if strings.HasPrefix(snippet, "input:") {
			top = ""
		}
		top += snippet
	case "exit":
		exit = ", " + snippet
	case "tier":
		tier = "    " + snippet
	}
	return fmt.Sprintf(defaultsBase, top, exit, tier)
}

// TestDefaultsAndExplicitZero walks every setting with a default: left out
// it takes the default, a valid value is kept, and an explicit zero is
// kept where zero means something and refused, naming the field, where it
// does not; it never silently becomes the default.
func TestDefaultsAndExplicitZero(t *testing.T) {
	ingest := int64(4*8 + ingestEnvelopeBytes) // Input.IngestBytes of uint8 [4]
	for _, tc := range []struct {
		where, tmpl string // tmpl has %s for the value
		get         func(p *Pipeline) any
		def         any
		valid       string
		validWant   any
		zero        string // the zero value as YAML
		zeroErr     string // "" when zero is kept
	}{
		{"top", "input: {dtype: uint8, shape: [4], scale: %s}", func(p *Pipeline) any { return p.Input.Scale }, 1.0, "0.5", 0.5, "0", "input.scale: 0 must be a positive number"},
		{"top", "wire_encoding: %s", func(p *Pipeline) any { return p.WireEncoding }, EncodingBinary, "json", EncodingJSON, `""`, `wire_encoding: "" unknown`},
		{"top", "kafka: {partitions: %s}", func(p *Pipeline) any { return p.Kafka.Partitions }, int32(DefaultPartitions), "8", int32(8), "0", "kafka.partitions: 0 must be in [1, 1024]"},
		{"top", "kafka: {client_id: %s}", func(p *Pipeline) any { return p.Kafka.ClientID }, DefaultClientID, "lab", "lab", `""`, "kafka.client_id: required"},
		{"top", "kafka: {produce_timeout: %s}", func(p *Pipeline) any { return p.Kafka.ProduceTimeout }, DefaultProduceTimeout, "2s", 2 * time.Second, "0s", "kafka.produce_timeout: 0s must be at least 1s"},
		{"top", "kafka: {max_record_bytes: %s}", func(p *Pipeline) any { return p.Kafka.MaxRecordBytes }, DefaultMaxRecordBytes, "8192", 8192, "0", "kafka.max_record_bytes: 0 must be at least 4096"},
		{"top", "kafka: {replication_factor: %s}", func(p *Pipeline) any { return p.Kafka.Replication() }, int16(1), "-1", int16(-1), "0", ""},
		{"top", "kafka: {embedded_listen: %s}", func(p *Pipeline) any { return p.Kafka.EmbeddedListen }, DefaultEmbeddedBroker, "127.0.0.1:19092", "127.0.0.1:19092", `""`, `kafka.embedded_listen: "" is not host:port`},
		{"top", "funnel: {listen: %s}", func(p *Pipeline) any { return p.Funnel.Listen }, DefaultFunnelListen, "127.0.0.1:18080", "127.0.0.1:18080", `""`, `funnel.listen: "" is not host:port`},
		{"top", "funnel: {delivery_listen: %s}", func(p *Pipeline) any { return p.Funnel.DeliveryListen }, DefaultDeliveryListen, "127.0.0.1:18081", "127.0.0.1:18081", `""`, `funnel.delivery_listen: "" is not host:port`},
		{"top", "funnel: {coap_listen: %s}", func(p *Pipeline) any { return p.Funnel.CoAPListen }, DefaultCoAPListen, "off", "off", `""`, `funnel.coap_listen: "" is not host:port`},
		{"top", "admin: {listen: %s}", func(p *Pipeline) any { return p.Admin.Listen }, DefaultAdminListen, "127.0.0.1:19464", "127.0.0.1:19464", `""`, `admin.listen: "" is not host:port`},
		{"top", "funnel: {max_connections: %s}", func(p *Pipeline) any { return p.Funnel.MaxConnections }, DefaultFunnelMaxConnections, "100", 100, "0", "funnel.max_connections: 0 must be at least 16"},
		{"top", "funnel: {max_connections_per_source: %s}", func(p *Pipeline) any { return p.Funnel.MaxConnectionsPerSource }, DefaultFunnelMaxConnectionsPerSource, "8", 8, "0", "funnel.max_connections_per_source: 0 must be at least 1"},
		{"top", "funnel: {per_source_exempt: %s}", func(p *Pipeline) any { return p.Funnel.PerSourceExempt }, DefaultFunnelPerSourceExempt, "[10.0.0.0/8]", []string{"10.0.0.0/8"}, "[]", ""}, // [] counts every source
		{"top", "funnel: {max_header_bytes: %s}", func(p *Pipeline) any { return p.Funnel.MaxHeaderBytes }, DefaultFunnelMaxHeaderBytes, "4096", 4096, "0", "funnel.max_header_bytes: 0 must be in [1024, 1048576]"},
		{"top", "funnel: {read_header_timeout: %s}", func(p *Pipeline) any { return p.Funnel.ReadHeaderTimeout }, DefaultFunnelReadHeaderTimeout, "2s", 2 * time.Second, "0s", "funnel.read_header_timeout: 0s must be at least 100ms"},
		{"top", "funnel: {read_timeout: %s}", func(p *Pipeline) any { return p.Funnel.ReadTimeout }, DefaultFunnelReadTimeout, "20s", 20 * time.Second, "0s", "funnel.read_timeout: 0s must be at least 100ms"},
		{"top", "funnel: {idle_timeout: %s}", func(p *Pipeline) any { return p.Funnel.IdleTimeout }, DefaultFunnelIdleTimeout, "5s", 5 * time.Second, "0s", "funnel.idle_timeout: 0s must be at least 100ms"},
		{"top", "funnel: {write_timeout: %s}", func(p *Pipeline) any { return p.Funnel.WriteTimeout }, DefaultFunnelWriteTimeout, "5s", 5 * time.Second, "0s", "funnel.write_timeout: 0s must be at least 100ms"},
		{"top", "funnel: {max_request_bytes: %s}", func(p *Pipeline) any { return p.Funnel.MaxRequestBytes }, ingest, "2048", int64(2048), "0", "funnel.max_request_bytes: 0 must be at least 1024"},
		{"top", "funnel: {device_rate_limit: {rate: %s}}", func(p *Pipeline) any { return p.Funnel.DeviceRateLimit.Rate }, 0.0, "5", 5.0, "0", ""},
		{"top", "funnel: {device_rate_limit: {rate: 2.5, burst: %s}}", func(p *Pipeline) any { return p.Funnel.DeviceRateLimit.Burst }, 3, "10", 10, "0", "funnel.device_rate_limit.burst: 0 must be at least 1"},
		{"top", "funnel: {device_rate_limit: {max_devices: %s}}", func(p *Pipeline) any { return p.Funnel.DeviceRateLimit.MaxDevices }, DefaultRateLimitMaxDevices, "10", 10, "0", "funnel.device_rate_limit.max_devices: 0 must be at least 1"},
		{"top", "funnel: {coap_reassembly: {transfer_timeout: %s}}", func(p *Pipeline) any { return p.Funnel.CoAPReassembly.TransferTimeout }, DefaultCoAPTransferTimeout, "3s", 3 * time.Second, "0s", "funnel.coap_reassembly.transfer_timeout: 0s must be at least 100ms"},
		{"top", "funnel: {coap_reassembly: {max_transfers_per_peer: %s}}", func(p *Pipeline) any { return p.Funnel.CoAPReassembly.MaxTransfersPerPeer }, DefaultCoAPTransfersPerPeer, "2", 2, "0", "funnel.coap_reassembly.max_transfers_per_peer: 0 must be at least 1"},
		{"top", "funnel: {coap_reassembly: {max_bytes_per_peer: %s}}", func(p *Pipeline) any { return p.Funnel.CoAPReassembly.MaxBytesPerPeer }, 2 * ingest, "200000", int64(200000), "0", "funnel.coap_reassembly.max_bytes_per_peer: 0 is under max_request_bytes"},
		{"top", "funnel: {coap_reassembly: {max_bytes: %s}}", func(p *Pipeline) any { return p.Funnel.CoAPReassembly.MaxBytes }, int64(DefaultCoAPReassemblyBytes), "2000000", int64(2000000), "0", "funnel.coap_reassembly.max_bytes: 0 is under max_bytes_per_peer"},
		{"top", "funnel: {wait: {max: %s}}", func(p *Pipeline) any { return p.Funnel.Wait.Max }, DefaultWaitMax, "0s", time.Duration(0), "-1s", "funnel.wait.max: -1s must not be negative (0 turns waits off)"},
		{"top", "funnel: {wait: {max_waiters: %s}}", func(p *Pipeline) any { return p.Funnel.Wait.MaxWaiters }, DefaultMaxWaiters, "100", 100, "0", "funnel.wait.max_waiters: 0 must be at least 1"},
		{"top", "funnel: {wait: {max_waiters_per_device: %s}}", func(p *Pipeline) any { return p.Funnel.Wait.MaxWaitersPerDevice }, DefaultMaxWaitersPerDevice, "2", 2, "0", "funnel.wait.max_waiters_per_device: 0 must be in [1, max_waiters 10000]"},
		{"exit", "scores: %s", func(p *Pipeline) any { return p.Tiers[0].Exit.Scores }, ScoresProbabilities, "logits", ScoresLogits, `""`, `tiers[0] (edge).exit.scores: "" unknown`},
		{"exit", "policy: %s", func(p *Pipeline) any { return p.Tiers[0].Exit.Policy }, PolicyMaxProb, "entropy", PolicyEntropy, `""`, `tiers[0] (edge).exit.policy: "" unknown`},
		{"tier", "inference: {intra_op_threads: %s}", func(p *Pipeline) any { return p.Tiers[0].Inference.IntraOpThreads }, DefaultIntraOpThreads, "2", 2, "0", "tiers[0] (edge).inference.intra_op_threads: 0 must be in [1, 256]"},
		{"tier", "inference: {max_batch: %s}", func(p *Pipeline) any { return p.Tiers[0].Inference.MaxBatch }, DefaultMaxBatch, "128", 128, "0", "tiers[0] (edge).inference.max_batch: 0 must be at least 1"},
		{"tier", "inference: {max_request_bytes: %s}", func(p *Pipeline) any { return p.Tiers[0].Inference.MaxRequestBytes }, int64(DefaultMaxRequestBytes), "4096", int64(4096), "0", "tiers[0] (edge).inference.max_request_bytes: 0 must be at least 1024"},
		{"tier", "inference: {emulate: {service_time_per_sample: %s}}", func(p *Pipeline) any { return p.Tiers[0].Inference.Emulate.ServiceTimePerSample }, time.Duration(0), "2ms", 2 * time.Millisecond, "0s", ""},
		{"tier", "inference: {emulate: {max_concurrency: %s}}", func(p *Pipeline) any { return p.Tiers[0].Inference.Emulate.MaxConcurrency }, 0, "2", 2, "0", ""},
		{"tier", "connector: {max_batch: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.MaxBatch }, DefaultConnectorMaxBatch, "8", 8, "0", "tiers[0] (edge).connector.max_batch: 0 must be at least 1"},
		{"tier", "connector: {max_wait: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.MaxWait }, time.Duration(0), "5ms", 5 * time.Millisecond, "0s", ""},
		{"tier", "connector: {in_flight_per_replica: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.InFlightPerReplica }, DefaultInFlightPerReplica, "2", 2, "0", "tiers[0] (edge).connector.in_flight_per_replica: 0 must be at least 1"},
		{"tier", "connector: {max_attempts: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.MaxAttempts }, DefaultMaxAttempts, "3", 3, "0", "tiers[0] (edge).connector.max_attempts: 0 must be at least 1"},
		{"tier", "connector: {max_pending_records: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.MaxPendingRecords }, DefaultMaxPendingRecords, "500", 500, "0", "tiers[0] (edge).connector.max_pending_records: 0 must be at least max_batch 64"},
		{"tier", "connector: {backoff: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.Backoff }, DefaultBackoff, "10ms", 10 * time.Millisecond, "0s", "tiers[0] (edge).connector.backoff: 0s must be positive"},
		{"tier", "connector: {max_backoff: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.MaxBackoff }, DefaultMaxBackoff, "1s", time.Second, "0s", "tiers[0] (edge).connector.backoff: 50ms must be positive and at most max_backoff 0s"},
		{"tier", "connector: {request_timeout: %s}", func(p *Pipeline) any { return p.Tiers[0].Connector.RequestTimeout }, DefaultRequestTimeout, "1s", time.Second, "0s", "tiers[0] (edge).connector.request_timeout: 0s must be at least 10ms"},
		{"tier", "replicas: %s", func(p *Pipeline) any { r := p.Tiers[0].Replicas; return [2]int{r.Min, r.Max} }, [2]int{1, 1}, "3", [2]int{3, 3}, "0", "tiers[0] (edge).replicas: min 0, max 0"},
		{"tier", "replicas: {max: %s}", func(p *Pipeline) any { r := p.Tiers[0].Replicas; return [2]int{r.Min, r.Max} }, [2]int{1, 1}, "3", [2]int{0, 3}, "0", "tiers[0] (edge).replicas: min 0, max 0"},
		{"tier", "replicas: {runtime: %s}", func(p *Pipeline) any { return p.Tiers[0].Replicas.Runtime }, RuntimeProcess, "docker", RuntimeDocker, `""`, `tiers[0] (edge).replicas.runtime: "" unknown`},
		{"tier", "replicas: {kubernetes: {port: %s}}", func(p *Pipeline) any { return p.Tiers[0].Replicas.Kubernetes.Port }, 8090, "8000", 8000, "0", "tiers[0] (edge).replicas.kubernetes.port: 0 must be in [1, 65535]"},
		{"tier", "scaling: {poll_interval: %s}", func(p *Pipeline) any { return p.Tiers[0].Scaling.PollInterval }, time.Second, "2s", 2 * time.Second, "0s", "tiers[0] (edge).scaling.poll_interval: 0s must be at least 100ms"},
		{"tier", "scaling: {target_drain: %s}", func(p *Pipeline) any { return p.Tiers[0].Scaling.TargetDrain }, 10 * time.Second, "5s", 5 * time.Second, "0s", "tiers[0] (edge).scaling.target_drain: 0s must be positive"},
		{"tier", "scaling: {lag_per_replica: %s}", func(p *Pipeline) any { return p.Tiers[0].Scaling.LagPerReplica }, int64(100), "50", int64(50), "0", "tiers[0] (edge).scaling.lag_per_replica: 0 must be at least 1"},
		{"tier", "scaling: {activation_lag: %s}", func(p *Pipeline) any { return p.Tiers[0].Scaling.ActivationLag }, int64(1), "10", int64(10), "0", "tiers[0] (edge).scaling.activation_lag: 0 must be at least 1"},
		{"tier", "scaling: {stabilization_window: %s}", func(p *Pipeline) any { return p.Tiers[0].Scaling.StabilizationWindow }, 30 * time.Second, "5s", 5 * time.Second, "0s", ""},
		{"tier", "scaling: {cooldown_to_zero: %s}", func(p *Pipeline) any { return p.Tiers[0].Scaling.CooldownToZero }, 60 * time.Second, "5s", 5 * time.Second, "0s", ""},
	} {
		name := strings.SplitN(tc.tmpl, "%s", 2)[0]
		t.Run(name, func(t *testing.T) {
			absent := place("", "")
			if strings.Contains(name, "burst") {
				absent = place(tc.where, "funnel: {device_rate_limit: {rate: 2.5}}")
			}
			p, err := Parse([]byte(absent))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(p); !reflect.DeepEqual(got, tc.def) {
				t.Errorf("left out: %#v, want the default %#v", got, tc.def)
			}
			p, err = Parse([]byte(place(tc.where, fmt.Sprintf(tc.tmpl, tc.valid))))
			if err != nil {
				t.Fatalf("%s: %v", tc.valid, err)
			}
			if got := tc.get(p); !reflect.DeepEqual(got, tc.validWant) {
				t.Errorf("set to %s: %#v, want %#v", tc.valid, got, tc.validWant)
			}
			p, err = Parse([]byte(place(tc.where, fmt.Sprintf(tc.tmpl, tc.zero))))
			switch {
			case tc.zeroErr == "" && err != nil:
				t.Errorf("set to %s: %v, want it kept", tc.zero, err)
			case tc.zeroErr == "":
				if got, zero := tc.get(p), reflect.Zero(reflect.TypeOf(tc.def)).Interface(); !reflect.DeepEqual(got, zero) && !emptySlice(got) &&
					!strings.Contains(name, "replication_factor") {
					t.Errorf("set to %s: %#v, want it kept", tc.zero, got)
				}
			case err == nil:
				t.Errorf("set to %s: accepted as %#v, want error %q", tc.zero, tc.get(p), tc.zeroErr)
			case !strings.Contains(err.Error(), tc.zeroErr):
				t.Errorf("set to %s: error\n%v\nwant it to contain %q", tc.zero, err, tc.zeroErr)
			}
		})
	}
}

// TestSiteInheritsOrKeepsItsOwn: a site starts from the top-level
// settings; what it sets, 0 included, is its own and validated as such.
func TestSiteInheritsOrKeepsItsOwn(t *testing.T) {
	y := `name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
kafka: {partitions: 8, embedded_sync_writes: true}
funnel: {max_connections: 100}
sites:
  - {name: a, kafka: {embedded_listen: 127.0.0.1:19092}, funnel: {listen: 127.0.0.1:18080, delivery_listen: 127.0.0.1:18081, coap_listen: "off"}, admin: {listen: 127.0.0.1:19464}}
  - name: b
    kafka: {partitions: 2, embedded_sync_writes: false, embedded_listen: 127.0.0.1:29092}
    funnel: {max_connections: 16, listen: 127.0.0.1:28080, delivery_listen: 127.0.0.1:28081, coap_listen: "off"}
    admin: {listen: 127.0.0.1:29464}
tiers:
  - {name: edge, site: a, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, site: b, model: c.onnx, exit: {output: o}}
`
	p, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.SiteList[0], p.SiteList[1]
	if a.Kafka.Partitions != 8 || !a.Kafka.EmbeddedSyncWrites || a.Funnel.MaxConnections != 100 {
		t.Errorf("site a did not inherit: partitions %d, sync %v, max_connections %d", a.Kafka.Partitions, a.Kafka.EmbeddedSyncWrites, a.Funnel.MaxConnections)
	}
	if b.Kafka.Partitions != 2 || b.Kafka.EmbeddedSyncWrites || b.Funnel.MaxConnections != 16 {
		t.Errorf("site b lost its own: partitions %d, sync %v, max_connections %d", b.Kafka.Partitions, b.Kafka.EmbeddedSyncWrites, b.Funnel.MaxConnections)
	}
	_, err = Parse([]byte(strings.Replace(y, "partitions: 2,", "partitions: 0,", 1)))
	if want := "sites[1] (b).kafka.partitions: 0 must be in [1, 1024]"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a site's partitions: 0 gave %v, want %q", err, want)
	}
}

// emptySlice reports whether v is a slice of no elements (an explicit []
// decodes to one that is not nil).
func emptySlice(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Slice && rv.Len() == 0
}
