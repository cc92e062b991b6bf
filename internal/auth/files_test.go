package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestFilesCollector: ddnn_auth_file_unreadable is 0 for every file the
// site's settings name while it is usable, and 1 for one that was removed,
// emptied or holds no PEM block, named by its setting.
func TestFilesCollector(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pemBlock := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	token := write("service.token", NewToken(ServiceTokenPrefix)+"\n")
	cert, key := write("cert.pem", pemBlock), write("key.pem", pemBlock)
	devices := filepath.Join(dir, "devices.yaml")
	if _, err := AddDevice(devices, "cam-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	password := write("kafka.password", "secret\n")
	p, err := pipeline.Parse([]byte(fmt.Sprintf(`name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
auth: {devices_file: %s, service_token_file: %s}
funnel: {coap_listen: "off", tls: {cert_file: %s, key_file: %s}}
kafka:
  brokers: [127.0.0.1:9092]
  sasl: [{mechanism: SCRAM-SHA-256, username: u, password_file: %s}]
tiers:
  - {name: edge, model: m.onnx, exit: {output: e}}
`, devices, token, cert, key, password)))
	if err != nil {
		t.Fatal(err)
	}
	site, err := p.OnSite(p.Sites()[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	files := SiteCredentialFiles(site, p.ServiceTokenPath())
	var settings []string
	for _, f := range files {
		settings = append(settings, f.Setting)
	}
	want := "auth.service_token_file auth.devices_file funnel.tls.cert_file funnel.tls.key_file kafka.sasl[0].password_file"
	if got := strings.Join(settings, " "); got != want {
		t.Fatalf("settings %q, want %q", got, want)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewFilesCollector(files))
	check := func(when string, bad ...string) {
		t.Helper()
		got, err := testutil.GatherAndCount(reg, "ddnn_auth_file_unreadable")
		if err != nil || got != len(settings) {
			t.Fatalf("%s: %d series (%v), want %d", when, got, err, len(settings))
		}
		for _, s := range settings {
			v := 0.0
			for _, b := range bad {
				if b == s {
					v = 1
				}
			}
			if g := gaugeOf(t, reg, s); g != v {
				t.Errorf("%s: %s = %v, want %v", when, s, g, v)
			}
		}
	}
	check("all files in place")
	os.Remove(cert)
	write("service.token", "")
	write("key.pem", "not a key")
	check("certificate removed, token file emptied, key garbled", "auth.service_token_file", "funnel.tls.cert_file", "funnel.tls.key_file")
	write("cert.pem", pemBlock)
	check("certificate back", "auth.service_token_file", "funnel.tls.key_file")
}

// gaugeOf is ddnn_auth_file_unreadable{setting} gathered from reg.
func gaugeOf(t *testing.T, reg *prometheus.Registry, setting string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "setting" && l.GetValue() == setting {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series for %s", setting)
	return 0
}
