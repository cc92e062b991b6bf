package connector

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestDeviceClaims: with device authentication, the first tier believes a
// record's device only when its claim is signed, by the device's record
// key or by the funnel's service token. A device user that writes another
// device's id (unsigned, or signed with its own key) is dead-lettered with
// the reason; a signed claim and a record that claims no device pass.
func TestDeviceClaims(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	creds, keyFile, tokFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "psk.key"), filepath.Join(dir, "service.token")
	for _, id := range []string{"cam-1", "dev-2"} {
		if _, err := auth.AddDevice(creds, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(keyFile, []byte(auth.NewPSKKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.WriteTokenFile(tokFile); err != nil {
		t.Fatal(err)
	}
	service, err := auth.LoadTokens(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	devices, err := auth.LoadDevices(creds)
	if err != nil {
		t.Fatal(err)
	}
	master, err := auth.LoadPSKKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := auth.NewClaims(service, devices, master)
	if err != nil {
		t.Fatal(err)
	}
	cam1, err := auth.DeviceRecordKey(creds, keyFile, "cam-1")
	if err != nil {
		t.Fatal(err)
	}

	sample := []byte{1, 2, 3, 4}
	raw := func(id, device string, sigKey []byte) *kgo.Record {
		r := &kgo.Record{Topic: "t.edge.in", Value: sample, Headers: []kgo.RecordHeader{{Key: wire.HeaderID, Value: []byte(id)}}}
		if device != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderDevice, Value: []byte(device)})
		}
		if sigKey != nil {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderDeviceSig, Value: []byte(auth.SignClaim(sigKey, device, sample))})
		}
		return r
	}
	// As the funnel writes a device's message: an envelope, signed with
	// the service token's claim key.
	m := wire.Message{ID: "funnel-dev-2", Device: "dev-2", Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: sample}}
	viaFunnel, err := records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m)
	if err != nil {
		t.Fatal(err)
	}
	records.SignDevice(viaFunnel, service, "dev-2")
	// A binary envelope claiming dev-2 in its body, signed by cam-1.
	m.ID = "envelope-forged"
	envForged, err := records.Message(records.Destination{Topic: "t.edge.in"}, wire.Binary, &m)
	if err != nil {
		t.Fatal(err)
	}
	envForged.Headers = append(envForged.Headers, kgo.RecordHeader{Key: wire.HeaderDeviceSig, Value: []byte(auth.SignClaim(cam1, "cam-1", envForged.Value))})
	recs := []*kgo.Record{
		raw("unsigned-dev-2", "dev-2", nil),     // cam-1 claims dev-2, as in the probe
		raw("cam-1-signs-dev-2", "dev-2", cam1), // with its own key
		raw("cam-1-signed", "cam-1", cam1),
		raw("no-claim", "", nil),
		viaFunnel,
		envForged,
	}
	if err := e.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	devicesSeen := map[string]string{}
	rep := newFakeReplica(t, func(msgs []wire.Message) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			devicesSeen[m.ID] = m.Device
		}
		return 200, ""
	})
	c, err := New(Config{Pipeline: e.p, Tier: "edge", Replicas: []string{rep.srv.URL}, Registerer: prometheus.NewRegistry(),
		DrainTimeout: 3 * time.Second, Claims: claims})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testsupport.WaitFor(t, 15*time.Second, "lag 0", func() bool { return e.lag(t) == 0 })

	mu.Lock()
	want := map[string]string{"cam-1-signed": "cam-1", "no-claim": "", "funnel-dev-2": "dev-2"}
	if len(devicesSeen) != len(want) {
		t.Errorf("delivered %v, want %v", devicesSeen, want)
	}
	for id, dev := range want {
		if got, ok := devicesSeen[id]; !ok || got != dev {
			t.Errorf("%s: delivered %v with device %q, want %q", id, ok, got, dev)
		}
	}
	mu.Unlock()
	dlq := consumeAll(t, e, "t.edge.dlq", 3)
	for _, r := range dlq {
		var id, reason string
		for _, h := range r.Headers {
			switch h.Key {
			case wire.HeaderID:
				id = string(h.Value)
			case wire.HeaderReason:
				reason = string(h.Value)
			}
		}
		if !strings.HasPrefix(reason, `unverified device claim: device claim "dev-2"`) {
			t.Errorf("dead letter %q: reason %q, want an unverified claim of dev-2", id, reason)
		}
	}
}
