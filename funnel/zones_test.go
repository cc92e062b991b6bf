package funnel

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// The device zone serves ingest and health only; the delivery zone wants
// the service token on every route but health; ingest takes the device
// from its token and refuses a claimed other id.
func TestZones(t *testing.T) {
	e := setup(t, "")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "service.token")
	svc, _ := auth.WriteTokenFile(tokens)
	devFile := filepath.Join(dir, "devices.yaml")
	devA, _ := auth.AddDevice(devFile, "cam-a", time.Now())
	var fa Auth
	var err error
	if fa.Service, err = auth.LoadTokens(tokens); err != nil {
		t.Fatal(err)
	}
	if fa.Devices, err = auth.LoadDevices(devFile); err != nil {
		t.Fatal(err)
	}
	e.f.SetAuth(fa)
	device, delivery := serve(t, e.f)

	do := func(srv *httptest.Server, path, token string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		h := map[string]string{}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		maps.Copy(h, hdr)
		resp, b := postURL(t, srv.URL+path, "application/octet-stream", []byte(body), h)
		return resp.StatusCode, b
	}
	sample := string(floats(1, 2, 3, 4))
	for _, path := range []string{httpapi.PathResults, httpapi.PathTiers + "cloud", httpapi.PathDrain} {
		if code, body := do(device, path, devA, nil, "[]"); code != http.StatusNotFound {
			t.Errorf("device zone %s: %d %s, want 404", path, code, body)
		}
		if code, _ := do(delivery, path, "", nil, "[]"); code != http.StatusUnauthorized {
			t.Errorf("delivery zone %s without the token: %d, want 401", path, code)
		}
		if code, _ := do(delivery, path, devA, nil, "[]"); code != http.StatusUnauthorized {
			t.Errorf("delivery zone %s with a device's token: %d, want 401", path, code)
		}
	}
	if code, body := do(device, httpapi.PathIngest, devA, map[string]string{HeaderMessageID: "m1"}, sample); code != http.StatusAccepted {
		t.Fatalf("ingest with cam-a's token: %d %s", code, body)
	}
	if code, body := do(device, httpapi.PathIngest, devA, map[string]string{HeaderDeviceID: "cam-b"}, sample); code != http.StatusForbidden || !strings.Contains(body, "cam-a") {
		t.Errorf("cam-a's token claiming cam-b: %d %s", code, body)
	}
	if code, _ := do(device, httpapi.PathIngest, "", nil, sample); code != http.StatusUnauthorized {
		t.Errorf("ingest without a token: %d", code)
	}
	if code, body := do(delivery, httpapi.PathResults, svc, nil, "[]"); code/100 != 2 {
		t.Errorf("results with the service token: %d %s", code, body)
	}
	recs := e.records(t, e.p.InputTopic(e.p.Tiers[0].Name))
	if len(recs) != 1 {
		t.Fatalf("%d records in the first tier's topic, want 1", len(recs))
	}
	if m := decodeRecord(t, recs[0]); m.ID != "m1" || m.Device != "cam-a" {
		t.Errorf("record = %+v; want m1 from cam-a", m)
	}
	// Health is for anyone on both zones.
	for _, srv := range []*httptest.Server{device, delivery} {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s/readyz: %d", srv.URL, resp.StatusCode)
		}
	}
}
