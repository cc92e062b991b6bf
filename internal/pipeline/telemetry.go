package pipeline

import (
	"fmt"
	"math"
	"net/url"
)

// DefaultSampleRatio is the share of traces kept once tracing is on.
const DefaultSampleRatio = 1.0

// Telemetry configures the traces every role of the pipeline exports
// (internal/telemetry). Tracing is off until OTLPEndpoint is set.
type Telemetry struct {
	// OTLPEndpoint is the OTLP/HTTP receiver the spans are sent to, as a
	// URL: http://127.0.0.1:4318 (the path defaults to /v1/traces). ""
	// turns tracing off: no exporter, no spans, no trace headers.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of new traces kept, in [0, 1]. A trace a
	// device started (its traceparent) keeps the device's decision.
	SampleRatio float64 `yaml:"sample_ratio"`
}

// Enabled says whether the pipeline's roles trace.
func (t *Telemetry) Enabled() bool { return t.OTLPEndpoint != "" }

// validate reports every problem of the telemetry section.
func (t *Telemetry) validate() []error {
	var errs []error
	if math.IsNaN(t.SampleRatio) || t.SampleRatio < 0 || t.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("telemetry.sample_ratio: %v must be in [0, 1]", t.SampleRatio))
	}
	if t.OTLPEndpoint == "" {
		return errs
	}
	u, err := url.Parse(t.OTLPEndpoint)
	switch {
	case err != nil:
		// The parser quotes the URL: say only what is wrong with it.
		errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint: not a URL (want http://HOST:PORT)"))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint: scheme %q unsupported (want http or https: OTLP over HTTP)", u.Scheme))
	case u.User != nil:
		// A credential there would be logged and shown by ps.
		errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint: must carry no user or password"))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint: %q names no host (want http://HOST:PORT)", t.OTLPEndpoint))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint: must have no query or fragment"))
	}
	return errs
}
