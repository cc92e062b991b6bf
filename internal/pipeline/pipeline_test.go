package pipeline

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestLoadGood(t *testing.T) {
	p, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Input.DType != wire.Float32 || p.Input.Scale != 1 {
		t.Errorf("input = %+v, want float32 with default scale 1", p.Input)
	}
	edge, cloud := p.Tiers[0], p.Tiers[1]
	if edge.Exit.Scores != ScoresProbabilities || edge.Exit.Policy != PolicyEntropy || *edge.Exit.Threshold != 0.3 {
		t.Errorf("edge exit = %+v", edge.Exit)
	}
	if edge.Inference != (Inference{IntraOpThreads: DefaultIntraOpThreads, MaxBatch: DefaultMaxBatch, MaxRequestBytes: DefaultMaxRequestBytes}) {
		t.Errorf("edge inference defaults = %+v", edge.Inference)
	}
	if cloud.Exit.Policy != PolicyMaxProb || cloud.Exit.Scores != ScoresLogits || cloud.Exit.Threshold != nil {
		t.Errorf("cloud exit = %+v", cloud.Exit)
	}
	if edge.Version != "2026-12.retrain_3" || cloud.Version != "" {
		t.Errorf("versions = %q, %q; want edge's label, none on cloud", edge.Version, cloud.Version)
	}
	if cloud.Inference.MaxBatch != 64 || cloud.InputName != "features" {
		t.Errorf("cloud = %+v", cloud)
	}
	dir, _ := filepath.Abs("testdata")
	if got := p.ModelPath(&p.Tiers[0]); got != filepath.Join(dir, "edge.onnx") {
		t.Errorf("relative model path = %s", got)
	}
	if got := p.ModelPath(&p.Tiers[1]); got != "/abs/cloud.onnx" {
		t.Errorf("absolute model path = %s", got)
	}
	if _, i, err := p.Tier("cloud"); err != nil || i != 1 || !p.Last(i) {
		t.Errorf("Tier(cloud) = %d, %v", i, err)
	}
	if _, _, err := p.Tier("fog"); err == nil || !strings.Contains(err.Error(), `tiers: [edge cloud]`) {
		t.Errorf("Tier(fog) error = %v", err)
	}
}

func TestShippedPipelineLoads(t *testing.T) {
	p, err := Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tiers) != 3 || len(p.Classes) != 10 {
		t.Errorf("shipped pipeline has %d tiers and %d classes", len(p.Tiers), len(p.Classes))
	}
}

// TestLoadBadReportsEveryProblem checks that one load names every broken
// field, not just the first.
func TestLoadBadReportsEveryProblem(t *testing.T) {
	_, err := Load("testdata/bad-many.yaml")
	if err == nil {
		t.Fatal("bad pipeline loaded")
	}
	for _, want := range []string{
		`name: "Bad Name" must be lowercase`,
		`input.shape[1]: dimension 0 must be at least 1`,
		`input.scale: -1 must be a positive number`,
		`classes: need at least 2 class names, have 1`,
		`tiers[0] (edge).model: required`,
		`tiers[0] (edge).exit.scores: "odds" unknown`,
		`tiers[0] (edge).exit.policy: "softmax" unknown (want max_prob, entropy or margin)`,
		`tiers[0] (edge).exit.threshold: 1.5 must be in [0, 1]`,
		`tiers[0] (edge).forward.output: required`,
		`tiers[1] (edge).name: duplicate tier name "edge"`,
		`tiers[1] (edge).forward: the last tier always exits`,
		`tiers[1] (edge).inference.intra_op_threads: 300 must be in [1, 256]`,
		`tiers[1] (edge).inference.max_batch: -1 must be at least 1`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	base := "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\n"
	tier := "tiers:\n  - {name: t, model: m.onnx, exit: {output: o}}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty document"},
		{"unknown top-level key", base + tier + "replicas: 3\n", "replicas: unknown field (line 6)"},
		{"unknown tier key", base + "tiers:\n  - {name: t, model: m.onnx, exit: {output: o}, thresh: 1}\n", "tiers[0] (t).thresh: unknown field (line 5)"},
		{"bad dtype", "name: x\ninput: {dtype: int4, shape: [2]}\nclasses: [a, b]\n" + tier, `int4`},
		{"version label with a space", base + "tiers:\n  - {name: t, model: m.onnx, version: v 2, exit: {output: o}}\n", `tiers[0] (t).version: version "v 2" must be letters, digits, '.', '_' or '-'`},
		{"version label too long", base + "tiers:\n  - {name: t, model: m.onnx, version: " + strings.Repeat("v", 33) + ", exit: {output: o}}\n", "tiers[0] (t).version: version \"" + strings.Repeat("v", 33) + "\" must be 1 to 32 characters"},
		{"accepts on the first tier", base + "tiers:\n  - {name: t, model: m.onnx, accepts: [v1], exit: {output: o}}\n", "tiers[0] (t).accepts: not allowed on the first tier"},
		{"accepts naming no model", base + "tiers:\n  - {name: a, model: m.onnx, exit: {output: o, policy: max_prob, threshold: 0.5}, forward: {output: f}}\n  - {name: b, model: m.onnx, accepts: [v1, \"-x\"], exit: {output: o}}\n", `tiers[1] (b).accepts[1]: "-x" names no model`},
		{"version label not a string", base + "tiers:\n  - {name: t, model: m.onnx, version: [v2], exit: {output: o}}\n", "tiers[0] (t).version"},
		{"no tiers", base, "tiers: at least one tier is required"},
		{"eval images alone", base + tier + "eval: {images: i.npy}\n", "eval: images and labels go together"},
		{"missing dtype", "name: x\ninput: {shape: [2]}\nclasses: [a, b]\n" + tier, "input.dtype: required"},
		{"missing threshold before last", base + "tiers:\n  - {name: a, model: m.onnx, exit: {output: o}, forward: {output: f}}\n  - {name: b, model: m.onnx, exit: {output: o}}\n", "tiers[0] (a).exit.threshold: required"},
		{"missing exit output", base + "tiers:\n  - {name: t, model: m.onnx}\n", "tiers[0] (t).exit.output: required"},
		{"duplicate class", "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, a]\n" + tier, `classes[1]: duplicate name "a"`},
		{"few funnel connections", base + tier + "funnel: {max_connections: 4}\n", "funnel.max_connections: 4 must be at least 16"},
		{"bad exempt source", base + tier + "funnel: {per_source_exempt: [10.0.0.0/8, 10.1.2.3]}\n", `funnel.per_source_exempt[1]: "10.1.2.3" is not an address prefix`},
		{"read timeout under header timeout", base + tier + "funnel: {read_header_timeout: 10s, read_timeout: 5s}\n", "funnel.read_timeout: 5s is under read_header_timeout 10s"},
		{"header bytes over 1 MiB", base + tier + "funnel: {max_header_bytes: 2000000}\n", "funnel.max_header_bytes: 2000000 must be in [1024, 1048576]"},
		{"bad coap address", base + tier + "funnel: {coap_listen: nowhere}\n", "funnel.coap_listen"},
		{"bad coaps address", base + tier + "funnel: {coaps_listen: nowhere}\nauth: {devices_file: d.yaml, devices_psk_key_file: k}\n", "funnel.coaps_listen"},
		{"coaps without a credential", base + tier + "funnel: {coaps_listen: 127.0.0.1:5684}\n", "funnel.coaps_listen: DTLS needs a credential: auth.devices_psk_key_file"},
		{"coaps, device tokens, no device credential", base + tier + "funnel: {coaps_listen: 127.0.0.1:5684, tls: {cert_file: c, key_file: k}}\nauth: {devices_file: d.yaml}\n", "devices need a DTLS credential"},
		{"psk key without device tokens", base + tier + "auth: {devices_psk_key_file: k}\n", "auth.devices_psk_key_file: pre-shared keys derive from the device credentials"},
		{"device tokens without the service token", base + tier + "auth: {devices_file: d.yaml, service: none}\n", "auth.service: none contradicts auth.devices: token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("error = %v, want not-exist naming the file", err)
	}
}

func TestReplicasForms(t *testing.T) {
	base := "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\ntiers:\n  - name: t\n    model: m.onnx\n    exit: {output: o}\n"
	for _, tc := range []struct {
		name, yaml string
		min, max   int
		runtime    string
		want       string // error substring
	}{
		{"default", "", 1, 1, RuntimeProcess, ""},
		{"fixed count", "    replicas: 3\n", 3, 3, RuntimeProcess, ""},
		{"range", "    replicas: {min: 0, max: 4, runtime: docker, resources: {cpus: 0.5, memory_mb: 256}}\n", 0, 4, RuntimeDocker, ""},
		{"unknown key", "    replicas: {min: 1, maximum: 4}\n", 0, 0, "", "tiers[0] (t).replicas.maximum: unknown field (line 8)"},
		{"unknown runtime", "    replicas: {min: 1, max: 2, runtime: lambda}\n", 0, 0, "", `replicas.runtime: "lambda" unknown`},
		{"min over max", "    replicas: {min: 3, max: 2}\n", 0, 0, "", "min 3, max 2"},
		{"bad scaling", "    scaling: {lag_per_replica: -1, poll_interval: 1ms}\n", 0, 0, "", "scaling.lag_per_replica: -1 must be at least 1"},
		{"not a number", "    replicas: many\n", 0, 0, "", `tiers[0] (t).replicas: "many" is not a number or a mapping`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(base + tc.yaml))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := p.Tiers[0].Replicas
			if r.Min != tc.min || r.Max != tc.max || r.Runtime != tc.runtime {
				t.Errorf("replicas = %+v", r)
			}
			if s := p.Tiers[0].Scaling; s.StabilizationWindow != 30*time.Second || s.LagPerReplica != 100 {
				t.Errorf("scaling defaults = %+v", s)
			}
		})
	}
}

func TestBrokerDataDir(t *testing.T) {
	cwd, _ := filepath.Abs(".")
	yamlDir, _ := filepath.Abs("testdata")
	for _, tc := range []struct {
		name, set, want string
	}{
		{"default: under the working directory", "", filepath.Join(cwd, ".run", "demo", "kafka")},
		{"relative: against the YAML's directory", "data/kafka", filepath.Join(yamlDir, "data", "kafka")},
		{"absolute", "/var/lib/ddnn", "/var/lib/ddnn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load("testdata/good.yaml")
			if err != nil {
				t.Fatal(err)
			}
			p.Kafka.EmbeddedDataDir = tc.set
			got, err := p.BrokerDataDir()
			if err != nil || got != tc.want {
				t.Errorf("BrokerDataDir() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestKafkaTopicSettings(t *testing.T) {
	base := "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\ntiers:\n  - {name: t, model: m.onnx, exit: {output: o}}\n"
	for _, tc := range []struct {
		name, yaml string
		rf         int16
		config     map[string]string
		want       []string // error substrings
	}{
		{name: "embedded default", rf: 1},
		{name: "brokers default", yaml: "kafka: {brokers: [k:9092]}\n", rf: -1},
		{name: "brokers with settings", yaml: "kafka:\n  brokers: [k:9092]\n  replication_factor: 3\n  topic_config: {min.insync.replicas: 2, retention.ms: 3600000, cleanup.policy: delete}\n",
			rf: 3, config: map[string]string{"min.insync.replicas": "2", "retention.ms": "3600000", "cleanup.policy": "delete"}},
		{name: "topic config on the embedded broker", yaml: "kafka: {topic_config: {retention.ms: -1}}\n", want: []string{"kafka.topic_config: needs kafka.brokers"}},
		{name: "every problem at once", yaml: "kafka:\n  brokers: [k:9092]\n  replication_factor: 2\n  topic_config: {min.insync.replicas: 3, retention.ms: soon, Bad_Key: 1, segment.ms: ''}\n",
			want: []string{
				"kafka.topic_config[min.insync.replicas]: 3 is over kafka.replication_factor 2",
				`kafka.topic_config[retention.ms]: "soon" must be a whole number`,
				`kafka.topic_config[Bad_Key]: "Bad_Key" is not a topic config name`,
				"kafka.topic_config[segment.ms]: empty value",
			}},
		{name: "rf below -1", yaml: "kafka: {brokers: [k:9092], replication_factor: -2}\n", want: []string{"kafka.replication_factor: -2 must be -1"}},
		{name: "rf 3 on the embedded broker", yaml: "kafka: {replication_factor: 3}\n", want: []string{"kafka.replication_factor: 3 needs kafka.brokers"}},
		{name: "min insync on the embedded broker", yaml: "kafka: {topic_config: {min.insync.replicas: 2}}\n", want: []string{"2 is over kafka.replication_factor 1"}},
		{name: "min insync zero", yaml: "kafka: {brokers: [k:9092], topic_config: {min.insync.replicas: 0}}\n", want: []string{`"0" must be a whole number at least 1`}},
		{name: "unknown kafka key", yaml: "kafka: {replication: 3}\n", want: []string{"kafka.replication: unknown field (line 6)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(base + tc.yaml))
			if len(tc.want) > 0 {
				for _, w := range tc.want {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("error = %v, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Kafka.Replication(); got != tc.rf {
				t.Errorf("Replication() = %d, want %d", got, tc.rf)
			}
			if len(p.Kafka.TopicConfig) != len(tc.config) {
				t.Errorf("topic_config = %v, want %v", p.Kafka.TopicConfig, tc.config)
			}
			for k, v := range tc.config {
				if p.Kafka.TopicConfig[k] != v {
					t.Errorf("topic_config[%s] = %q, want %q", k, p.Kafka.TopicConfig[k], v)
				}
			}
		})
	}
}
