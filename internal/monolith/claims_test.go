package monolith

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestMonolithDeviceClaims: with Claims set (device authentication), the
// monolith dead-letters a record claiming a device without its signature
// and processes one signed by the device, as the first tier's connector
// does.
func TestMonolithDeviceClaims(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	creds, keyFile, tokFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "psk.key"), filepath.Join(dir, "service.token")
	if _, err := auth.AddDevice(creds, "cam-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, []byte(auth.NewPSKKey()), 0o600)
	if _, err := auth.WriteTokenFile(tokFile); err != nil {
		t.Fatal(err)
	}
	service, _ := auth.LoadTokens(tokFile)
	devices, _ := auth.LoadDevices(creds)
	master, _ := auth.LoadPSKKey(keyFile)
	var err error
	if h.claims, err = auth.NewClaims(service, devices, master); err != nil {
		t.Fatal(err)
	}
	key, err := auth.DeviceRecordKey(creds, keyFile, "cam-1")
	if err != nil {
		t.Fatal(err)
	}
	forged, signed := h.raw(0), h.raw(1)
	forged.Key = []byte("forged")
	forged.Headers = []kgo.RecordHeader{{Key: wire.HeaderDevice, Value: []byte("dev-2")}}
	signed.Key = []byte("signed")
	signed.Headers = []kgo.RecordHeader{{Key: wire.HeaderDevice, Value: []byte("cam-1")},
		{Key: wire.HeaderDeviceSig, Value: []byte(auth.SignClaim(key, "cam-1", signed.Value))}}
	h.produce(t, []*kgo.Record{forged, signed})

	stop := h.run(t, 1, 8, nil)
	defer stop()
	var results []wire.Result
	dlq := map[string]*kgo.Record{}
	read := h.reader(t, h.p.ResultsTopic(), h.p.DLQTopic(h.p.Tiers[0].Name))
	readUntil(t, read, 15*time.Second, func(r *kgo.Record) {
		if r.Topic != h.p.ResultsTopic() {
			dlq[string(r.Key)] = r
			return
		}
		res, err := wire.DecodeResult(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}, func() bool { return len(results) >= 1 && len(dlq) >= 1 })
	if len(results) != 1 || results[0].ID != "signed" || results[0].Device != "cam-1" {
		t.Errorf("results %+v, want one for signed, device cam-1", results)
	}
	if r := dlq["forged"]; r == nil || !hasHeader(r, wire.HeaderReason, `unverified device claim: device claim "dev-2"`) {
		t.Errorf("dead letters %v, want forged as an unverified claim", dlq)
	}
}
