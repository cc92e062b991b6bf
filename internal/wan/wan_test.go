package wan

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs handle for every connection to a listener on 127.0.0.1 until
// the test ends.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo writes back what it reads, counting it in received.
func echo(received *atomic.Int64) func(net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
}

func start(t *testing.T, network string, targets map[string]string) *Network {
	t.Helper()
	spec, err := Parse([]byte(network))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(context.Background(), spec, targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return n
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and reads it back from an echo server.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	t0 := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	readBack(t, c, msg, 5*time.Second)
	return time.Since(t0)
}

func readBack(t *testing.T, c net.Conn, want []byte, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading back %d bytes: %v", len(want), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %q, want %q", got, want)
	}
}

func TestLatency(t *testing.T) {
	for _, tc := range []struct {
		name     string
		link     string
		min, max time.Duration // bounds on every round trip
	}{
		// The upper bounds leave room for a busy machine; a proxy that
		// applied latency twice or per byte would exceed them.
		{"symmetric", "{from: a, to: b, latency: 40ms}", 80 * time.Millisecond, 160 * time.Millisecond},
		{"up and down differ", "{from: a, to: b, up: {latency: 30ms}, down: {latency: 10ms}}", 40 * time.Millisecond, 120 * time.Millisecond},
		{"jitter", "{from: a, to: b, latency: 40ms, jitter: 10ms}", 60 * time.Millisecond, 180 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var received atomic.Int64
			n := start(t, "links: ["+tc.link+"]\n", map[string]string{"a->b": serve(t, echo(&received))})
			c := dial(t, n.Addr("a->b"))
			var rtts []time.Duration
			for range 6 {
				rtts = append(rtts, roundTrip(t, c, []byte("ping")))
			}
			slices.Sort(rtts)
			t.Logf("round trips %v", rtts)
			if rtts[0] < tc.min || rtts[len(rtts)-1] > tc.max {
				t.Errorf("round trips %v, want all in [%s, %s]", rtts, tc.min, tc.max)
			}
		})
	}
}

func TestBandwidth(t *testing.T) {
	const size = 1_000_000 // 1 s at 8 Mbit/s
	for _, tc := range []struct {
		name, link string
		handle     func(net.Conn)
		client     func(t *testing.T, c net.Conn)
	}{
		{
			"up", "{from: a, to: b, up: {bandwidth: 8Mbit}}",
			func(c net.Conn) { // take everything, then say so
				if _, err := io.CopyN(io.Discard, c, size); err == nil {
					c.Write([]byte("k"))
				}
			},
			func(t *testing.T, c net.Conn) {
				if _, err := c.Write(make([]byte, size)); err != nil {
					t.Fatal(err)
				}
				readBack(t, c, []byte("k"), 10*time.Second)
			},
		},
		{
			"down", "{from: a, to: b, down: {bandwidth: 8Mbit}}",
			func(c net.Conn) { // one byte asks for everything
				if _, err := c.Read(make([]byte, 1)); err == nil {
					c.Write(make([]byte, size))
				}
			},
			func(t *testing.T, c net.Conn) {
				c.Write([]byte("?"))
				readBack(t, c, make([]byte, size), 10*time.Second)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := start(t, "links: ["+tc.link+"]\n", map[string]string{"a->b": serve(t, tc.handle)})
			c := dial(t, n.Addr("a->b"))
			t0 := time.Now()
			tc.client(t, c)
			took := time.Since(t0)
			t.Logf("1 MB at 8 Mbit/s took %s", took)
			if took < 900*time.Millisecond || took > 3*time.Second {
				t.Errorf("1 MB at 8 Mbit/s took %s, want about 1 s", took)
			}
		})
	}
}

// A cut is a black hole: an open connection stays open but nothing crosses,
// a new one connects but nothing crosses; after the heal, what was sent
// during the cut arrives and traffic flows again.
func TestCut(t *testing.T) {
	var received atomic.Int64
	n := start(t, `
links: [{from: a, to: b, latency: 5ms}]
cuts: [{link: a->b, at: 200ms, for: 1500ms}]
`, map[string]string{"a->b": serve(t, echo(&received))})
	addr := n.Addr("a->b")
	old := dial(t, addr)
	roundTrip(t, old, []byte("before"))

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- n.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()
	testsupport.WaitFor(t, 2*time.Second, "link cut", func() bool { return n.Stats()[0].Cut })
	cutAt := received.Load()

	if _, err := old.Write([]byte("during-old")); err != nil {
		t.Fatalf("write on an open connection during the cut: %v", err)
	}
	fresh, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("a new connection during the cut was refused: %v", err)
	}
	defer fresh.Close()
	if _, err := fresh.Write([]byte("during-new")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"open": old, "new": fresh} {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b := make([]byte, 1)
		_, err := c.Read(b)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s connection during the cut: read returned %v, want a timeout (a stall, not an answer or a close)", name, err)
		}
		c.SetReadDeadline(time.Time{})
	}
	if got := received.Load(); got != cutAt {
		t.Errorf("the server received %d bytes during the cut", got-cutAt)
	}
	if !n.Stats()[0].Cut {
		t.Fatal("the cut ended before the checks did; the machine is too slow for this test")
	}

	testsupport.WaitFor(t, 3*time.Second, "link healed", func() bool { return !n.Stats()[0].Cut })
	readBack(t, old, []byte("during-old"), 2*time.Second)
	readBack(t, fresh, []byte("during-new"), 2*time.Second)
	roundTrip(t, old, []byte("after"))
	roundTrip(t, fresh, []byte("after"))
}

// Run leaves no link cut when it returns.
func TestRunHealsOnReturn(t *testing.T) {
	var received atomic.Int64
	n := start(t, `
links: [{from: a, to: b}]
cuts: [{link: a->b, at: 0s, for: 1h}]
`, map[string]string{"a->b": serve(t, echo(&received))})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- n.Run(ctx) }()
	testsupport.WaitFor(t, 2*time.Second, "link cut", func() bool { return n.Stats()[0].Cut })
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if n.Stats()[0].Cut {
		t.Fatal("link still cut after Run returned")
	}
	roundTrip(t, dial(t, n.Addr("a->b")), []byte("ok"))
}

func TestCutAndHealByHand(t *testing.T) {
	var received atomic.Int64
	n := start(t, "links: [{from: a, to: b}]\n", map[string]string{"a->b": serve(t, echo(&received))})
	c := dial(t, n.Addr("a->b"))
	if err := n.Cut("a->b"); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("held"))
	if err := n.Heal("a->b"); err != nil {
		t.Fatal(err)
	}
	readBack(t, c, []byte("held"), 2*time.Second)
	if err := n.Cut("b->a"); err == nil || !strings.Contains(err.Error(), `link "b->a" is not started`) {
		t.Errorf("Cut of an unknown link: %v", err)
	}
}

// The counters see every byte each way, on a chain of two links too.
func TestBytesCounted(t *testing.T) {
	var received atomic.Int64
	n := start(t, `
links:
  - {from: a, to: b, latency: 2ms, bandwidth: 100Mbit}
  - {from: b, to: c, latency: 3ms}
  - {from: c, to: a}
`, map[string]string{"b->c": serve(t, echo(&received)), "a->b": "b->c"})
	if got := n.Addrs(); len(got) != 2 || got["c->a"] != "" {
		t.Fatalf("started %v, want a->b and b->c only", got)
	}
	c := dial(t, n.Addr("a->b"))
	const size = 300_000
	msg := make([]byte, size)
	rand.Read(msg)
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(msg); wrote <- err }()
	readBack(t, c, msg, 10*time.Second)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("12345"))
	want := []LinkStats{
		{From: "a", To: "b", BytesUp: size + 5, BytesDown: size + 5},
		{From: "b", To: "c", BytesUp: size + 5, BytesDown: size + 5},
	}
	if got := n.Stats(); !slices.Equal(got, want) {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

// Stop drains what is inside the proxies, held by a cut or delayed by
// latency and bandwidth, and leaves no goroutine behind (TestMain checks).
func TestStopWithBytesInside(t *testing.T) {
	sink := serve(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	spec, err := Parse([]byte(`
links:
  - {from: a, to: b, latency: 50ms, bandwidth: 1Mbit}
  - {from: b, to: c, latency: 50ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(context.Background(), spec, map[string]string{"a->b": sink, "b->c": sink})
	if err != nil {
		t.Fatal(err)
	}
	slow, held := dial(t, n.Addr("a->b")), dial(t, n.Addr("b->c"))
	n.Cut("b->c")
	var wg sync.WaitGroup
	for _, c := range []net.Conn{slow, held} {
		wg.Add(1)
		go func() { // blocks once the proxy stops reading, until Stop closes it
			defer wg.Done()
			c.Write(make([]byte, 4<<20))
		}()
	}
	testsupport.WaitFor(t, 2*time.Second, "bytes in the slow link", func() bool { return n.Stats()[0].BytesUp > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(t0))
	wg.Wait()
	if err := n.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	spec, err := Parse([]byte("links: [{from: a, to: b}, {from: b, to: c}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		targets map[string]string
		want    string
	}{
		{"unknown link", map[string]string{"a->c": "127.0.0.1:1"}, `target for "a->c": not a link in the network (have a->b, b->c)`},
		{"not loopback", map[string]string{"a->b": "192.0.2.1:80"}, `target for link a->b: "192.0.2.1:80" is not a loopback address`},
		{"not an address", map[string]string{"a->b": "fog"}, `target for link a->b: "fog" is neither host:port nor a link name`},
		{"bad port", map[string]string{"a->b": "127.0.0.1:http"}, "port must be a number"},
		{"chain to a link without target", map[string]string{"a->b": "b->c"}, "target for link a->b: link b->c has no target itself"},
		{"chain loop", map[string]string{"a->b": "b->c", "b->c": "a->b"}, "targets chain links in a loop: a->b, b->c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Start(context.Background(), spec, tc.targets)
			if err == nil {
				n.Stop(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
