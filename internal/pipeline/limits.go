package pipeline

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Defaults of the funnel's abuse bounds.
const (
	DefaultRateLimitMaxDevices     = 100_000
	DefaultCoAPTransferTimeout     = 10 * time.Second
	DefaultCoAPTransfersPerPeer    = 4
	DefaultCoAPReassemblyBytes     = 64 << 20
	defaultCoAPPeerBytesPerRequest = 2 // × max_request_bytes

	DefaultFunnelMaxConnectionsPerSource = 64
	DefaultFunnelMaxHeaderBytes          = 16 << 10
	DefaultFunnelReadHeaderTimeout       = 10 * time.Second
	DefaultFunnelReadTimeout             = 30 * time.Second
	DefaultFunnelIdleTimeout             = 60 * time.Second
	DefaultFunnelWriteTimeout            = 10 * time.Second

	DefaultWaitMax             = 10 * time.Second
	DefaultMaxWaiters          = 10_000
	DefaultMaxWaitersPerDevice = 16
)

// DefaultFunnelPerSourceExempt are the sources not counted per source by
// default: loopback, where a local benchmark or a reverse proxy on the
// host opens every connection from one address.
var DefaultFunnelPerSourceExempt = []string{"127.0.0.0/8", "::1/128"}

// RateLimit is a token bucket per device: Rate messages a second on
// average, bursts of up to Burst. Rate 0 (the default) turns it off.
type RateLimit struct {
	// Rate is messages per second per device; 0 is off.
	Rate float64 `yaml:"rate"`
	// Burst is how many messages a device may send at once after being
	// quiet; default: one second's worth (Rate rounded up, at least 1).
	Burst int `yaml:"burst"`
	// MaxDevices bounds the devices tracked at once. Buckets of devices
	// quiet long enough to have refilled are forgotten as they go; beyond
	// the bound the device seen least recently is forgotten (it starts
	// again with a full bucket).
	MaxDevices int `yaml:"max_devices"`
}

// On reports whether the limit is on.
func (r *RateLimit) On() bool { return r.Rate > 0 }

// CoAPReassembly bounds the memory of Block1 uploads the CoAP ingest
// reassembles (a transfer never holds more than max_request_bytes).
type CoAPReassembly struct {
	// TransferTimeout frees a transfer whose next block did not come.
	TransferTimeout time.Duration `yaml:"transfer_timeout"`
	// MaxTransfersPerPeer is the most transfers one peer (address and
	// port) may have open at once.
	MaxTransfersPerPeer int `yaml:"max_transfers_per_peer"`
	// MaxBytesPerPeer bounds what one peer's open transfers hold together;
	// default twice max_request_bytes.
	MaxBytesPerPeer int64 `yaml:"max_bytes_per_peer"`
	// MaxBytes bounds what every open transfer holds together.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Wait bounds a device's wait for its result (POST /v1/ingest?wait=DUR,
// CoAP's Uri-Query wait=DUR): how long one request may wait, and how
// many may wait at once, in all and per device.
type Wait struct {
	// Max is the longest wait a request may ask for; 0 turns waits off
	// (a request that asks for one gets 400, CoAP 4.00). read_timeout
	// bounds the reading of a request, not its wait.
	Max time.Duration `yaml:"max"`
	// MaxWaiters bounds the requests waiting at once; past it a request
	// that asks to wait is answered at once, as without a wait.
	MaxWaiters int `yaml:"max_waiters"`
	// MaxWaitersPerDevice bounds one device's (or, without a device id,
	// one IP address's) requests waiting at once, likewise.
	MaxWaitersPerDevice int `yaml:"max_waiters_per_device"`
}

// On reports whether devices may wait for their results.
func (w *Wait) On() bool { return w.Max > 0 }

// validateLimits checks the rate limit and reassembly settings; f is the
// section's path.
func (fu *Funnel) validateLimits(f string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{f, field}, args...)...))
	}
	rl, co := &fu.DeviceRateLimit, &fu.CoAPReassembly
	rateOK := rl.Rate >= 0 && !math.IsInf(rl.Rate, 0) // false for NaN too
	if !rateOK {
		bad("device_rate_limit.rate", "%v must be a number of messages per second, 0 for no limit", rl.Rate)
	}
	if rateOK && rl.On() && rl.Burst < 1 { // a burst follows from a bad rate
		bad("device_rate_limit.burst", "%d must be at least 1", rl.Burst)
	}
	if rl.MaxDevices < 1 {
		bad("device_rate_limit.max_devices", "%d must be at least 1", rl.MaxDevices)
	}
	if fu.MaxConnectionsPerSource < 1 {
		bad("max_connections_per_source", "%d must be at least 1", fu.MaxConnectionsPerSource)
	}
	for i, v := range fu.PerSourceExempt {
		if _, err := netip.ParsePrefix(v); err != nil {
			bad(fmt.Sprintf("per_source_exempt[%d]", i), "%q is not an address prefix (like 192.0.2.0/24 or ::1/128)", v)
		}
	}
	if fu.MaxHeaderBytes < 1024 || fu.MaxHeaderBytes > 1<<20 {
		bad("max_header_bytes", "%d must be in [1024, 1048576]", fu.MaxHeaderBytes)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"read_header_timeout", fu.ReadHeaderTimeout}, {"read_timeout", fu.ReadTimeout}, {"idle_timeout", fu.IdleTimeout}, {"write_timeout", fu.WriteTimeout}} {
		if d.v < 100*time.Millisecond {
			bad(d.field, "%s must be at least 100ms", d.v)
		}
	}
	if fu.ReadTimeout < fu.ReadHeaderTimeout {
		bad("read_timeout", "%s is under read_header_timeout %s: it bounds the header and the body together", fu.ReadTimeout, fu.ReadHeaderTimeout)
	}
	if co.TransferTimeout < 100*time.Millisecond {
		bad("coap_reassembly.transfer_timeout", "%s must be at least 100ms", co.TransferTimeout)
	}
	if co.MaxTransfersPerPeer < 1 {
		bad("coap_reassembly.max_transfers_per_peer", "%d must be at least 1", co.MaxTransfersPerPeer)
	}
	if co.MaxBytesPerPeer < fu.MaxRequestBytes {
		bad("coap_reassembly.max_bytes_per_peer", "%d is under max_request_bytes %d: no upload of that size could complete", co.MaxBytesPerPeer, fu.MaxRequestBytes)
	}
	if co.MaxBytes < co.MaxBytesPerPeer {
		bad("coap_reassembly.max_bytes", "%d is under max_bytes_per_peer %d", co.MaxBytes, co.MaxBytesPerPeer)
	}
	return append(errs, fu.Wait.validate(f)...)
}

// validate checks the wait settings of funnel section f.
func (w *Wait) validate(f string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.wait.%s: "+format, append([]any{f, field}, args...)...))
	}
	if w.Max < 0 {
		bad("max", "%s must not be negative (0 turns waits off)", w.Max)
	}
	if w.MaxWaiters < 1 {
		bad("max_waiters", "%d must be at least 1", w.MaxWaiters)
	}
	if w.MaxWaitersPerDevice < 1 || w.MaxWaitersPerDevice > w.MaxWaiters {
		bad("max_waiters_per_device", "%d must be in [1, max_waiters %d]", w.MaxWaitersPerDevice, w.MaxWaiters)
	}
	return errs
}
