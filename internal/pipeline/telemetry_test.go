package pipeline

import (
	"strings"
	"testing"
)

// TestTelemetry: tracing is off unless an endpoint is set, the ratio
// defaults to 1, and every bad setting is reported at once with its path;
// an unknown key is refused.
func TestTelemetry(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       Telemetry
		on         bool
		errs       []string
	}{
		{name: "off by default", want: Telemetry{SampleRatio: 1}},
		{name: "on", yaml: "telemetry: {otlp_endpoint: 'http://127.0.0.1:4318'}\n",
			want: Telemetry{OTLPEndpoint: "http://127.0.0.1:4318", SampleRatio: 1}, on: true},
		{name: "ratio", yaml: "telemetry: {otlp_endpoint: 'https://collector:4318/v1/traces', sample_ratio: 0.25}\n",
			want: Telemetry{OTLPEndpoint: "https://collector:4318/v1/traces", SampleRatio: 0.25}, on: true},
		{name: "explicit zero", yaml: "telemetry: {otlp_endpoint: 'http://127.0.0.1:4318', sample_ratio: 0}\n",
			want: Telemetry{OTLPEndpoint: "http://127.0.0.1:4318"}, on: true},
		{name: "bad", yaml: "telemetry: {otlp_endpoint: 'grpc://127.0.0.1:4317', sample_ratio: 1.5}\n", errs: []string{
			`telemetry.sample_ratio: 1.5 must be in [0, 1]`,
			`telemetry.otlp_endpoint: scheme "grpc" unsupported`,
		}},
		{name: "credential", yaml: "telemetry: {otlp_endpoint: 'http://user:s3cret@127.0.0.1:4318'}\n", errs: []string{
			`telemetry.otlp_endpoint: must carry no user or password`,
		}},
		{name: "no host", yaml: "telemetry: {otlp_endpoint: 'http:///v1/traces'}\n", errs: []string{
			`telemetry.otlp_endpoint: "http:///v1/traces" names no host`,
		}},
		{name: "unknown key", yaml: "telemetry: {otlp_endpoints: 'http://127.0.0.1:4318'}\n", errs: []string{
			`telemetry.otlp_endpoints`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(limitsBase + tc.yaml))
			if len(tc.errs) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, want := range tc.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q\ndoes not say %q", err, want)
					}
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q quotes the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Telemetry != tc.want || p.Telemetry.Enabled() != tc.on {
				t.Errorf("telemetry %+v (enabled %v), want %+v (%v)", p.Telemetry, p.Telemetry.Enabled(), tc.want, tc.on)
			}
		})
	}
}
