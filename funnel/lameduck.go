package funnel

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// lameDuck is the first step of the funnel's stop: it takes no new
// connection (they wait in the listening socket's backlog: for the next
// funnel, when a supervisor holds the socket across a restart) and goes
// on serving requests on the connections open, each answer closing its
// connection ("Connection: close"), until no device connection is open or
// its time is up. The delivery zone's clients are the pipeline's own
// parts, which retry (and ddnn up keeps an idle connection there until
// the funnel has stopped): its connections are not waited for.
// Closing an idle keep-alive connection races with a request its client
// may be sending on it, which then fails (EOF, reset) unanswered; a
// connection closed by an answer does not: the client knows not to reuse
// it. Only connections idle for the whole lame duck are closed so.
type lameDuck struct {
	on   atomic.Bool
	open atomic.Int64 // device connections open
	lns  []*pausableListener
}

// listen makes ln one of the listeners the lame duck stops accepting on.
func (d *lameDuck) listen(ln net.Listener) net.Listener {
	p := &pausableListener{Listener: ln, closed: make(chan struct{})}
	d.lns = append(d.lns, p)
	return p
}

// track is an http.Server's ConnState hook: it counts the open
// connections.
func (d *lameDuck) track(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		d.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		d.open.Add(-1)
	}
}

// handler answers through h, closing the connection after the answer
// once the lame duck began. It says so as the answer is written, after
// what h set (guard, say, drops its own "Connection: close" once it read
// the whole request).
func (d *lameDuck) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&closingWriter{ResponseWriter: w, d: d}, r)
	})
}

// closingWriter adds "Connection: close" to an answer written in the lame
// duck.
type closingWriter struct {
	http.ResponseWriter
	d     *lameDuck
	wrote bool
}

func (w *closingWriter) header() {
	if !w.wrote {
		w.wrote = true
		if w.d.on.Load() {
			w.Header().Set("Connection", "close")
		}
	}
}

func (w *closingWriter) WriteHeader(code int) {
	if code >= 200 { // not an informational answer before the final one
		w.header()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closingWriter) Write(b []byte) (int, error) {
	w.header()
	return w.ResponseWriter.Write(b)
}

func (w *closingWriter) Flush() {
	w.header()
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap is for http.ResponseController.
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// run stops accepting and waits until no connection is open, or within.
func (d *lameDuck) run(within time.Duration) {
	d.on.Store(true)
	for _, l := range d.lns {
		l.pause()
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for d.open.Load() > 0 {
		select {
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// pausableListener is a listener that can stop accepting before its
// server closes it: paused, it closes this process' descriptor of the
// socket and its Accept waits for Close, which the server's Shutdown
// calls (an Accept error before would end the server's Serve with it).
type pausableListener struct {
	net.Listener
	paused    atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *pausableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.paused.Load() {
		<-l.closed
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *pausableListener) pause() {
	l.paused.Store(true)
	l.Listener.Close()
}

func (l *pausableListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	if l.paused.Load() {
		return nil // closed by pause
	}
	return l.Listener.Close()
}
