// Package auth holds the credentials of ddnn's trust boundaries: bearer
// service tokens that the pipeline's own parts present to each other on the
// delivery zone, and device credentials (a file of token hashes managed by
// `ddnn devices`) that devices present on ingest: a token, the DTLS
// pre-shared key and the Kafka record key derived from it, or a client
// certificate. Both files are re-read when they change, so rotation and
// revocation need no restart. Claims checks the signed device claims of
// records on the first tier's topic, where Kafka cannot say who wrote them.
//
// Tokens are 256-bit random values. A device token is stored only as its
// SHA-256: with that much entropy a fast hash cannot be reversed by
// guessing, and checking a request costs one hash, not a deliberately slow
// password hash per message.
package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// reloadEvery is how often a credentials file is checked for changes, at
// most: a revocation takes effect within it.
const reloadEvery = 500 * time.Millisecond

// NewToken returns a new random token: prefix, then 32 random bytes in
// unpadded base64url.
func NewToken(prefix string) string {
	var b [32]byte
	rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Token prefixes tell a leaked token's kind at a glance.
const (
	ServiceTokenPrefix = "ddnn_svc_"
	DeviceTokenPrefix  = "ddnn_dev_"
)

// BearerToken returns the token of an Authorization header value
// "Bearer <token>" (the scheme case-insensitive, RFC 6750), or false.
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || len(token) > 4096 || strings.ContainsAny(token, " \t\r\n") {
		return "", false
	}
	return token, true
}

// file is a credentials file re-read when its size or modification time
// changes, checked at most every reloadEvery.
type file struct {
	path  string
	parse func([]byte) error

	mu      sync.Mutex
	checked time.Time
	mod     time.Time
	size    int64
	err     error // of the last read; the previous contents stay in use
}

// refresh re-reads the file if it changed. A file that cannot be read or
// parsed keeps the last good contents in force (and reports the error
// once), so a half-written edit never opens or closes the door.
func (f *file) refresh(now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.checked) < reloadEvery && !f.checked.IsZero() {
		return nil
	}
	f.checked = now
	st, err := os.Stat(f.path)
	if err != nil {
		f.err = err
		return err
	}
	if st.ModTime().Equal(f.mod) && st.Size() == f.size {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if err == nil {
		err = f.parse(b)
	}
	if err != nil {
		f.err = fmt.Errorf("%s: %w", f.path, err)
		return f.err
	}
	f.mod, f.size, f.err = st.ModTime(), st.Size(), nil
	return nil
}

// Tokens are the service tokens of a file: one per line, blank lines and
// lines starting with # ignored. Every token in the file is accepted; the
// first is the one this process sends. To rotate: add the new token on a
// new first line everywhere, then remove the old one.
type Tokens struct {
	f file

	mu     sync.RWMutex
	hashes [][32]byte
	claims [][]byte // claimKey of each token, the first's first
	first  string
}

// LoadTokens reads a service token file (pipeline.ServiceTokenPath); it
// must hold at least one token. An empty path, a pipeline without service
// authentication, is no Tokens: nil, which presents nothing.
func LoadTokens(path string) (*Tokens, error) {
	if path == "" {
		return nil, nil
	}
	t := &Tokens{}
	t.f = file{path: path, parse: t.parse}
	if err := t.f.refresh(time.Now()); err != nil {
		return nil, fmt.Errorf("service token file: %w", err)
	}
	return t, nil
}

func (t *Tokens) parse(b []byte) error {
	var hashes [][32]byte
	var claims [][]byte
	var first string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < 32 || strings.ContainsAny(line, " \t") {
			return fmt.Errorf("line %d: a token is one word of at least 32 characters (make one with 'ddnn token')", n)
		}
		if first == "" {
			first = line
		}
		hashes = append(hashes, sha256.Sum256([]byte(line)))
		claims = append(claims, claimKey(line))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if first == "" {
		return errors.New("no token in the file")
	}
	t.mu.Lock()
	t.hashes, t.claims, t.first = hashes, claims, first
	t.mu.Unlock()
	return nil
}

// Valid reports whether token is one of the file's, comparing in constant
// time with each.
func (t *Tokens) Valid(token string) bool {
	t.f.refresh(time.Now())
	h := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	ok := 0
	for i := range t.hashes {
		ok |= subtle.ConstantTimeCompare(h[:], t.hashes[i][:])
	}
	return ok == 1
}

// Current is the token this process sends: the file's first.
func (t *Tokens) Current() string {
	t.f.refresh(time.Now())
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.first
}

// Path is the file the tokens come from.
func (t *Tokens) Path() string { return t.f.path }

// Transport returns base (http.DefaultTransport when nil) sending the
// current token on every request. A nil t returns base unchanged.
func (t *Tokens) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t == nil {
		return base
	}
	return bearerTransport{t, base}
}

type bearerTransport struct {
	t    *Tokens
	base http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.t.Current())
	return b.base.RoundTrip(r)
}

// Require serves h only to requests bearing one of the tokens; the others
// get 401 with a WWW-Authenticate challenge. A nil t serves every request.
func (t *Tokens) Require(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := BearerToken(r.Header.Get("Authorization"))
		if !ok || !t.Valid(token) {
			Unauthorized(w, "ddnn-service", "this route is for the pipeline's own parts: send its service token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Unauthorized answers 401 with a Bearer challenge for realm and a JSON
// error body.
func Unauthorized(w http.ResponseWriter, realm, msg string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q`, realm))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

// WriteTokenFile writes a new service token file at path (mode 0600),
// refusing to replace an existing one, and returns the token. The file
// holds the token and a newline, nothing else, so that it is usable as it
// is: curl -H "Authorization: Bearer $(cat FILE)", Prometheus's
// bearer_token_file, a Kubernetes Secret from the file.
func WriteTokenFile(path string) (string, error) {
	token := NewToken(ServiceTokenPrefix)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = fmt.Fprintln(f, token)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return token, err
}
