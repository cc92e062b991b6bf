package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A record on the first tier's topic may claim a device (the ddnn-device
// header, or the device field of its envelope or JSON). Kafka tells its
// consumers nothing of who produced a record, and a device user that may
// write the topic may write any claim, so a claim is believed only with a
// signature (the ddnn-device-sig header): an HMAC of the claimed id and the
// record's value, keyed either by the device's record key (a device
// writing straight to Kafka) or by the pipeline's service token (the
// funnel, which authenticated the device itself). This works the same on
// the embedded broker and on any Kafka cluster.

// DeriveRecordKey is the key device id signs its Kafka records' claims
// with: the 64 lowercase hex digits of HMAC-SHA256(master, "ddnn-record|"
// + id + "|" + tokenSHA256), whose ASCII bytes are the key, derived as the
// DTLS pre-shared key is (DerivePSK) but under its own label, so neither
// key tells the other. Re-adding a revoked device gives it a new one.
func DeriveRecordKey(master []byte, id, tokenSHA256 string) []byte {
	mac := hmac.New(sha256.New, master)
	mac.Write([]byte("ddnn-record|" + id + "|" + strings.ToLower(tokenSHA256)))
	return []byte(hex.EncodeToString(mac.Sum(nil)))
}

// DeviceRecordKey returns device id's record key from the credentials file
// at path and the master key in keyFile; a revoked or unknown device is an
// error.
func DeviceRecordKey(path, keyFile, id string) ([]byte, error) {
	master, err := LoadPSKKey(keyFile)
	if err != nil {
		return nil, err
	}
	h, err := activeTokenHash(path, id)
	if err != nil {
		return nil, err
	}
	return DeriveRecordKey(master, id, h), nil
}

// SignClaim is the signature of the claim that device sent value: the 64
// lowercase hex digits of HMAC-SHA256(key, "ddnn-device-claim|" + device
// + "|" + hex(SHA-256(value))). With openssl:
//
//	printf 'ddnn-device-claim|%s|%s' "$ID" "$(sha256sum < FILE | cut -d' ' -f1)" |
//	  openssl dgst -sha256 -mac HMAC -macopt "key:$KEY" | cut -d' ' -f2
func SignClaim(key []byte, device string, value []byte) string {
	vh := sha256.Sum256(value)
	return hex.EncodeToString(claimMAC(key, device, vh))
}

// claimMAC is SignClaim's MAC, of the value's SHA-256 vh.
func claimMAC(key []byte, device string, vh [sha256.Size]byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("ddnn-device-claim|" + device + "|" + hex.EncodeToString(vh[:])))
	return mac.Sum(nil)
}

// ClaimError is a device claim that is not believed.
type ClaimError struct {
	Device string
	Reason string
}

func (e *ClaimError) Error() string {
	return fmt.Sprintf("device claim %q: %s", e.Device, e.Reason)
}

// Claims checks the signatures of device claims: the funnel's, keyed by
// any of the service tokens, and each device's own, keyed by its record
// key (only when a master key is given). It follows both files' changes
// as Tokens and Devices do: a revoked device's signatures fail within a
// second.
type Claims struct {
	service *Tokens
	d       *Devices
	master  []byte
}

// NewClaims checks claims against service's tokens and, with a master key
// (auth.devices_psk_key_file), against the record keys of d's devices.
// service is required: the funnel's own claims are signed with it.
func NewClaims(service *Tokens, d *Devices, master []byte) (*Claims, error) {
	if service == nil {
		return nil, fmt.Errorf("auth.devices is token, so the first tier believes a record's device only signed, and the funnel signs with the service token: set auth.service_token_file (or --service-token-file)")
	}
	return &Claims{service: service, d: d, master: master}, nil
}

// maxClaimSigs bounds the signatures one ddnn-device-sig header may hold:
// the funnel signs with each service token of its file, and a file holds
// one token, two while one is rotated.
const maxClaimSigs = 8

// Verify returns nil when sig (from the ddnn-device-sig header: hex
// signatures separated by commas) holds a signature of the claim that
// device sent value, with a service token or with the device's current
// record key; else a *ClaimError saying why not.
func (c *Claims) Verify(device string, value []byte, sig string) error {
	if sig == "" {
		return &ClaimError{device, "not signed (header ddnn-device-sig): a device writing to Kafka signs its id with its record key (ddnn devices record-key)"}
	}
	parts := strings.Split(sig, ",")
	if len(parts) > maxClaimSigs {
		return &ClaimError{device, fmt.Sprintf("header ddnn-device-sig: %d signatures, at most %d", len(parts), maxClaimSigs)}
	}
	sigs := make([][]byte, len(parts))
	for i, p := range parts {
		b, err := hex.DecodeString(p)
		if err != nil || len(b) != sha256.Size {
			return &ClaimError{device, "header ddnn-device-sig: want 64 hex digits (several separated by commas)"}
		}
		sigs[i] = b
	}
	vh := sha256.Sum256(value)
	keys := c.service.claimKeys()
	if c.master != nil && c.d != nil {
		if h, ok := c.d.tokenHash(device); ok {
			keys = append(keys, DeriveRecordKey(c.master, device, h))
		}
	}
	for _, k := range keys {
		want := claimMAC(k, device, vh)
		for _, got := range sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return &ClaimError{device, "the signature is neither the funnel's nor the device's record key's (a claim of another device, a changed value, or a revoked device)"}
}

// SignClaim is the ddnn-device-sig header with which the funnel signs the
// claim that device sent value: a signature with each token of the file,
// separated by commas. During a rotation (the new token added first, the
// old one removed later) a part of the pipeline that has read only one of
// the two files still verifies the claim, and a record signed before the
// old token's removal still verifies after it.
func (t *Tokens) SignClaim(device string, value []byte) string {
	vh := sha256.Sum256(value)
	keys := t.claimKeys()
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = hex.EncodeToString(claimMAC(k, device, vh))
	}
	return strings.Join(sigs, ",")
}

// claimKeys are the claim keys of every token in the file.
func (t *Tokens) claimKeys() [][]byte {
	t.f.refresh(time.Now())
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.claims)
}

// claimKey derives a service token's claim key: HMAC-SHA256(token,
// "ddnn-device-claim-key"), so the token itself is not the MAC key.
func claimKey(token string) []byte {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("ddnn-device-claim-key"))
	return mac.Sum(nil)
}

// activeTokenHash returns the token_sha256 of device id's active entry in
// the credentials file at path.
func activeTokenHash(path, id string) (string, error) {
	df, err := readDevicesFile(path)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(df.Devices, func(e DeviceEntry) bool { return e.ID == id })
	switch {
	case i < 0:
		return "", fmt.Errorf("device %q is not in %s", id, path)
	case df.Devices[i].Revoked != nil:
		return "", fmt.Errorf("device %q was revoked at %s: ddnn devices add gives it a new token and keys", id, df.Devices[i].Revoked.Format(time.RFC3339))
	}
	return df.Devices[i].TokenSHA256, nil
}
