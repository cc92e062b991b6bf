package funnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// bounded is a funnel in Run with its metrics, over kfake, on loopback.
type bounded struct {
	f    *Funnel
	addr string // the device listener
	tls  *tls.Config
}

// startBounded runs a funnel of pipeline y on loopback over kfake, its
// device listener over TLS when serverTLS is set; clientTLS is what a
// device dials it with.
func startBounded(t *testing.T, y string, serverTLS, clientTLS *tls.Config) *bounded {
	t.Helper()
	return startBoundedAuth(t, y, serverTLS, clientTLS, Auth{})
}

// startBoundedAuth is startBounded with who the funnel lets in.
func startBoundedAuth(t *testing.T, y string, serverTLS, clientTLS *tls.Config, a Auth) *bounded {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	c := testsupport.KafkaCluster(t, p.Kafka.Partitions, p.Topics()...)
	p.Kafka.Brokers = c.ListenAddrs()
	cl, ln, dln, _ := funnelSockets(t, &p.Kafka)
	b := &bounded{f: New(onlySite(t, p), cl, NewMetrics(prometheus.NewRegistry()), nil), addr: ln.Addr().String(), tls: clientTLS}
	b.f.SetAuth(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.f.Run(ctx, RunConfig{Device: ln, Delivery: dln, TLS: serverTLS, ShutdownTimeout: time.Second})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	})
	return b
}

// dial opens a connection to the device listener from source address src
// ("" for the default).
func (b *bounded) dial(src string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	if b.tls != nil {
		return tls.DialWithDialer(d, "tcp", b.addr, b.tls)
	}
	return d.Dial("tcp", b.addr)
}

// closed returns a channel closed once the peer closed c (or the test
// did), reading and discarding what comes until then.
func closed(c net.Conn) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(ch)
	}()
	return ch
}

// closedFor is how many connections the funnel closed for reason.
func (b *bounded) closedFor(reason string) int {
	return int(testutil.ToFloat64(b.f.m.closed.WithLabelValues(reason)))
}

// The three kinds of loris: a kept-alive connection idle after GET
// /healthz, a header that trickles in a byte at a time, a POST whose body
// never arrives.
const (
	lorisIdle = iota
	lorisTrickle
	lorisNoBody
	lorisKinds
)

var lorisStart = [lorisKinds]string{
	lorisIdle:    "GET /healthz HTTP/1.1\r\nHost: funnel\r\n\r\n",
	lorisTrickle: "POST /v1/ingest HTTP/1.1\r\nHost: funnel\r\nX-Slow: ",
	lorisNoBody:  "POST /v1/ingest HTTP/1.1\r\nHost: funnel\r\nContent-Type: application/octet-stream\r\nContent-Length: 16\r\n\r\n",
}

// loris is a bounded slowloris: connections of each kind, from sources,
// and a trickler feeding the trickling headers until they are closed.
type loris struct {
	only    []int // the kinds it opens, in turn; nil: every kind
	conns   []net.Conn
	kinds   []int // of each connection
	done    []<-chan struct{}
	refused int // dials that failed
	stop    chan struct{}
	wg      sync.WaitGroup
}

// openLoris opens n connections from src, kinds in turn.
func (l *loris) open(t *testing.T, b *bounded, src string, n int) {
	t.Helper()
	for range n {
		c, err := b.dial(src)
		if err != nil {
			l.refused++
			continue
		}
		kind := len(l.conns) % lorisKinds
		if l.only != nil {
			kind = l.only[len(l.conns)%len(l.only)]
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte(lorisStart[kind])) // a connection the funnel closed already fails here; it counts as closed
		l.conns = append(l.conns, c)
		l.kinds = append(l.kinds, kind)
		l.done = append(l.done, closed(c))
	}
}

// trickle writes a header byte to every trickling connection each
// interval until stopped.
func (l *loris) trickle(interval time.Duration) {
	l.stop = make(chan struct{})
	l.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			for i := range l.conns {
				if l.kinds[i] != lorisTrickle {
					continue
				}
				select {
				case <-l.done[i]:
					continue
				default:
				}
				l.conns[i].SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				l.conns[i].Write([]byte("a"))
			}
		}
	})
}

// held is how many of the connections the funnel has not closed.
func (l *loris) held() int {
	n := 0
	for _, d := range l.done {
		select {
		case <-d:
		default:
			n++
		}
	}
	return n
}

func (l *loris) close() {
	if l.stop != nil {
		close(l.stop)
		l.wg.Wait()
		l.stop = nil
	}
	for i, c := range l.conns {
		c.Close()
		<-l.done[i]
	}
}

// goodDevice sends ingests, each on a new connection as a device that
// sends now and then does, and keeps their latencies.
type goodDevice struct {
	client *http.Client
	url    string
	n      int
}

func newGoodDevice(b *bounded) *goodDevice {
	scheme := "http"
	if b.tls != nil {
		scheme = "https"
	}
	return &goodDevice{
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: b.tls}},
		url:    scheme + "://" + b.addr + httpapi.PathIngest,
	}
}

// send sends n ingests one after the other; each must be accepted within
// the client's timeout (5 s, where an ingest takes milliseconds). It returns their latencies.
func (d *goodDevice) send(t *testing.T, n int) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, 0, n)
	for range n {
		d.n++
		req, _ := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(floats(1, 2, 3, 4)))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(HeaderMessageID, fmt.Sprintf("good-%d", d.n))
		req.Header.Set(HeaderDeviceID, "good")
		start := time.Now()
		resp, err := d.client.Do(req)
		if err != nil {
			t.Fatalf("good device, ingest %d: %v", d.n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("good device, ingest %d: %s, want 202", d.n, resp.Status)
		}
		lat = append(lat, time.Since(start))
	}
	return lat
}

func p99(lat []time.Duration) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// lorisYAML is testYAML with every source counted (loopback is exempt by
// default) and time bounds longer than the test, so that the loris holds
// its connections throughout (TestDeviceListenerTimeouts shows the time
// bounds close them); %s is more funnel settings. Its produce_timeout is
// under the good device's 5 s: on a loaded machine a produce of the
// in-memory broker took over 1 s, and the device got a 503 that says
// nothing of the connection bounds these tests are about.
const lorisYAML = `
name: t
input: {dtype: float32, shape: [2, 2]}
classes: [a, b]
tiers:
  - {name: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, model: c.onnx, exit: {output: o}}
funnel: {max_request_bytes: 2048, per_source_exempt: [], read_header_timeout: 2m, read_timeout: 2m, idle_timeout: 2m%s}
kafka: {partitions: 2, produce_timeout: 4s}
`

// lorisCase is a loris against a funnel's connection bounds: heavy
// connections from one source, spread over sources; the good device
// sends samples ingests before, during and after.
type lorisCase struct {
	kinds               []int // of the loris' connections, in turn; nil: every kind
	maxConns, perSource int
	heavy, spread       int
	sources             int
	samples             int
}

// TestLoris: 5,000 idle or slow connections (idle after GET /healthz, a
// header trickling in, a POST whose body never comes) against the default
// connection bounds over HTTP, 4,800 from 100 sources and 200 from one;
// over HTTPS, where handshakes cost more, 300 against max_connections
// 240. A device whose every ingest opens a new connection keeps being
// served while the loris holds its connections: each of its ingests is
// accepted within 5 s (its p99 before, during and after is logged), the
// one source is held to max_connections_per_source, and the funnel never
// holds more than max_connections, making room by evicting the quietest.
// The no-body cases hold every connection in a request whose body never
// comes (356 from 5 sources against max_connections 128): those wait on
// their clients and make room too.
func TestLoris(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 connections")
	}
	for _, tc := range []struct {
		scheme string
		lorisCase
	}{
		{"http", lorisCase{nil, pipeline.DefaultFunnelMaxConnections, pipeline.DefaultFunnelMaxConnectionsPerSource, 200, 4800, 100, 300}},
		{"https", lorisCase{nil, 240, pipeline.DefaultFunnelMaxConnectionsPerSource, 100, 200, 10, 200}},
		// Every connection a POST whose body never comes: each is in a
		// request, waiting on its client, and still makes room.
		{"http-no-body", lorisCase{[]int{lorisNoBody}, 128, 64, 100, 256, 4, 100}},
		{"https-no-body", lorisCase{[]int{lorisNoBody}, 128, 64, 100, 256, 4, 100}},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if strings.HasPrefix(tc.scheme, "https") {
				serverTLS, clientTLS = testTLS(t)
			}
			more := fmt.Sprintf(", max_connections: %d, max_connections_per_source: %d", tc.maxConns, tc.perSource)
			testLoris(t, startBounded(t, fmt.Sprintf(lorisYAML, more), serverTLS, clientTLS), tc.lorisCase)
		})
	}
}

func testLoris(t *testing.T, b *bounded, tc lorisCase) {
	dev := newGoodDevice(b)
	dev.send(t, 20) // warm up
	before := dev.send(t, tc.samples)

	l := loris{only: tc.kinds}
	defer l.close()
	start := time.Now()
	l.open(t, b, "127.0.0.200", tc.heavy)
	for i := range tc.spread {
		l.open(t, b, fmt.Sprintf("127.0.0.%d", 10+i%tc.sources), 1)
	}
	l.trickle(time.Second)
	// A device that connects while the funnel is still taking the loris'
	// connections gets in.
	dev.send(t, 1)
	// The funnel takes every loris connection: each is open, was evicted
	// or refused for its source.
	for deadline := time.Now().Add(20 * time.Second); ; {
		taken := int(testutil.ToFloat64(b.f.m.conns)) + b.closedFor(connEvicted) + b.closedFor(connPerSource)
		if taken >= tc.heavy+tc.spread {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the funnel took %d of %d loris connections in 20s", taken, tc.heavy+tc.spread)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	opened := time.Since(start)

	during := dev.send(t, tc.samples)
	held := l.held()
	t.Logf("loris: %d connections opened and taken in %v (%d dials failed); %d of them held open at the end of the good device's ingests",
		len(l.conns), opened.Round(time.Millisecond), l.refused, held)
	if open := int(testutil.ToFloat64(b.f.m.conns)); open > tc.maxConns {
		t.Errorf("%d connections open, over max_connections %d", open, tc.maxConns)
	}
	if got, want := b.closedFor(connPerSource), tc.heavy-tc.perSource; got != want {
		t.Errorf("%d connections closed for max_connections_per_source, want %d", got, want)
	}
	evicted, want := b.closedFor(connEvicted), tc.perSource+tc.spread-tc.maxConns
	if evicted < want {
		t.Errorf("%d connections evicted at max_connections, want at least %d", evicted, want)
	}
	t.Logf("closed by the bounds: %d per source, %d evicted, %d new ones at max_connections",
		b.closedFor(connPerSource), evicted, b.closedFor(connTotal))

	l.close()
	after := dev.send(t, tc.samples)
	t.Logf("good device ingest p99: %v before, %v during (%.2fx), %v after; max %v during",
		p99(before).Round(time.Microsecond), p99(during).Round(time.Microsecond),
		float64(p99(during))/float64(p99(before)), p99(after).Round(time.Microsecond), slices.Max(during).Round(time.Microsecond))
}

// TestConnLimiter: a source past max_connections_per_source has its new
// connection closed (an exempt source is not counted); at
// max_connections a connection waiting on its client (idle, or in a
// request) makes room, the one that has waited longest without progress
// first; when the funnel works on every
// open connection's request the new one is closed. Each is counted by
// reason.
func TestConnLimiter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	l := newConnLimiter(ln, 4, 2, []string{"127.0.0.3/32"}, 0, m)
	defer l.Close()
	var clock atomic.Int64 // the limiter's, advanced by the test
	clock.Store(time.Now().UnixNano())
	l.now = func() time.Time { return time.Unix(0, clock.Load()) }
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	// dial connects from src; it returns the funnel's side, or nil when
	// the funnel closed the connection (the client reads EOF).
	dial := func(src string) net.Conn {
		t.Helper()
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		select {
		case s := <-accepted:
			return s
		case <-closed(c):
			return nil
		case <-time.After(5 * time.Second):
			t.Fatalf("a connection from %s neither accepted nor closed", src)
			return nil
		}
	}
	isClosed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	count := func(reason string) int { return int(testutil.ToFloat64(m.closed.WithLabelValues(reason))) }

	a1, a2 := dial("127.0.0.2"), dial("127.0.0.2")
	if a1 == nil || a2 == nil {
		t.Fatal("the first two connections of a source were refused")
	}
	if dial("127.0.0.2") != nil || count(connPerSource) != 1 {
		t.Fatalf("a third connection of a source was accepted (per source 2), or not counted (%d)", count(connPerSource))
	}
	x1, x2 := dial("127.0.0.3"), dial("127.0.0.3")
	if x1 == nil || x2 == nil {
		t.Fatal("an exempt source held to max_connections_per_source")
	}
	// Four open, at max_connections, the funnel working on each one's
	// request: a new connection is closed.
	for _, c := range []net.Conn{a1, a2, x1, x2} {
		l.track(c, http.StateActive)
		c.(*limitedConn).setWorking(true)
	}
	if dial("127.0.0.3") != nil || count(connTotal) != 1 {
		t.Fatalf("a connection accepted with the funnel working on every open one, or not counted (%d)", count(connTotal))
	}
	// x1 and then x2 wait on their clients (a body that does not come, an
	// answer not read), and a2 goes idle after them: the one that has
	// waited longest is evicted, x1; then x2 makes progress (a body byte
	// comes), and a2 has waited longer.
	x1.(*limitedConn).setWorking(false)
	clock.Add(int64(time.Second))
	x2.(*limitedConn).setWorking(false)
	clock.Add(int64(time.Second))
	l.track(a2, http.StateIdle)
	b1 := dial("127.0.0.4")
	if b1 == nil {
		t.Fatal("no room made at max_connections with connections waiting on their clients")
	}
	if !isClosed(clients[3]) || count(connEvicted) != 1 {
		t.Errorf("the connection waiting longest on its client was not the one evicted, or not counted (%d)", count(connEvicted))
	}
	clock.Add(int64(time.Second))
	x2.(*limitedConn).progress()
	l.track(b1, http.StateActive)
	b1.(*limitedConn).setWorking(true)
	b2 := dial("127.0.0.4")
	if b2 == nil {
		t.Fatal("no room made at max_connections with an idle connection open")
	}
	if !isClosed(clients[1]) || count(connEvicted) != 2 {
		t.Errorf("the idle connection, now waiting longest, was not the one evicted, or not counted (%d)", count(connEvicted))
	}
	l.track(b2, http.StateActive)
	b2.(*limitedConn).setWorking(true)
	// A connection closed by the server frees its place, and a2's going
	// freed its source's.
	b1.Close()
	a3 := dial("127.0.0.2")
	if a3 == nil {
		t.Fatal("a source's place not freed by its evicted connection")
	}
	a3.Close()
	if total, fromA := l.counts(netip.MustParseAddr("127.0.0.2")); total != 3 || fromA != 1 {
		t.Errorf("%d connections counted, %d from 127.0.0.2 after the closes, want 3 and 1", total, fromA)
	}
	if count(connPerSource) != 1 || count(connTotal) != 1 || count(connEvicted) != 2 {
		t.Errorf("closed: %d per source, %d at max_connections, %d evicted; want 1, 1 and 2", count(connPerSource), count(connTotal), count(connEvicted))
	}
}

// TestSource: connections are counted per IPv4 address and per IPv6 /64.
func TestSource(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:a:b:c:d", "2001:db8:1:2::"},
		{"2001:db8:1:2::1", "2001:db8:1:2::"},
		{"::1", "::"},
	} {
		if got := source(netip.MustParseAddr(tc.addr)); got.String() != tc.want {
			t.Errorf("source(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// TestDeviceListenerTimeouts: over HTTP and HTTPS, the device listener
// closes a kept-alive connection idle past idle_timeout, a header that
// trickles past read_header_timeout and a POST whose body does not come
// within read_timeout.
func TestDeviceListenerTimeouts(t *testing.T) {
	y := strings.Replace(testYAML, "funnel: {max_request_bytes: 2048}",
		"funnel: {max_request_bytes: 2048, read_header_timeout: 1s, read_timeout: 2s, idle_timeout: 1s}", 1)
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if scheme == "https" {
				serverTLS, clientTLS = testTLS(t)
			}
			b := startBounded(t, y, serverTLS, clientTLS)
			var l loris
			defer l.close()
			l.open(t, b, "", lorisKinds)
			if len(l.conns) != lorisKinds {
				t.Fatalf("%d loris connections opened, want %d", len(l.conns), lorisKinds)
			}
			l.trickle(100 * time.Millisecond)
			deadline := time.After(10 * time.Second)
			for i, d := range l.done {
				select {
				case <-d:
				case <-deadline:
					t.Fatalf("%s connection still open after 10s", []string{"an idle", "a trickling", "a body-less"}[i])
				}
			}
		})
	}
}

// testTLS is a server certificate for localhost and a client config that
// trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, caKey := testCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{testCert(t, ca, caKey, "localhost", false)}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// TestHeaderOverCap: over HTTP and HTTPS, a request whose header is over
// funnel.max_header_bytes gets 431 and its connection is closed; one
// under it is served.
func TestHeaderOverCap(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if scheme == "https" {
				serverTLS, clientTLS = testTLS(t)
			}
			b := startBounded(t, testYAML, serverTLS, clientTLS)
			send := func(pad int) (*http.Response, net.Conn) {
				t.Helper()
				c, err := b.dial("")
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				go fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: funnel\r\nX-Pad: %s\r\n\r\n", strings.Repeat("a", pad))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					c.Close()
					t.Fatalf("a %d-byte header: %v", pad, err)
				}
				resp.Body.Close()
				return resp, c
			}
			resp, c := send(8 << 10)
			c.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("an 8 KiB header: %s, want 200", resp.Status)
			}
			resp, c = send(32 << 10)
			defer c.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("a 32 KiB header (max_header_bytes %d): %s, want 431", pipeline.DefaultFunnelMaxHeaderBytes, resp.Status)
			}
			select {
			case <-closed(c):
			case <-time.After(5 * time.Second):
				t.Error("the connection of a header over the cap stays open")
			}
		})
	}
}

// memSample is the process's Go heap and stacks in use, and its resident
// set, in bytes.
func memSample(t *testing.T) (goMem, rss uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return ms.HeapInuse + ms.StackInuse, rss
}

// TestHeaderFloodMemory: 1,000 connections each sending a 1 MiB header
// at once cost the funnel less than 100 MB: the device listener reads
// about max_header_bytes of each, answers 431 and closes it. The Go heap
// and stacks in use are sampled during the flood; the test process holds
// the flood's clients too (1,000 goroutines writing one shared buffer),
// so the figure bounds the funnel's cost from above. A flood over the
// budget is cut short, so a funnel that buffers whole headers fails fast
// without taking the machine's memory.
func TestHeaderFloodMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections of 1 MiB")
	}
	const conns, budget = 1000, 100 << 20
	b := startBounded(t, testYAML, nil, nil)
	runtime.GC()
	baseMem, baseRSS := memSample(t)

	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := b.dial("")
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	pad := bytes.Repeat([]byte("a"), 1<<20)
	start := []byte("GET /healthz HTTP/1.1\r\nHost: funnel\r\nX-Pad: ")
	var wg sync.WaitGroup
	var answered atomic.Int64 // clients that read an answer before the close
	release := make(chan struct{})
	for _, c := range cs {
		wg.Go(func() {
			<-release
			c.SetDeadline(time.Now().Add(20 * time.Second))
			for _, p := range [][]byte{start, pad, []byte("\r\n\r\n")} {
				if _, err := c.Write(p); err != nil {
					break // the funnel closed it
				}
			}
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
				answered.Add(1)
			}
		})
	}
	flooded := make(chan struct{})
	go func() {
		wg.Wait()
		close(flooded)
	}()
	close(release)
	var peakMem, peakRSS uint64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	over := false
sample:
	for {
		select {
		case <-flooded:
			break sample
		case <-tick.C:
		}
		m, r := memSample(t)
		peakMem, peakRSS = max(peakMem, m), max(peakRSS, r)
		if !over && peakMem > baseMem+budget {
			over = true
			for _, c := range cs { // cut the flood short
				c.Close()
			}
		}
	}
	delta := func(peak, base uint64) float64 { return float64(int64(peak)-int64(base)) / (1 << 20) }
	t.Logf("%d connections × 1 MiB header: Go heap+stacks %.1f MiB before, peak +%.1f MiB; RSS %.1f MiB before, peak +%.1f MiB; %d clients read the 431",
		conns, float64(baseMem)/(1<<20), delta(peakMem, baseMem), float64(baseRSS)/(1<<20), delta(peakRSS, baseRSS), answered.Load())
	if over {
		t.Fatalf("the flood took the Go heap and stacks over %d MiB more than before; cut short", budget>>20)
	}
}

// TestBlockedWriterIsEvictable: a connection whose handler is writing an
// answer its client does not take (an answer larger than the buffers:
// the write blocks inside the handler, while the funnel works on the
// request) waits on its client, so at max_connections it is evicted for a
// new connection; one the funnel works on without writing is not.
func TestBlockedWriterIsEvictable(t *testing.T) {
	l := newConnLimiter(nil, 2, 2, nil, 0, nil)
	a, aPeer := net.Pipe()
	b, bPeer := net.Pipe()
	c, cPeer := net.Pipe()
	for _, conn := range []net.Conn{a, aPeer, b, bPeer, c, cPeer} {
		defer conn.Close()
	}
	first, _, _ := l.admit(a)
	second, _, _ := l.admit(b)
	first.setWorking(true)
	second.setWorking(true)
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		first.Write([]byte("an answer nobody reads")) // net.Pipe: blocks until read
	}()
	for deadline := time.Now().Add(10 * time.Second); !first.writing.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the write did not start within 10s")
		}
	}
	if _, victim, reason := l.admit(c); victim != first || reason != connEvicted {
		t.Errorf("new connection: evicted %p (%q), want the blocked writer %p", victim, reason, first)
	}
	a.Close()
	<-blocked
}
