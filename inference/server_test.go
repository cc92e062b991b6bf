package inference

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// serve runs Serve on a loopback port with load.
func serve(t *testing.T, load func() (*Session, error)) (url string, cancel context.CancelFunc, done chan error) {
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
	go func() { done <- Serve(ctx, ServerConfig{Listener: ln, Function: f, Load: load}) }()
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
