package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
)

// PSKKeySize is the length of the PSK master key, in bytes.
const PSKKeySize = 32

// NewPSKKey returns a new random PSK master key: 32 bytes as 64 hex digits,
// the form auth.devices_psk_key_file holds.
func NewPSKKey() string {
	var b [PSKKeySize]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LoadPSKKey reads a PSK master key file: 64 hex digits (NewPSKKey),
// surrounding white space ignored.
func LoadPSKKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("psk master key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != PSKKeySize {
		return nil, fmt.Errorf("psk master key %s: want %d hex digits (ddnn devices psk-key > FILE)", path, 2*PSKKeySize)
	}
	return key, nil
}

// DerivePSK is a device's DTLS pre-shared key: the 64 lowercase hex digits
// of HMAC-SHA256(master, "ddnn-psk|" + id + "|" + tokenSHA256), whose
// ASCII bytes are the key itself. A string of printable characters is what
// DTLS clients take on the command line (libcoap's coap-client -k KEY uses
// the string's bytes), so the printed key is the key, not an encoding of
// it. The token hash ties the key to one issue of the device: re-adding a
// revoked device gives it a new token and so a new key, and the server
// never stores a key, only what derives it.
func DerivePSK(master []byte, id, tokenSHA256 string) []byte {
	mac := hmac.New(sha256.New, master)
	mac.Write([]byte("ddnn-psk|" + id + "|" + strings.ToLower(tokenSHA256)))
	return []byte(hex.EncodeToString(mac.Sum(nil)))
}

// PSKs derives the pre-shared keys of a credentials file's devices with a
// master key; a revoked or unknown device has none. Like Devices, it
// follows the file's changes within a second.
type PSKs struct {
	d      *Devices
	master []byte
}

// NewPSKs derives the keys of d's devices with the master key in keyFile.
func NewPSKs(d *Devices, keyFile string) (*PSKs, error) {
	master, err := LoadPSKKey(keyFile)
	if err != nil {
		return nil, err
	}
	return &PSKs{d: d, master: master}, nil
}

// For returns device id's current key, false when the device is unknown
// or revoked.
func (p *PSKs) For(id string) ([]byte, bool) {
	h, ok := p.d.tokenHash(id)
	if !ok {
		return nil, false
	}
	return DerivePSK(p.master, id, h), true
}

// tokenHash returns the token_sha256 of device id's active entry.
func (d *Devices) tokenHash(id string) (string, bool) {
	d.f.refresh(time.Now())
	d.mu.RLock()
	defer d.mu.RUnlock()
	h, ok := d.byID[id]
	return h, ok
}

// DevicePSK returns the pre-shared key of device id in the credentials
// file at path, with the master key in keyFile; a revoked or unknown
// device is an error.
func DevicePSK(path, keyFile, id string) ([]byte, error) {
	master, err := LoadPSKKey(keyFile)
	if err != nil {
		return nil, err
	}
	h, err := activeTokenHash(path, id)
	if err != nil {
		return nil, err
	}
	return DerivePSK(master, id, h), nil
}
