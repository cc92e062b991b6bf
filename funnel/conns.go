package funnel

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Reasons of ddnn_funnel_connections_closed_total: why the device
// listener closed a connection before the HTTP server would have.
const (
	connPerSource = "max_connections_per_source" // a new connection over its source's bound
	connTotal     = "max_connections"            // a new connection while every open one was in a request
	connEvicted   = "evicted"                    // an open connection with no request in progress, for a new one
)

// connLimiter bounds a listener's open connections in total (max) and per
// source (perSource: an IPv4 address or an IPv6 /64; addresses in exempt
// are not counted per source). Connections that are not in a request (a kept-alive one
// waiting for its next request, or one whose request header has not all
// arrived) are what a slow or idle client holds cheaply, so at the total
// bound the one that has gone longest without a request in progress is
// closed to make room; only when every open connection is in a request is
// the new one closed. The HTTP server reports the states through track,
// its ConnState hook.
type connLimiter struct {
	net.Listener
	max, perSource int
	exempt         []netip.Prefix
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

	// Guarded by l.mu: whether it is in a request, since when it has
	// not been, and whether the limiter still counts it.
	busy     bool
	quietFor time.Time
	released bool
}

func newConnLimiter(ln net.Listener, max, perSource int, exempt []string, m *Metrics) *connLimiter {
	l := &connLimiter{Listener: ln, max: max, perSource: perSource, m: m, now: time.Now,
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
	lc = &limitedConn{Conn: c, l: l, quietFor: l.now()}
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

// quietest is the open connection longest without a request in progress,
// nil when every one is in a request.
func (l *connLimiter) quietest() *limitedConn {
	var q *limitedConn
	for c := range l.open {
		if !c.busy && (q == nil || c.quietFor.Before(q.quietFor)) {
			q = c
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
// from when its header has been read (StateActive) until it is idle again.
func (l *connLimiter) track(c net.Conn, s http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateActive:
		lc.busy = true
	case http.StateIdle:
		lc.busy, lc.quietFor = false, l.now()
	case http.StateHijacked, http.StateClosed:
		l.releaseLocked(lc)
	}
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
