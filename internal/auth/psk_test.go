package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPSKs: a device's key is what DevicePSK prints, is gone when the
// device is revoked, and is a new one when it is added again.
func TestPSKs(t *testing.T) {
	dir := t.TempDir()
	creds, keyFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "psk.key")
	os.WriteFile(keyFile, []byte(NewPSKKey()+"\n"), 0o600)
	if _, err := AddDevice(creds, "dev-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDevices(creds)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPSKs(d, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := p.For("dev-1")
	printed, err := DevicePSK(creds, keyFile, "dev-1")
	if !ok || err != nil || !bytes.Equal(first, printed) || len(first) != 64 {
		t.Fatalf("For = %q %v, DevicePSK = %q %v: want the same 64 hex digits", first, ok, printed, err)
	}
	if _, ok := p.For("dev-2"); ok {
		t.Error("an unknown device has a key")
	}
	RevokeDevice(creds, "dev-1", time.Now())
	waitKey := func(want func([]byte, bool) bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if want(p.For("dev-1")) {
				return
			}
		}
		t.Fatal("the key did not follow the credentials file within 2s")
	}
	waitKey(func(_ []byte, ok bool) bool { return !ok })
	if _, err := DevicePSK(creds, keyFile, "dev-1"); err == nil {
		t.Error("DevicePSK printed a revoked device's key")
	}
	AddDevice(creds, "dev-1", time.Now())
	waitKey(func(k []byte, ok bool) bool { return ok && !bytes.Equal(k, first) })
}

func TestLoadPSKKeyRefusesBadKeys(t *testing.T) {
	for name, content := range map[string]string{"short": "abcd", "not hex": NewPSKKey()[:62] + "zz", "empty": ""} {
		f := filepath.Join(t.TempDir(), "k")
		os.WriteFile(f, []byte(content), 0o600)
		if _, err := LoadPSKKey(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
