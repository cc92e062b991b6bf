package auth

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		in    string
		token string
		ok    bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"Bearer a b", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
		{"Bearer " + strings.Repeat("x", 5000), "", false},
	} {
		token, ok := BearerToken(tc.in)
		if token != tc.token || ok != tc.ok {
			t.Errorf("BearerToken(%.30q) = %q, %v; want %q, %v", tc.in, token, ok, tc.token, tc.ok)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x", "Basic y", "", "Bearer \x00", "Bearer a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		token, ok := BearerToken(h)
		if ok && (token == "" || strings.ContainsAny(token, " \t\r\n") || !strings.HasSuffix(h, token)) {
			t.Errorf("BearerToken(%q) = %q", h, token)
		}
		if !ok && token != "" {
			t.Errorf("BearerToken(%q) = %q without ok", h, token)
		}
	})
}

func FuzzParseDevices(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "devices.yaml")
	if _, err := AddDevice(path, "dev-1", time.Now()); err != nil {
		f.Fatal(err)
	}
	RevokeDevice(path, "dev-1", time.Now())
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add([]byte("devices: [{id: a, token_sha256: zz}]"))
	f.Add([]byte(""))
	f.Add([]byte("devices:\n  - id: \"\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		df, err := parseDevices(b)
		if err != nil {
			return
		}
		for _, e := range df.Devices {
			if CheckDeviceID(e.ID) != nil || len(e.TokenSHA256) != 64 {
				t.Errorf("accepted %+v", e)
			}
		}
	})
}

// Service tokens: every token of the file is accepted, the first is sent,
// and an edit (rotation) takes effect without a restart; a broken edit
// keeps the last good tokens.
func TestTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.token")
	first, err := WriteTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTokenFile(path); err == nil {
		t.Error("WriteTokenFile replaced an existing file")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	tok, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Current() != first || !tok.Valid(first) || tok.Valid("nope") || tok.Valid("") {
		t.Fatalf("current %q, valid(first) %v", tok.Current(), tok.Valid(first))
	}
	second := NewToken(ServiceTokenPrefix)
	os.WriteFile(path, []byte(second+"\n"+first+"\n"), 0o600)
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { return tok.Current() == second })
	if !tok.Valid(first) || !tok.Valid(second) {
		t.Error("both tokens should be accepted during a rotation")
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	time.Sleep(2 * reloadEvery)
	if tok.Current() != second || !tok.Valid(first) {
		t.Error("a broken file replaced the last good tokens")
	}
	os.WriteFile(path, []byte("# comment only\n"), 0o600)
	if _, err := LoadTokens(path); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("LoadTokens of an empty file: %v", err)
	}
}

// Require lets only bearers of a token through; the transport sends the
// current one.
func TestRequireAndTransport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.token")
	token, _ := WriteTokenFile(path)
	tok, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tok.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })))
	defer srv.Close()
	for _, tc := range []struct {
		auth string
		code int
	}{{"", 401}, {"Bearer wrong-token", 401}, {"Basic " + token, 401}, {"Bearer " + token, 204}} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("Authorization %.20q: %d, want %d", tc.auth, resp.StatusCode, tc.code)
		}
		if tc.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("401 without a Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
		}
	}
	client := &http.Client{Transport: tok.Transport(nil)}
	resp, err := client.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("client with the transport: %d", resp.StatusCode)
	}
	var nilTokens *Tokens
	if nilTokens.Transport(nil) != http.DefaultTransport {
		t.Error("a nil Tokens should leave the transport alone")
	}
}

// The device lifecycle: add prints a token that authenticates as the
// device, the file holds only its hash, revoke takes effect in a running
// process within 2 s, and re-adding gives a new token.
func TestDevices(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.yaml")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tokA, err := AddDevice(path, "dev-a", now)
	if err != nil {
		t.Fatal(err)
	}
	tokB, _ := AddDevice(path, "dev-b", now)
	if _, err := AddDevice(path, "dev-a", now); err == nil || !strings.Contains(err.Error(), "revoke it first") {
		t.Errorf("adding dev-a twice: %v", err)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 129), "-lead", "é"} {
		if _, err := AddDevice(path, bad, now); err == nil {
			t.Errorf("AddDevice(%q) accepted", bad)
		}
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), tokA) || strings.Contains(string(b), tokB) {
		t.Fatal("the credentials file holds a token in the clear")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	d, err := LoadDevices(path)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := d.Authenticate(tokA); !ok || id != "dev-a" {
		t.Errorf("token A = %q, %v", id, ok)
	}
	if _, ok := d.Authenticate(tokA + "x"); ok {
		t.Error("a wrong token authenticated")
	}
	start := time.Now()
	if err := RevokeDevice(path, "dev-a", now); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { _, ok := d.Authenticate(tokA); return !ok })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("revocation took %s", took)
	}
	if id, ok := d.Authenticate(tokB); !ok || id != "dev-b" {
		t.Error("revoking A revoked B")
	}
	if err := RevokeDevice(path, "dev-a", now); err == nil {
		t.Error("revoking twice")
	}
	if err := RevokeDevice(path, "nobody", now); err == nil {
		t.Error("revoking an unknown device")
	}
	tokA2, err := AddDevice(path, "dev-a", now)
	if err != nil || tokA2 == tokA {
		t.Fatalf("re-adding: %v", err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { id, ok := d.Authenticate(tokA2); return ok && id == "dev-a" })
	if _, ok := d.Authenticate(tokA); ok {
		t.Error("the revoked token came back")
	}
	list, err := ListDevices(path)
	if err != nil || len(list) != 2 || list[0].ID != "dev-a" || list[0].Revoked != nil || list[1].ID != "dev-b" {
		t.Errorf("list = %+v, %v", list, err)
	}

	// The 401s a device sees.
	for _, tc := range []struct{ auth, want string }{
		{"", "send the device's token"},
		{"Bearer " + tokA, "not valid, or was revoked"},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/ingest", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if _, ok := d.FromRequest(w, r); ok || w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="ddnn"` || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%q: %d %q %s", tc.auth, w.Code, w.Header().Get("WWW-Authenticate"), w.Body)
		}
	}
}

// A credentials file is decoded strictly: a misspelt key is named with its
// path, line and the field meant; a file with no document holds no devices.
func TestParseDevicesStrict(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "", ""},
		{"comments only", "# nothing yet\n", ""},
		{"misspelt key", "devices:\n  - id: dev-a\n    tokn_sha256: ab\n", "devices[0] (dev-a).tokn_sha256: unknown field (line 3); did you mean token_sha256?"},
		{"list expected", "devices: dev-a\n", `devices: "dev-a" is not a list (line 1)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df, err := parseDevices([]byte(tc.yaml))
			if tc.want == "" {
				if err != nil || len(df.Devices) != 0 {
					t.Fatalf("got %+v, %v; want no devices", df, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestCheckCertificate: a revoked device's client certificates are
// refused; once it is added again, only certificates valid from after the
// revocation are let in; a device with a certificate and no token can be
// revoked with RevokeCertificateOnly, and only so.
func TestCheckCertificate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.yaml")
	added := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	revoked := added.Add(24 * time.Hour)
	if _, err := AddDevice(path, "cam-7", added); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDevices(path)
	if err != nil {
		t.Fatal(err)
	}
	oldCert, newCert := added.Add(-time.Hour), revoked.Add(time.Minute)
	for _, id := range []string{"cam-7", "unlisted"} {
		if err := d.CheckCertificate(id, oldCert); err != nil {
			t.Errorf("%s before any revocation: %v", id, err)
		}
	}
	if err := RevokeDevice(path, "cam-7", revoked); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { return d.CheckCertificate("cam-7", oldCert) != nil })
	if err := d.CheckCertificate("cam-7", newCert); err == nil || !strings.Contains(err.Error(), "was revoked at 2026-12-02T12:00:00Z") {
		t.Errorf("a certificate of the revoked device: %v", err)
	}
	if _, err := AddDevice(path, "cam-7", revoked.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { return d.CheckCertificate("cam-7", newCert) == nil })
	if err := d.CheckCertificate("cam-7", oldCert); err == nil || !strings.Contains(err.Error(), "issued before the revocation") {
		t.Errorf("a certificate issued before the revocation, after re-adding: %v", err)
	}

	if err := RevokeDevice(path, "unlisted", revoked); err == nil || !strings.Contains(err.Error(), "--certificate-only") {
		t.Errorf("revoking a device not in the file: %v", err)
	}
	if err := RevokeCertificateOnly(path, "unlisted", revoked); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { return d.CheckCertificate("unlisted", newCert) != nil })
	if _, ok := d.tokenHash("unlisted"); ok {
		t.Error("a certificate-only revoked device has a token")
	}
	list, err := ListDevices(path)
	if err != nil || len(list) != 2 || list[1].ID != "unlisted" || list[1].Revoked == nil || list[1].TokenSHA256 != "" {
		t.Errorf("list = %+v, %v", list, err)
	}
	if _, err := AddDevice(path, "unlisted", revoked.Add(time.Hour)); err != nil {
		t.Errorf("adding a certificate-only revoked device: %v", err)
	}
}

// TestClaims: a device claim is believed signed with a service token's
// claim key (any token of the file) or with the device's own record key;
// not unsigned, not with another device's key, not over another value,
// not once the device is revoked, and not with a record key when no master
// key is given.
func TestClaims(t *testing.T) {
	dir := t.TempDir()
	creds, keyFile, tokFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "psk.key"), filepath.Join(dir, "service.token")
	now := time.Now()
	for _, id := range []string{"cam-1", "dev-2"} {
		if _, err := AddDevice(creds, id, now); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(keyFile, []byte(NewPSKKey()+"\n"), 0o600)
	old, err := WriteTokenFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	service, _ := LoadTokens(tokFile)
	value := []byte("sample")
	before := service.SignClaim("dev-2", value)
	// Rotation, step 1: the new token is added first. The funnel signs
	// with both, so a part that has not read the new file yet (here: one
	// that knows only the old token) still believes its claims.
	newToken := NewToken(ServiceTokenPrefix)
	os.WriteFile(tokFile, []byte(newToken+"\n"+old+"\n"), 0o600)
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { return service.SignClaim("dev-2", value) != before })
	during := service.SignClaim("dev-2", value)
	if n := strings.Count(during, ",") + 1; n != 2 {
		t.Errorf("signed with %d tokens during the rotation, want 2", n)
	}
	oldFile := filepath.Join(dir, "old.token")
	os.WriteFile(oldFile, []byte(old+"\n"), 0o600)
	oldOnly, _ := LoadTokens(oldFile)
	lagging, _ := NewClaims(oldOnly, nil, nil)
	if err := lagging.Verify("dev-2", value, during); err != nil {
		t.Errorf("a part that knows only the old token refuses a claim signed during the rotation: %v", err)
	}
	// Step 2: the old token removed. A claim signed during the rotation
	// still holds; one signed before it with the old token alone does not
	// (the old token is removed once those are processed).
	newFile := filepath.Join(dir, "new.token")
	os.WriteFile(newFile, []byte(newToken+"\n"), 0o600)
	newOnly, _ := LoadTokens(newFile)
	rotated, _ := NewClaims(newOnly, nil, nil)
	if err := rotated.Verify("dev-2", value, during); err != nil {
		t.Errorf("a claim signed during the rotation is refused once the old token is removed: %v", err)
	}
	if err := rotated.Verify("dev-2", value, before); err == nil {
		t.Error("a claim signed only with a removed token is believed")
	}
	d, _ := LoadDevices(creds)
	master, _ := LoadPSKKey(keyFile)
	c, err := NewClaims(service, d, master)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewClaims(nil, d, master); err == nil || !strings.Contains(err.Error(), "auth.service_token_file") {
		t.Errorf("claims without a service token: %v", err)
	}
	cam1, _ := DeviceRecordKey(creds, keyFile, "cam-1")
	psk, _ := DevicePSK(creds, keyFile, "cam-1")
	if bytes.Equal(cam1, psk) {
		t.Error("the record key is the pre-shared key")
	}
	for _, tc := range []struct {
		name, device, sig, want string
	}{
		{"funnel, both tokens", "dev-2", during, ""},
		{"funnel, the older token alone", "dev-2", before, ""},
		{"several, the last good", "cam-1", strings.Repeat("00", 32) + "," + SignClaim(cam1, "cam-1", value), ""},
		{"too many", "cam-1", strings.Repeat(SignClaim(cam1, "cam-1", value)+",", 8) + SignClaim(cam1, "cam-1", value), "at most 8"},
		{"device's own key", "cam-1", SignClaim(cam1, "cam-1", value), ""},
		{"unsigned", "dev-2", "", "not signed"},
		{"another device's key", "dev-2", SignClaim(cam1, "dev-2", value), "neither the funnel's nor the device's"},
		{"another value", "cam-1", SignClaim(cam1, "cam-1", []byte("other")), "neither"},
		{"not hex", "cam-1", "zz", "want 64 hex digits"},
	} {
		err := c.Verify(tc.device, value, tc.sig)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	noMaster, _ := NewClaims(service, nil, nil)
	if err := noMaster.Verify("cam-1", value, SignClaim(cam1, "cam-1", value)); err == nil {
		t.Error("a record key was believed without a master key")
	}
	if err := RevokeDevice(creds, "cam-1", now); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the reloaded file to take effect", func() bool { return c.Verify("cam-1", value, SignClaim(cam1, "cam-1", value)) != nil })
}
