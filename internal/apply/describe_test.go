package apply

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// credentials sets every kind of credential setting: where the service
// token, the device credentials and their DTLS master key, the Kafka SASL
// passwords and token, and the private keys are.
const credentials = `auth:
  devices_file: /secret/devices.yaml
  devices_psk_key_file: /secret/psk.key
  service_token_file: /secret/service.token
kafka:
  brokers: [127.0.0.1:9092]
  tls:
    enabled: true
    client_certs: [{cert_file: /pub/client.crt, key_file: /secret/client.key}]
  sasl:
    - {mechanism: SCRAM-SHA-256, username: ddnn, password_file: /secret/kafka.pass}
    - {mechanism: PLAIN, username: other, password_env: SECRET_KAFKA_PASSWORD}
    - {mechanism: OAUTHBEARER, token_file: /secret/oauth.token}
funnel:
  tls: {cert_file: /pub/funnel.crt, key_file: /secret/funnel.key}
`

// TestDescribeRedactsCredentials: the description carries no credential
// setting's value, it decodes to the pipeline it describes, and a
// changed credential setting is still seen, and refused.
func TestDescribeRedactsCredentials(t *testing.T) {
	y := shipped(t) + credentials
	s := spec(t, y)
	d, err := Describe(s.Pipeline)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"/secret/", "SECRET_KAFKA_PASSWORD"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the description holds %q:\n%s", secret, b)
		}
	}
	for _, public := range []string{"/pub/client.crt", `"username":"ddnn"`, `"model_sha256":{"cloud":"`} {
		if !strings.Contains(string(b), public) {
			t.Errorf("the description lacks %s:\n%s", public, b)
		}
	}
	if plan := Compute(s, spec(t, y)); !plan.Empty() {
		t.Errorf("a pipeline against itself: %+v, want an empty plan", plan)
	}
	plan := Compute(s, spec(t, strings.Replace(y, "/secret/service.token", "/secret/rotated.token", 1)))
	if !slices.Equal(paths(plan.Refused), []string{"auth.service_token_file"}) || strings.Contains(plan.Refused[0].New, "rotated") {
		t.Errorf("service_token_file changed: refused %+v, want it, redacted", plan.Refused)
	}
}
