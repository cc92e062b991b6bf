package pipeline

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const secBase = "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\ntiers:\n  - {name: t, model: m.onnx, exit: {output: o}}\n"

// TestKafkaSecurityBad: every problem of the tls, sasl and embedded
// security settings is reported at once, each with its path.
func TestKafkaSecurityBad(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // the whole error, line by line
	}{
		{
			name: "literal password",
			yaml: "kafka:\n  brokers: [k:9093]\n  sasl: [{mechanism: SCRAM-SHA-512, username: u, password: hunter2}]\n",
			want: []string{"kafka.sasl[0].password: " + literalPassword},
		},
		{
			name: "sasl entries",
			yaml: `kafka:
  brokers: [k:9093]
  sasl:
    - {mechanism: PLAIN, password_file: p}
    - {mechanism: SCRAM-SHA-256, username: u}
    - {mechanism: SCRAM-SHA-512, username: u, password_file: p, password_env: P}
    - {mechanism: OAUTHBEARER, username: u}
    - {mechanism: GSSAPI}
    - {username: u}
    - {mechanism: PLAIN, username: u, password_env: P, token_file: t}
`,
			want: []string{
				"kafka.sasl[0].username: required for PLAIN",
				"kafka.sasl[1]: a password is required: password_file or password_env",
				"kafka.sasl[2]: password_file and password_env are both set: keep one",
				"kafka.sasl[3].token_file: required for OAUTHBEARER: a file holding the token",
				"kafka.sasl[3]: OAUTHBEARER takes token_file only, no username or password",
				`kafka.sasl[4].mechanism: "GSSAPI" unknown (want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)`,
				"kafka.sasl[5].mechanism: required (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)",
				"kafka.sasl[6].token_file: only for OAUTHBEARER, not PLAIN",
				"kafka.sasl[6].mechanism: PLAIN is listed twice",
			},
		},
		{
			name: "tls",
			yaml: `kafka:
  brokers: [k:9093]
  tls:
    root_cas_file: ca.pem
    skip_cert_verify: true
    client_certs: [{cert_file: c.pem}, {key_file: k.pem}]
`,
			want: []string{
				"kafka.tls.enabled: false, but other tls settings are given: set enabled: true or remove them",
				"kafka.tls.skip_cert_verify: true makes tls.root_cas_file pointless: verify with the CA instead",
				"kafka.tls.client_certs[0].key_file: required",
				"kafka.tls.client_certs[1].cert_file: required",
			},
		},
		{
			name: "embedded broker",
			yaml: `kafka:
  tls: {enabled: true}
  embedded_tls: {cert_file: c.pem}
  embedded_acls: true
  embedded_users:
    - {username: app, mechanism: PLAIN, password: x}
    - {username: app, mechanism: SCRAM-SHA-512, password_env: A, role: admin}
    - {username: cam, mechanism: SCRAM-SHA-1, password_file: cam, role: device}
  sasl: [{mechanism: SCRAM-SHA-256, username: app, password_env: A}]
`,
			want: []string{
				"kafka.embedded_tls.key_file: required",
				"kafka.embedded_users[0].mechanism: PLAIN is not offered by the embedded broker: use SCRAM-SHA-256 or SCRAM-SHA-512",
				"kafka.embedded_users[0].password: " + literalPassword,
				`kafka.embedded_users[1].username: "app" is listed twice`,
				`kafka.embedded_users[1].role: "admin" unknown (want pipeline or device)`,
				`kafka.embedded_users[2].mechanism: "SCRAM-SHA-1" unknown (the embedded broker has SCRAM-SHA-256 and SCRAM-SHA-512)`,
				"kafka.sasl: required: the embedded broker requires SASL; list one of its pipeline users (kafka.embedded_users) with the same mechanism",
			},
		},
		{
			name: "embedded tls without client tls",
			yaml: "kafka:\n  embedded_tls: {cert_file: c.pem, key_file: k.pem}\n  embedded_acls: true\n  sasl: [{mechanism: SCRAM-SHA-512, username: u, password_env: U}]\n",
			want: []string{
				"kafka.tls.enabled: required: the embedded broker accepts TLS only (kafka.embedded_tls)",
				"kafka.embedded_acls: needs kafka.embedded_users: ACLs name SASL users",
				"kafka.sasl: the embedded broker has no users to authenticate: set kafka.embedded_users",
			},
		},
		{
			name: "client tls without a broker certificate",
			yaml: "kafka:\n  tls: {enabled: true}\n",
			want: []string{"kafka.tls.enabled: true, but the embedded broker has no certificate: set kafka.embedded_tls"},
		},
		{
			name: "embedded settings with brokers",
			yaml: "kafka:\n  brokers: [k:9093]\n  embedded_tls: {cert_file: c, key_file: k}\n  embedded_users: [{username: u, mechanism: SCRAM-SHA-512, password_env: U}]\n  embedded_acls: true\n",
			want: []string{
				"kafka.embedded_tls: configures the embedded broker, which does not run with kafka.brokers",
				"kafka.embedded_users: configures the embedded broker, which does not run with kafka.brokers",
				"kafka.embedded_acls: configures the embedded broker, which does not run with kafka.brokers",
			},
		},
		{
			name: "site's own value reported at the site",
			yaml: `kafka:
  sasl: [{mechanism: SCRAM-SHA-512, username: app, password: x}]
sites:
  - name: edge
    kafka: {brokers: ["k:9093"], sasl: [{mechanism: PLAIN, username: dev, password_file: p, password_env: P}]}
`,
			want: []string{
				"kafka.sasl[0].password: " + literalPassword,
				"sites[0] (edge).kafka.sasl[0]: password_file and password_env are both set: keep one",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := secBase + tc.yaml
			if strings.Contains(tc.yaml, "sites:") {
				y = strings.Replace(y, "exit: {output: o}}", "site: edge, exit: {output: o}}", 1)
			}
			_, err := Parse([]byte(y))
			if err == nil {
				t.Fatal("parsed")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestKafkaSecurityGood: the settings decode, sites inherit them (their
// own value wins, the embedded broker's only where it runs), embedded
// users default to the pipeline role, and relative files resolve against
// the YAML's directory.
func TestKafkaSecurityGood(t *testing.T) {
	y := secBase + `kafka:
  tls:
    enabled: true
    root_cas_file: certs/ca.pem
    client_certs: [{cert_file: certs/c.pem, key_file: /abs/k.pem}]
    server_name: kafka.example
  sasl: [{mechanism: SCRAM-SHA-512, username: app, password_file: secrets/app}]
  embedded_tls: {cert_file: certs/broker.pem, key_file: certs/broker.key}
  embedded_users:
    - {username: app, mechanism: SCRAM-SHA-512, password_file: secrets/app}
    - {username: cam-1, mechanism: SCRAM-SHA-256, password_env: CAM_1, role: device}
  embedded_acls: true
sites:
  - name: edge
    kafka: {embedded_listen: 127.0.0.1:19092}
    funnel: {listen: 127.0.0.1:18080, delivery_listen: 127.0.0.1:18081, coap_listen: "off"}
    admin: {listen: 127.0.0.1:19464}
  - name: cloud
    kafka:
      brokers: [kafka.example:9093]
      sasl: [{mechanism: OAUTHBEARER, token_file: /run/token}]
    funnel: {listen: 127.0.0.1:28080, delivery_listen: 127.0.0.1:28081, coap_listen: "off"}
    admin: {listen: 127.0.0.1:29464}
`
	y = strings.Replace(y, "exit: {output: o}}", "site: edge, exit: {output: o}}", 1)
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	edge, cloud := p.SiteList[0].Kafka, p.SiteList[1].Kafka
	if !edge.TLS.Enabled || edge.TLS.RootCAsFile != filepath.Join(dir, "certs/ca.pem") || edge.TLS.ServerName != "kafka.example" {
		t.Errorf("edge tls = %+v", edge.TLS)
	}
	if c := edge.TLS.ClientCerts[0]; c.CertFile != filepath.Join(dir, "certs/c.pem") || c.KeyFile != "/abs/k.pem" {
		t.Errorf("edge client cert = %+v", c)
	}
	if edge.SASL[0].PasswordFile != filepath.Join(dir, "secrets/app") {
		t.Errorf("edge sasl = %+v", edge.SASL)
	}
	if !edge.Secured() || !edge.EmbeddedACLs || edge.EmbeddedTLS.CertFile != filepath.Join(dir, "certs/broker.pem") {
		t.Errorf("edge embedded security = %+v %v %+v", edge.EmbeddedUsers, edge.EmbeddedACLs, edge.EmbeddedTLS)
	}
	if r := []string{edge.EmbeddedUsers[0].Role, edge.EmbeddedUsers[1].Role}; r[0] != RolePipeline || r[1] != RoleDevice {
		t.Errorf("roles = %v", r)
	}
	if edge.EmbeddedUsers[0].PasswordFile != filepath.Join(dir, "secrets/app") {
		t.Errorf("embedded user password file = %q", edge.EmbeddedUsers[0].PasswordFile)
	}
	// The cloud site has real brokers: its own sasl, the inherited tls,
	// no embedded broker settings.
	if !cloud.TLS.Enabled || len(cloud.SASL) != 1 || cloud.SASL[0].Mechanism != SASLOAuthBearer || cloud.SASL[0].TokenFile != "/run/token" {
		t.Errorf("cloud tls %+v sasl %+v", cloud.TLS, cloud.SASL)
	}
	if cloud.Secured() || cloud.EmbeddedTLS != nil || cloud.EmbeddedACLs {
		t.Errorf("cloud inherited the embedded broker's settings: %+v %+v %v", cloud.EmbeddedUsers, cloud.EmbeddedTLS, cloud.EmbeddedACLs)
	}
	// Resolving twice changes nothing (sections share inherited values).
	before := p.SiteList[0].Kafka.TLS.RootCAsFile
	p.resolveKafkaPaths()
	if after := p.SiteList[0].Kafka.TLS.RootCAsFile; after != before {
		t.Errorf("resolved again: %q, was %q", after, before)
	}
}

// TestCheckEmbeddedExposure: an embedded broker beyond loopback needs TLS
// and SASL, or the explicit opt-out; the funnels' auth settings do not
// count, as the broker does not check them.
func TestCheckEmbeddedExposure(t *testing.T) {
	tls := &EmbeddedTLS{CertFile: "b.pem", KeyFile: "b.key"}
	users := []EmbeddedUser{{Username: "u", Mechanism: "SCRAM-SHA-256", PasswordFile: "pw"}}
	for _, tc := range []struct {
		name string
		k    Kafka
		want string // "" accepts
	}{
		{"loopback", Kafka{EmbeddedListen: "127.0.0.1:9092"}, ""},
		{"localhost", Kafka{EmbeddedListen: "localhost:9092"}, ""},
		{"real brokers", Kafka{Brokers: []string{"k:9092"}, EmbeddedListen: "0.0.0.0:9092"}, ""},
		{"every interface, plaintext", Kafka{EmbeddedListen: "0.0.0.0:9092"}, "set kafka.embedded_tls and kafka.embedded_users"},
		{"an empty host", Kafka{EmbeddedListen: ":9092"}, "kafka.embedded_listen :9092 is reachable from outside this machine"},
		{"TLS without SASL", Kafka{EmbeddedListen: "0.0.0.0:9092", EmbeddedTLS: tls}, "set kafka.embedded_users ("},
		{"SASL without TLS", Kafka{EmbeddedListen: "[::]:9092", EmbeddedUsers: users}, "set kafka.embedded_tls ("},
		{"TLS and SASL", Kafka{EmbeddedListen: "0.0.0.0:9092", EmbeddedTLS: tls, EmbeddedUsers: users}, ""},
		{"opted out", Kafka{EmbeddedListen: "0.0.0.0:9092", EmbeddedAllowInsecure: true}, ""},
		{"device users without ACLs", Kafka{EmbeddedListen: "0.0.0.0:9092", EmbeddedTLS: tls, EmbeddedUsers: append(users, EmbeddedUser{Username: "cam", Role: RoleDevice})},
			"set kafka.embedded_acls (it has device users) ("},
		{"device users with ACLs", Kafka{EmbeddedListen: "0.0.0.0:9092", EmbeddedTLS: tls, EmbeddedACLs: true, EmbeddedUsers: append(users, EmbeddedUser{Username: "cam", Role: RoleDevice})}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.k.CheckEmbeddedExposure("kafka.embedded_listen")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want %q", err, tc.want)
			case err != nil && !strings.Contains(err.Error(), "kafka.embedded_allow_insecure: true"):
				t.Errorf("%v does not name the opt-out", err)
			}
		})
	}
}
