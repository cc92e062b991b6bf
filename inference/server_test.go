package inference

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// serve runs Serve on a loopback port with load.
func serve(t *testing.T, load func() (*Session, error)) (url string, cancel context.CancelFunc, done chan error) {
	return serveWith(t, load, nil)
}

// serveWith is serve for bearers of service tokens only (nil: anyone).
func serveWith(t *testing.T, load func() (*Session, error), service *auth.Tokens) (url string, cancel context.CancelFunc, done chan error) {
	t.Helper()
	p := shipped(t)
	f, err := New(Config{Pipeline: p, Tier: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- Serve(ctx, ServerConfig{Listener: ln, Function: f, Load: load, Service: service}) }()
	t.Cleanup(cancel)
	return "http://" + ln.Addr().String(), cancel, done
}

func returned(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

// TestServeStops: ready once the model loaded, then a clean stop that
// closes the session and the listener.
func TestServeStops(t *testing.T) {
	var sess *Session
	url, cancel, done := serve(t, func() (*Session, error) {
		s, err := NewSession(shipped(t), 0, SessionOptions{IntraOpThreads: 1})
		sess = s
		return s, err
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := returned(t, done); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if sess.sess != nil {
		t.Error("session not closed")
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("still serving after Serve returned")
	}
}

// TestServeLoadFails: a model that does not load ends Serve with its error.
func TestServeLoadFails(t *testing.T) {
	bad := errors.New("model \"e.onnx\": no such file")
	url, _, done := serve(t, func() (*Session, error) { return nil, bad })
	if err := returned(t, done); !errors.Is(err, bad) {
		t.Errorf("Serve: %v, want the load error", err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("still serving after Serve returned")
	}
}

// TestServeWantsServiceToken: a replica with a service token answers
// /v1/infer only to its bearers; health stays open.
func TestServeWantsServiceToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service.token")
	token, _ := auth.WriteTokenFile(path)
	tokens, err := auth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	url, _, _ := serveWith(t, func() (*Session, error) { return NewSession(shipped(t), 0, SessionOptions{IntraOpThreads: 1}) }, tokens)
	for _, tc := range []struct {
		auth string
		ok   bool
	}{{"", false}, {"Bearer nope", false}, {"Bearer " + token, true}} {
		req, _ := http.NewRequest(http.MethodPost, url+httpapi.PathInfer, strings.NewReader("not a batch"))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if (resp.StatusCode != http.StatusUnauthorized) != tc.ok {
			t.Errorf("Authorization %.12q: %d", tc.auth, resp.StatusCode)
		}
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %v", err)
	} else {
		resp.Body.Close()
	}
}
