package funnel

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons of ddnn_funnel_connections_closed_total: why the device
// listener closed a connection before the HTTP server would have.
const (
	connPerSource = "max_connections_per_source" // a new connection over its source's bound
	connTotal     = "max_connections"            // a new connection while the funnel worked on every open one's request
	connEvicted   = "evicted"                    // an open connection waiting on its client, for a new one
)

// refusedBodyWait is how long the device listener goes on reading the
// body of a request it answered before reading it all (401, 413, 400):
// long enough for a body in flight to arrive, so that closing the
// connection does not reset it under the answer, and no longer, so a body
// that never comes does not hold the connection.
const refusedBodyWait = time.Second

// connLimiter bounds a listener's open connections in total (max) and per
// source (perSource: an IPv4 address or an IPv6 /64; addresses in exempt
// are not counted per source). A connection waiting on its client (a
// kept-alive one waiting for its next request, one whose request header
// or body has not all arrived, one whose answer the client does not read)
// is what a slow or idle client holds cheaply, so at the total bound the
// one that has waited longest without progress is closed to make room;
// only when the funnel is working on every open connection's request is
// the new one closed. The HTTP server reports the states through track (its
// ConnState hook) and guard (a handler wrapper, which sees the body read
// and the funnel's work). Each write to a connection must complete within
// writeTimeout (0: unbounded), so a client that does not read its answers
// cannot hold one.
type connLimiter struct {
	net.Listener
	max, perSource int
	exempt         []netip.Prefix
	writeTimeout   time.Duration
	m              *Metrics
	now            func() time.Time

	mu       sync.Mutex
	open     map[*limitedConn]struct{}
	bySource map[netip.Addr]int
}

// limitedConn is a connection the limiter counts until it is closed.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	src    netip.Addr // its source
	counts bool       // counted against its source

	// Whether the funnel is working on its request (the body all read, the
	// answer not yet written: the client owes nothing), whether a write is
	// under way (the client owes taking it, whatever the funnel's state),
	// and since when (unix nanoseconds) it has waited on its client
	// without progress. Set on every body read and answer write, so they
	// are atomics rather than under the limiter's one lock; admit reads
	// them under it.
	working  atomic.Bool
	writing  atomic.Bool
	quietFor atomic.Int64

	released bool // guarded by l.mu: the limiter no longer counts it
}

func newConnLimiter(ln net.Listener, max, perSource int, exempt []string, writeTimeout time.Duration, m *Metrics) *connLimiter {
	l := &connLimiter{Listener: ln, max: max, perSource: perSource, writeTimeout: writeTimeout, m: m, now: time.Now,
		open: map[*limitedConn]struct{}{}, bySource: map[netip.Addr]int{}}
	for _, s := range exempt {
		if p, err := netip.ParsePrefix(s); err == nil { // validated with the pipeline
			l.exempt = append(l.exempt, p)
		}
	}
	return l
}

// Accept returns the next connection the bounds admit, closing those they
// do not.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc, victim, reason := l.admit(c)
		if victim != nil {
			victim.Conn.Close()
		}
		if reason != "" {
			l.m.connClosed(reason)
		}
		if lc == nil {
			c.Close()
			continue
		}
		return lc, nil
	}
}

// admit counts c, or returns nil and why not; victim is a connection
// closed to make room for it.
func (l *connLimiter) admit(c net.Conn) (lc *limitedConn, victim *limitedConn, reason string) {
	lc = &limitedConn{Conn: c, l: l}
	lc.quietFor.Store(l.now().UnixNano())
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr := a.AddrPort().Addr().Unmap()
		lc.src, lc.counts = source(addr), !l.exempted(addr)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.counts && l.bySource[lc.src] >= l.perSource {
		return nil, nil, connPerSource
	}
	if len(l.open) >= l.max {
		victim = l.quietest()
		if victim == nil {
			return nil, nil, connTotal
		}
		l.releaseLocked(victim)
		reason = connEvicted
	}
	l.open[lc] = struct{}{}
	if lc.counts {
		l.bySource[lc.src]++
	}
	l.m.connsOpen(len(l.open))
	return lc, victim, reason
}

// source is what a connection from a is counted against: the IPv4
// address, or the /64 of an IPv6 address (one host's allocation, so a
// host cannot take a new source with each of its addresses).
func source(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (l *connLimiter) exempted(a netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// quietest is the open connection that has waited longest on its client
// without progress, nil when the funnel is working on every one's request.
// Age alone decides, not whether a request is in progress: a client that
// keeps opening connections then evicts its own older ones, never a
// device's that just connected.
func (l *connLimiter) quietest() *limitedConn {
	var (
		q     *limitedConn
		since int64
	)
	for c := range l.open {
		if c.working.Load() && !c.writing.Load() {
			continue
		}
		if t := c.quietFor.Load(); q == nil || t < since {
			q, since = c, t
		}
	}
	return q
}

func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	delete(l.open, c)
	if c.counts {
		if n := l.bySource[c.src] - 1; n > 0 {
			l.bySource[c.src] = n
		} else {
			delete(l.bySource, c.src)
		}
	}
	l.m.connsOpen(len(l.open))
}

// counts is how many connections are open in total and from src.
func (l *connLimiter) counts(src netip.Addr) (total, fromSrc int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open), l.bySource[src]
}

// track is the HTTP server's ConnState hook: a connection is in a request
// from when its header has been read (StateActive) until it is idle again;
// guard tells whether the funnel or the client is to move.
func (l *connLimiter) track(c net.Conn, s http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	switch s {
	case http.StateActive, http.StateIdle:
		lc.setWorking(false)
	case http.StateHijacked, http.StateClosed:
		l.mu.Lock()
		l.releaseLocked(lc)
		l.mu.Unlock()
	}
}

// setWorking records whether the funnel is working on c's request (true)
// or waits on its client (false, from now).
func (c *limitedConn) setWorking(working bool) {
	c.quietFor.Store(c.l.now().UnixNano())
	c.working.Store(working)
}

// progress records that c's client moved: a body byte came, or it took
// part of an answer.
func (c *limitedConn) progress() {
	if !c.working.Load() {
		c.quietFor.Store(c.l.now().UnixNano())
	}
}

// Write writes within the limiter's write timeout. While it blocks, the
// connection waits on its client to take the answer, also when the
// handler writes it (an answer larger than the buffers): from the write's
// start, or its last progress, it may be evicted.
func (c *limitedConn) Write(p []byte) (int, error) {
	if c.l.writeTimeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.l.writeTimeout))
	}
	if c.working.Load() {
		c.quietFor.Store(c.l.now().UnixNano())
	}
	c.writing.Store(true)
	n, err := c.Conn.Write(p)
	c.writing.Store(false)
	if n > 0 {
		c.quietFor.Store(c.l.now().UnixNano())
	}
	return n, err
}

// connKey is the context key of a request's *limitedConn.
type connKey struct{}

// connContext is the HTTP server's ConnContext hook: it gives a
// connection's requests its limitedConn, for guard.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// guard wraps the device handler. A request whose body is still to come
// waits on its client, the longer without a body byte the sooner evicted;
// once its body is all read, the funnel works on it until the handler
// returns, and then waits on the client again to take the answer. An
// answer given before the body was all read (a refusal: 401, 413, 400) closes
// the connection (Connection: close), reading what comes of the body
// for at most refusedBodyWait first, so a body that never comes cannot
// hold the connection until read_timeout.
func guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lc, _ := r.Context().Value(connKey{}).(*limitedConn)
		if lc == nil {
			h.ServeHTTP(w, r)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			lc.setWorking(true)
			h.ServeHTTP(w, r)
			lc.setWorking(false)
			return
		}
		b := &progressBody{ReadCloser: r.Body, c: lc, h: w.Header()}
		r.Body = b
		w.Header().Set("Connection", "close") // until the body is all read
		lc.setWorking(false)
		h.ServeHTTP(w, r)
		lc.setWorking(false)
		if !b.eof {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyWait))
		}
	})
}

// progressBody is a request body that tells its connection's limiter of
// each byte that comes and of its end.
type progressBody struct {
	io.ReadCloser
	c   *limitedConn
	h   http.Header // the answer's, whose Connection: close goes at the end
	eof bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.progress()
	}
	if err == io.EOF && !b.eof {
		b.eof = true
		b.h.Del("Connection")
		b.c.setWorking(true)
	}
	return n, err
}

// Close closes the connection and stops counting it.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side, as the HTTP server does before
// closing a connection whose request it refused (431), so the client
// reads the answer before the close.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
