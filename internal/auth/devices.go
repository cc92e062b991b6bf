package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/yamlcheck"
)

// DeviceEntry is one device of a credentials file.
//
// A device's credentials are its token, the DTLS pre-shared key derived
// from it, and any client certificate whose common name is its id (signed
// by funnel.tls.client_ca_file). Revoking the device refuses all three.
type DeviceEntry struct {
	ID string `yaml:"id"`
	// TokenSHA256 is the hex SHA-256 of the device's token; the token
	// itself is never stored. Empty only in a revoked entry of a device
	// that had no token (RevokeCertificateOnly).
	TokenSHA256 string    `yaml:"token_sha256,omitempty"`
	Added       time.Time `yaml:"added,omitempty"`
	// Revoked, when set, is when the device lost its access.
	Revoked *time.Time `yaml:"revoked,omitempty"`
	// CertsIssuedAfter, set when a revoked device is added again, is its
	// last revocation: a client certificate of the device whose validity
	// starts before it was issued before the revocation and stays refused.
	CertsIssuedAfter *time.Time `yaml:"certs_issued_after,omitempty"`
}

type devicesFile struct {
	Devices []DeviceEntry `yaml:"devices"`
}

const devicesHeader = `# ddnn device credentials, managed with 'ddnn devices add|list|revoke'.
# Only each token's SHA-256 is kept: a lost token cannot be read back, only
# revoked and replaced. Running funnels re-read this file when it changes.
`

// deviceIDRE is what a device id may be: the id rule of message ids.
var deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// CheckDeviceID returns an error for an id a credentials file cannot hold.
func CheckDeviceID(id string) error {
	if !deviceIDRE.MatchString(id) {
		return fmt.Errorf("device id %q: 1 to 128 characters, letters, digits and . _ : @ -, starting with a letter or digit", id)
	}
	return nil
}

// Devices authenticates device tokens against a credentials file,
// re-reading it when it changes: a device revoked or added takes effect
// within a second.
type Devices struct {
	f file

	mu     sync.RWMutex
	byHash map[[32]byte]string    // token hash → device id, revoked ones left out
	byID   map[string]string      // device id → its token_sha256, revoked ones left out
	certs  map[string]DeviceEntry // device id → its entry, when it limits client certificates
}

// LoadDevices reads a credentials file.
func LoadDevices(path string) (*Devices, error) {
	d := &Devices{}
	d.f = file{path: path, parse: d.parse}
	if err := d.f.refresh(time.Now()); err != nil {
		return nil, fmt.Errorf("device credentials: %w", err)
	}
	return d, nil
}

func (d *Devices) parse(b []byte) error {
	df, err := parseDevices(b)
	if err != nil {
		return err
	}
	m := make(map[[32]byte]string, len(df.Devices))
	ids := make(map[string]string, len(df.Devices))
	certs := map[string]DeviceEntry{}
	for _, e := range df.Devices {
		if e.Revoked != nil || e.CertsIssuedAfter != nil {
			certs[e.ID] = e
		}
		if e.Revoked != nil {
			continue
		}
		var h [32]byte
		hex.Decode(h[:], []byte(e.TokenSHA256))
		m[h] = e.ID
		ids[e.ID] = strings.ToLower(e.TokenSHA256)
	}
	d.mu.Lock()
	d.byHash, d.byID, d.certs = m, ids, certs
	d.mu.Unlock()
	return nil
}

// CheckCertificate returns why a verified client certificate of device id
// (its common name), valid from notBefore, is refused: the device was
// revoked, or the certificate was issued before the device's last
// revocation. nil lets it in, as for a device the file does not list.
func (d *Devices) CheckCertificate(id string, notBefore time.Time) error {
	d.f.refresh(time.Now())
	d.mu.RLock()
	e, ok := d.certs[id]
	d.mu.RUnlock()
	switch {
	case !ok:
		return nil
	case e.Revoked != nil:
		return fmt.Errorf("device %q was revoked at %s: its client certificates are refused", id, e.Revoked.Format(time.RFC3339))
	case notBefore.Before(*e.CertsIssuedAfter):
		return fmt.Errorf("device %q's client certificate is valid from %s, before the device's revocation at %s: a certificate issued before the revocation stays refused", id, notBefore.UTC().Format(time.RFC3339), e.CertsIssuedAfter.Format(time.RFC3339))
	}
	return nil
}

// Authenticate returns the device a token belongs to, false for an unknown
// or revoked token.
func (d *Devices) Authenticate(token string) (string, bool) {
	d.f.refresh(time.Now())
	h := sha256.Sum256([]byte(token))
	d.mu.RLock()
	defer d.mu.RUnlock()
	id, ok := d.byHash[h]
	return id, ok
}

// Path is the credentials file.
func (d *Devices) Path() string { return d.f.path }

// FromRequest authenticates a device request's bearer token. It answers
// 401 with a challenge (and returns false) when the token is missing or
// not valid.
func (d *Devices) FromRequest(w http.ResponseWriter, r *http.Request) (string, bool) {
	token, ok := BearerToken(r.Header.Get("Authorization"))
	if !ok {
		Unauthorized(w, "ddnn", "send the device's token: Authorization: Bearer <token> (ddnn devices add)")
		return "", false
	}
	id, ok := d.Authenticate(token)
	if !ok {
		Unauthorized(w, "ddnn", "the token is not valid, or was revoked")
		return "", false
	}
	return id, true
}

func parseDevices(b []byte) (*devicesFile, error) {
	var df devicesFile
	doc, err := yamlcheck.Parse(b, reflect.TypeFor[devicesFile]())
	switch {
	case errors.Is(err, yamlcheck.ErrEmpty):
		return &df, nil // an empty file: no devices
	case err != nil:
		return nil, err
	}
	if err := doc.Decode(&df); err != nil {
		return nil, err
	}
	var errs []error
	seen := map[string]bool{}
	for i, e := range df.Devices {
		if err := CheckDeviceID(e.ID); err != nil {
			errs = append(errs, fmt.Errorf("devices[%d]: %w", i, err))
		}
		if seen[e.ID] {
			errs = append(errs, fmt.Errorf("devices[%d]: device %q listed twice", i, e.ID))
		}
		seen[e.ID] = true
		if e.TokenSHA256 == "" && e.Revoked != nil {
			continue // a revoked device that had no token
		}
		if h, err := hex.DecodeString(e.TokenSHA256); err != nil || len(h) != sha256.Size {
			errs = append(errs, fmt.Errorf("devices[%d] (%s).token_sha256: want 64 hex digits", i, e.ID))
		}
	}
	return &df, errors.Join(errs...)
}

// readDevicesFile reads a credentials file for editing; a missing file is
// an empty one.
func readDevicesFile(path string) (*devicesFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &devicesFile{}, nil
	}
	if err != nil {
		return nil, err
	}
	df, err := parseDevices(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return df, nil
}

// writeDevicesFile replaces path atomically (a temporary file renamed over
// it), mode 0600.
func writeDevicesFile(path string, df *devicesFile) error {
	b, err := yaml.Marshal(df)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(devicesHeader + string(b)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// AddDevice adds device id to the credentials file at path (created if
// missing) and returns its new token, which is shown once and never
// stored. Re-adding a revoked device gives it a new token (so a new
// pre-shared key), and its client certificates issued before the
// revocation stay refused; adding an active one is an error.
func AddDevice(path, id string, now time.Time) (string, error) {
	if err := CheckDeviceID(id); err != nil {
		return "", err
	}
	df, err := readDevicesFile(path)
	if err != nil {
		return "", err
	}
	token := NewToken(DeviceTokenPrefix)
	h := sha256.Sum256([]byte(token))
	e := DeviceEntry{ID: id, TokenSHA256: hex.EncodeToString(h[:]), Added: now.UTC().Truncate(time.Second)}
	i := slices.IndexFunc(df.Devices, func(e DeviceEntry) bool { return e.ID == id })
	switch {
	case i < 0:
		df.Devices = append(df.Devices, e)
	case df.Devices[i].Revoked == nil:
		return "", fmt.Errorf("device %q already has a token: revoke it first to replace it", id)
	default:
		e.CertsIssuedAfter = df.Devices[i].Revoked
		df.Devices[i] = e
	}
	return token, writeDevicesFile(path, df)
}

// RevokeDevice marks device id revoked in the credentials file at path;
// within a second running funnels refuse its token, its pre-shared key
// and its client certificates, on new and open connections alike.
func RevokeDevice(path, id string, now time.Time) error {
	return revoke(path, id, now, false)
}

// RevokeCertificateOnly is RevokeDevice for a device that may not be in
// the file, one that has a client certificate and no token: it is
// recorded revoked, so its certificates are refused.
func RevokeCertificateOnly(path, id string, now time.Time) error {
	return revoke(path, id, now, true)
}

func revoke(path, id string, now time.Time, unlisted bool) error {
	if err := CheckDeviceID(id); err != nil {
		return err
	}
	df, err := readDevicesFile(path)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(df.Devices, func(e DeviceEntry) bool { return e.ID == id })
	if i < 0 && !unlisted {
		return fmt.Errorf("device %q is not in %s (a device with a client certificate and no token: revoke it with --certificate-only)", id, path)
	}
	if i < 0 {
		df.Devices = append(df.Devices, DeviceEntry{ID: id})
		i = len(df.Devices) - 1
	}
	if df.Devices[i].Revoked != nil {
		return fmt.Errorf("device %q was already revoked at %s", id, df.Devices[i].Revoked.Format(time.RFC3339))
	}
	t := now.UTC().Truncate(time.Second)
	df.Devices[i].Revoked = &t
	return writeDevicesFile(path, df)
}

// ListDevices returns the devices of the credentials file at path.
func ListDevices(path string) ([]DeviceEntry, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	df, err := readDevicesFile(path)
	if err != nil {
		return nil, err
	}
	return df.Devices, nil
}
