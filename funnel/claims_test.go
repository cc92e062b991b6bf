package funnel

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestSignsDeviceClaims: the funnel signs the device of each record it
// writes to the first tier's topic with the service token, so the first
// tier believes the device it authenticated; the signature covers the
// device and the value.
func TestSignsDeviceClaims(t *testing.T) {
	e := setup(t, "")
	dir := t.TempDir()
	creds, tokFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "service.token")
	token, err := auth.AddDevice(creds, "cam-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.WriteTokenFile(tokFile); err != nil {
		t.Fatal(err)
	}
	devices, _ := auth.LoadDevices(creds)
	service, _ := auth.LoadTokens(tokFile)
	e.f.SetAuth(Auth{Devices: devices, Service: service})
	resp, body := e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), map[string]string{"Authorization": "Bearer " + token})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingest: %d %s", resp.StatusCode, body)
	}
	recs := e.records(t, "t.edge.in")
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	claims, err := auth.NewClaims(service, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sig string
	for _, h := range recs[0].Headers {
		if h.Key == wire.HeaderDeviceSig {
			sig = string(h.Value)
		}
	}
	if err := claims.Verify("cam-1", recs[0].Value, sig); err != nil {
		t.Errorf("the funnel's claim of cam-1: %v", err)
	}
	if err := claims.Verify("dev-2", recs[0].Value, sig); err == nil {
		t.Error("the funnel's signature holds for another device")
	}
}

// TestNoClaimSignedWithoutDeviceAuth: without device authentication no
// part checks a claim, so the funnel spends nothing signing one.
func TestNoClaimSignedWithoutDeviceAuth(t *testing.T) {
	e := setup(t, "")
	tokFile := filepath.Join(t.TempDir(), "service.token")
	if _, err := auth.WriteTokenFile(tokFile); err != nil {
		t.Fatal(err)
	}
	service, _ := auth.LoadTokens(tokFile)
	e.f.SetAuth(Auth{Service: service})
	resp, body := e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), map[string]string{"X-Device-Id": "cam-1"})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingest: %d %s", resp.StatusCode, body)
	}
	for _, r := range e.records(t, "t.edge.in") {
		for _, h := range r.Headers {
			if h.Key == wire.HeaderDeviceSig {
				t.Errorf("a record of cam-1 carries %s without device authentication", h.Key)
			}
		}
	}
}
