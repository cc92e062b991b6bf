package funnel

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// TestRefusedBodyNotAwaited: over HTTP and HTTPS, with device auth on and
// read_timeout 2m, a POST answered before its body was read (401 without
// a token, 413 for a declared length over max_request_bytes) whose body
// never comes is answered at once with Connection: close, and its
// connection is closed within seconds, not after read_timeout. A refused
// request whose body did come reads its answer whole; an accepted one
// keeps its connection.
func TestRefusedBodyNotAwaited(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	token, err := auth.AddDevice(creds, "cam-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	devices, err := auth.LoadDevices(creds)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if scheme == "https" {
				serverTLS, clientTLS = testTLS(t)
			}
			b := startBoundedAuth(t, fmt.Sprintf(lorisYAML, ""), serverTLS, clientTLS, Auth{Devices: devices})
			// send writes a request whose header declares length bytes of
			// body and whose body is body, and reads the answer within 5 s.
			send := func(authz string, length int, body []byte) (*http.Response, net.Conn) {
				t.Helper()
				c, err := b.dial("")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: funnel\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n%s", httpapi.PathIngest, length, authz, body)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("no answer within 5s (read_timeout 2m): %v", err)
				}
				resp.Body.Close()
				return resp, c
			}
			bearer := "Authorization: Bearer " + token + "\r\n"
			for _, tc := range []struct {
				name, authz string
				length      int
				want        int
			}{
				{"no token", "", 16, http.StatusUnauthorized},
				{"over max_request_bytes", bearer, 4096, http.StatusRequestEntityTooLarge},
			} {
				start := time.Now()
				resp, c := send(tc.authz, tc.length, nil)
				answered := time.Since(start)
				if resp.StatusCode != tc.want || !resp.Close {
					t.Errorf("%s, body never sent: %s, Connection: close %v; want %d and true", tc.name, resp.Status, resp.Close, tc.want)
				}
				select {
				case <-closed(c):
					t.Logf("%s, body never sent: %d after %v, connection closed after %v", tc.name, resp.StatusCode, answered.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
				case <-time.After(5 * time.Second):
					t.Errorf("%s, body never sent: the connection is still open 5s after the answer (read_timeout 2m)", tc.name)
				}
			}
			resp, _ := send("", 16, floats(1, 2, 3, 4))
			if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
				t.Errorf("no token, body sent: %s, Connection: close %v; want 401 and true", resp.Status, resp.Close)
			}
			resp, _ = send(bearer, 16, floats(1, 2, 3, 4))
			if resp.StatusCode != http.StatusAccepted || resp.Close {
				t.Errorf("a device's ingest: %s, Connection: close %v; want 202 and false", resp.Status, resp.Close)
			}
		})
	}
}

// pipeliner is a client that pipelines requests without ever reading an
// answer, until the funnel stops reading them (its writes are stuck) or
// closes the connection.
type pipeliner struct {
	conns []net.Conn
	stuck []chan struct{} // closed when its writes stop
	wg    sync.WaitGroup
}

// open opens a pipelining connection from src, with a small receive
// buffer. Its requests go to a route that does not exist, so that each
// answer (a 404 that names the 12 KB path) fills the buffers between the
// funnel and it quickly.
func (p *pipeliner) open(t *testing.T, b *bounded, src string) {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)},
		Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
	var c net.Conn
	var err error
	if b.tls != nil {
		c, err = tls.DialWithDialer(d, "tcp", b.addr, b.tls)
	} else {
		c, err = d.Dial("tcp", b.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	req := []byte("GET /" + strings.Repeat("a", 12000) + " HTTP/1.1\r\nHost: funnel\r\n\r\n")
	chunk := bytes.Repeat(req, 30)
	stuck := make(chan struct{})
	p.conns, p.stuck = append(p.conns, c), append(p.stuck, stuck)
	p.wg.Go(func() {
		defer close(stuck)
		for {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
}

func (p *pipeliner) close() {
	for _, c := range p.conns {
		c.Close()
	}
	p.wg.Wait()
}

// TestStuckWriter: over HTTP and HTTPS, with read_header_timeout,
// read_timeout and idle_timeout at 2m, connections whose client pipelines
// requests and never reads the answers are closed after write_timeout;
// with a longer write_timeout, at max_connections, one of them makes room
// for a device.
func TestStuckWriter(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if scheme == "https" {
				serverTLS, clientTLS = testTLS(t)
			}
			t.Run("write_timeout", func(t *testing.T) {
				b := startBounded(t, fmt.Sprintf(lorisYAML, ", write_timeout: 1s"), serverTLS, clientTLS)
				var p pipeliner
				defer p.close()
				for i := range 4 {
					p.open(t, b, fmt.Sprintf("127.0.0.%d", 41+i))
				}
				deadline := time.Now().Add(30 * time.Second)
				start := time.Now()
				defer func() { t.Logf("closed in %v", time.Since(start)) }()
				for open := int(testutil.ToFloat64(b.f.m.conns)); open > 0; open = int(testutil.ToFloat64(b.f.m.conns)) {
					if time.Now().After(deadline) {
						t.Fatalf("%d of 4 connections that never read their answers still open after 30s (write_timeout 1s)", open)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
			t.Run("evicted", func(t *testing.T) {
				b := startBounded(t, fmt.Sprintf(lorisYAML, ", max_connections: 16, write_timeout: 2m"), serverTLS, clientTLS)
				dev := newGoodDevice(b)
				dev.send(t, 3) // warm up
				var p pipeliner
				defer p.close()
				for i := range 16 {
					p.open(t, b, fmt.Sprintf("127.0.0.%d", 41+i))
				}
				for _, s := range p.stuck {
					select {
					case <-s:
					case <-time.After(30 * time.Second):
						t.Fatal("a pipelining client's writes still go through after 30s")
					}
				}
				dev.send(t, 1)
				if n := b.closedFor(connEvicted); n < 1 {
					t.Errorf("%d connections evicted, want at least 1", n)
				}
			})
		})
	}
}
