package pipeline

import (
	"strings"
	"testing"
	"time"
)

const limitsBase = "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\ntiers:\n  - {name: t, model: m.onnx, exit: {output: o}}\n"

// TestFunnelLimitsDefaults: the rate limit is off unless set, its burst
// defaults to one second's worth, and reassembly bounds follow
// max_request_bytes; a site inherits the top-level values.
func TestFunnelLimitsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       Funnel
	}{
		{"defaults", "funnel: {max_request_bytes: 4096}\n", Funnel{
			DeviceRateLimit: RateLimit{MaxDevices: DefaultRateLimitMaxDevices},
			CoAPReassembly:  CoAPReassembly{TransferTimeout: 10 * time.Second, MaxTransfersPerPeer: 4, MaxBytesPerPeer: 8192, MaxBytes: 64 << 20},
		}},
		{"rate without burst", "funnel: {max_request_bytes: 4096, device_rate_limit: {rate: 2.5}}\n", Funnel{
			DeviceRateLimit: RateLimit{Rate: 2.5, Burst: 3, MaxDevices: DefaultRateLimitMaxDevices},
			CoAPReassembly:  CoAPReassembly{TransferTimeout: 10 * time.Second, MaxTransfersPerPeer: 4, MaxBytesPerPeer: 8192, MaxBytes: 64 << 20},
		}},
		{"all set", "funnel: {max_request_bytes: 4096, device_rate_limit: {rate: 100, burst: 200, max_devices: 10}, coap_reassembly: {transfer_timeout: 3s, max_transfers_per_peer: 2, max_bytes_per_peer: 5000, max_bytes: 6000}}\n", Funnel{
			DeviceRateLimit: RateLimit{Rate: 100, Burst: 200, MaxDevices: 10},
			CoAPReassembly:  CoAPReassembly{TransferTimeout: 3 * time.Second, MaxTransfersPerPeer: 2, MaxBytesPerPeer: 5000, MaxBytes: 6000},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(limitsBase + tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if p.Funnel.DeviceRateLimit != tc.want.DeviceRateLimit || p.Funnel.CoAPReassembly != tc.want.CoAPReassembly {
				t.Errorf("got %+v %+v\nwant %+v %+v", p.Funnel.DeviceRateLimit, p.Funnel.CoAPReassembly, tc.want.DeviceRateLimit, tc.want.CoAPReassembly)
			}
		})
	}
	t.Run("site inherits", func(t *testing.T) {
		y := strings.Replace(limitsBase, "exit: {output: o}", "site: s, exit: {output: o}", 1) +
			"funnel: {device_rate_limit: {rate: 7}, coap_reassembly: {max_bytes: 1000000}}\nsites:\n  - {name: s, funnel: {device_rate_limit: {burst: 9}}}\n"
		p, err := Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		s := p.Sites()[0].Funnel
		if s.DeviceRateLimit != (RateLimit{Rate: 7, Burst: 9, MaxDevices: DefaultRateLimitMaxDevices}) || s.CoAPReassembly.MaxBytes != 1000000 {
			t.Errorf("site funnel %+v %+v", s.DeviceRateLimit, s.CoAPReassembly)
		}
	})
}

// TestFunnelLimitsBad: every bad bound is reported at once with its path.
func TestFunnelLimitsBad(t *testing.T) {
	y := limitsBase + "funnel: {max_request_bytes: 4096, device_rate_limit: {rate: -1, max_devices: -3}, coap_reassembly: {transfer_timeout: 1ms, max_transfers_per_peer: -1, max_bytes_per_peer: 100, max_bytes: 50}}\n"
	_, err := Parse([]byte(y))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"funnel.device_rate_limit.rate: -1 must be a number of messages per second, 0 for no limit",
		"funnel.device_rate_limit.max_devices: -3 must be at least 1",
		"funnel.coap_reassembly.transfer_timeout: 1ms must be at least 100ms",
		"funnel.coap_reassembly.max_transfers_per_peer: -1 must be at least 1",
		"funnel.coap_reassembly.max_bytes_per_peer: 100 is under max_request_bytes 4096",
		"funnel.coap_reassembly.max_bytes: 50 is under max_bytes_per_peer 100",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestFunnelWaitBad: a negative wait and waiter bounds that do not fit
// are each reported with their path.
func TestFunnelWaitBad(t *testing.T) {
	y := limitsBase + "funnel: {wait: {max: -5s, max_waiters: 4, max_waiters_per_device: 5}}\n"
	_, err := Parse([]byte(y))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"funnel.wait.max: -5s must not be negative (0 turns waits off)",
		"funnel.wait.max_waiters_per_device: 5 must be in [1, max_waiters 4]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestFunnelRateNotANumber: an infinite or NaN rate is one error, not a
// second one about the burst it would have given.
func TestFunnelRateNotANumber(t *testing.T) {
	for _, rate := range []string{".inf", ".nan"} {
		_, err := Parse([]byte(limitsBase + "funnel: {device_rate_limit: {rate: " + rate + "}}\n"))
		if err == nil || !strings.Contains(err.Error(), "device_rate_limit.rate: ") || strings.Contains(err.Error(), "burst") {
			t.Errorf("rate %s: %v", rate, err)
		}
	}
}
