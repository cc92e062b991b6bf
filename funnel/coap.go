package funnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	dtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/options/config"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
)

// optRequestTag is CoAP's Request-Tag option (RFC 9175), which libcoap sends
// with every block of a Block1 upload (each block has a new token).
const optRequestTag message.OptionID = 292

// CoAPLimits bound Block1 reassembly (see reassembly); a zero field takes
// the pipeline's funnel.coap_reassembly value.
type CoAPLimits struct {
	// TransferTimeout frees a transfer whose next block did not come.
	TransferTimeout time.Duration
	// PerPeer is the most transfers one peer may have open at once.
	PerPeer int
	// PeerBytes bounds what one peer's open transfers hold together.
	PeerBytes int64
	// TotalBytes bounds what all open transfers hold together.
	TotalBytes int64
}

// coapIngest serves POST /v1/ingest over CoAP. go-coap's own block-wise
// handling keys transfers by token only and silently truncates uploads from
// clients that use a new token per block, so it is off and Block1 is
// reassembled here, keyed by peer address and Request-Tag.
type coapIngest struct {
	f    *Funnel
	ra   *reassembly
	psks *auth.PSKs // over CoAPS with pre-shared keys: checks a session's key is still its device's
	// waitSlots bounds the requests that wait for their results in a
	// goroutine of their own (funnel.wait.max_waiters); nil when waits
	// are off.
	waitSlots chan struct{}
}

// ListenCoAP binds the CoAP ingest's UDP socket, so that a busy or bad
// address fails at start rather than in the background; a socket passed
// down by a supervisor for addr is taken over instead (socket.ListenPacket).
func ListenCoAP(addr string) (*coapnet.UDPConn, error) {
	c, err := socket.ListenPacket(addr)
	if err != nil {
		return nil, fmt.Errorf("coap funnel: %w", err)
	}
	return coapnet.NewUDPConn("udp", c), nil
}

// ServeCoAP serves the ingest route on l until ctx ends or the server
// fails, then closes l. It returns nil when ctx ended or l was closed, and
// leaves nothing running behind.
func (f *Funnel) ServeCoAP(ctx context.Context, l *coapnet.UDPConn, limits CoAPLimits) error {
	f.log.Info("coap funnel serving", "addr", l.LocalAddr().String())
	return serveCoAPIngest(ctx, f.newCoAPIngest(limits), "coap", l, udp.NewServer)
}

// coapServerOption is a go-coap option that both the UDP and the DTLS
// server take.
type coapServerOption interface {
	udpserver.Option
	dtlsserver.Option
}

// coapServer is go-coap's UDP or DTLS server, serving on listeners of
// type L.
type coapServer[L io.Closer] interface {
	Serve(l L) error
	Stop()
}

// serveCoAPIngest is the run of a CoAP or CoAPS ingest server, what
// ServeCoAP and ServeCoAPS share: it routes httpapi.PathIngest to ci, builds the
// server with newServer from the options both kinds take (go-coap's
// block-wise handling off, errors logged at debug as proto, a periodic
// runner that ends with ctx) and then extra, sweeps ci's reassembly, and
// serves l until ctx ends or the server fails. At the end it waits for
// everything it started and closes l.
func serveCoAPIngest[O any, L io.Closer, S coapServer[L]](ctx context.Context, ci *coapIngest, proto string, l L, newServer func(...O) S, extra ...O) error {
	r := mux.NewRouter()
	if err := r.Handle(httpapi.PathIngest, mux.HandlerFunc(ci.serve)); err != nil {
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		l.Close()
	}()
	var opts []O
	for _, o := range []coapServerOption{
		options.WithMux(r),
		options.WithBlockwise(false, 0, time.Second),
		options.WithContext(ctx),
		options.WithErrors(func(err error) { ci.f.log.Debug(proto, "err", err) }),
		// go-coap's default runner sleeps in a goroutine forever; this one
		// ends with ctx.
		options.WithPeriodicRunner(func(tick func(now time.Time) bool) { wg.Go(func() { every(ctx, time.Second, tick) }) }),
		options.WithProcessReceivedMessageFunc(ci.processor(&wg)),
	} {
		opts = append(opts, o.(O))
	}
	s := newServer(append(opts, extra...)...)
	wg.Go(func() { every(ctx, min(time.Second, ci.ra.limits.TransferTimeout), ci.ra.sweep) })
	wg.Go(func() {
		<-ctx.Done()
		s.Stop()
	})
	return s.Serve(l)
}

// newCoAPIngest makes the ingest handler of a CoAP or CoAPS server, with
// its own Block1 reassembly bounded by limits.
func (f *Funnel) newCoAPIngest(limits CoAPLimits) *coapIngest {
	c := f.site.Funnel.CoAPReassembly
	setZero(&limits.TransferTimeout, c.TransferTimeout)
	setZero(&limits.PerPeer, c.MaxTransfersPerPeer)
	setZero(&limits.PeerBytes, c.MaxBytesPerPeer)
	setZero(&limits.TotalBytes, c.MaxBytes)
	ci := &coapIngest{f: f, ra: newReassembly(limits, f.site.Funnel.MaxRequestBytes, f.m)}
	if f.waits != nil {
		ci.waitSlots = make(chan struct{}, f.site.Funnel.Wait.MaxWaiters)
	}
	return ci
}

// processor is how the server hands a peer's request to the handler.
// go-coap handles a peer's requests one after another on one goroutine,
// and the server's reader blocks once a peer has 16 queued: a request
// that waits for its result would hold up every later one of its peer,
// and then every peer. So a request that asks to wait is handled on a
// goroutine of its own (counted in wg), at most max_waiters at once; past
// that it is handled in turn, and the waiter bound answers it at once.
func (ci *coapIngest) processor(wg *sync.WaitGroup) func(*pool.Message, *udpclient.Conn, config.HandlerFunc[*udpclient.Conn]) {
	return func(req *pool.Message, cc *udpclient.Conn, h config.HandlerFunc[*udpclient.Conn]) {
		if ci.waitSlots != nil && asksToWait(req) {
			select {
			case ci.waitSlots <- struct{}{}:
				wg.Go(func() {
					defer func() { <-ci.waitSlots }()
					cc.ProcessReceivedMessageWithHandler(req, h)
				})
				return
			default:
			}
		}
		cc.ProcessReceivedMessageWithHandler(req, h)
	}
}

// asksToWait reports whether a request has a wait= Uri-Query option.
func asksToWait(req *pool.Message) bool {
	qs, _ := req.Options().Queries()
	for _, q := range qs {
		if strings.HasPrefix(q, "wait=") {
			return true
		}
	}
	return false
}

// every calls fn each period until ctx ends or fn returns false.
func every(ctx context.Context, period time.Duration, fn func(now time.Time) bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !fn(now) {
				return
			}
		}
	}
}

// setZero sets *v to def when it is zero.
func setZero[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// reply answers code with a text payload (none when empty).
func reply(w mux.ResponseWriter, code codes.Code, payload string, opts ...message.Option) {
	if payload == "" {
		w.SetResponse(code, message.TextPlain, nil, opts...)
		return
	}
	w.SetResponse(code, message.TextPlain, strings.NewReader(payload), opts...)
}

// coapOutcome is the requests metric's outcome of a refusal code.
func coapOutcome(c codes.Code) string {
	switch c {
	case codes.RequestEntityTooLarge:
		return "too_large"
	case codes.TooManyRequests:
		return "too_many_requests"
	case codes.ServiceUnavailable:
		return "unavailable"
	}
	return "bad_request"
}

func block1Option(num uint32, more bool, szx uint32) message.Option {
	v := num<<4 | szx
	if more {
		v |= 8
	}
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, v)
	return message.Option{ID: message.Block1, Value: buf[:n]}
}

func (ci *coapIngest) serve(w mux.ResponseWriter, r *mux.Message) {
	const route = "coap"
	f := ci.f
	if r.Code() != codes.POST {
		f.m.request(route, "method_not_allowed")
		reply(w, codes.MethodNotAllowed, "use POST")
		return
	}
	if f.draining.Load() {
		f.m.request(route, "unavailable")
		reply(w, codes.ServiceUnavailable, "funnel is shutting down")
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		f.m.request(route, "bad_request")
		reply(w, codes.BadRequest, "reading payload: "+err.Error())
		return
	}
	opts := r.Options()
	peer := w.Conn().RemoteAddr().String()
	var b1opt []message.Option
	if v, err := opts.GetUint32(message.Block1); err == nil {
		tag, _ := opts.GetBytes(optRequestTag)
		size1 := int64(-1)
		if n, err := opts.GetUint32(message.Size1); err == nil {
			size1 = int64(n)
		}
		a := ci.ra.block(peer, tag, v>>4, v&8 != 0, v&7, size1, body, time.Now())
		if !a.done {
			switch {
			case a.reason != "":
				f.m.refused(route, a.reason)
				f.m.request(route, coapOutcome(a.code))
			case a.code != codes.Continue:
				f.m.request(route, "bad_request")
			}
			reply(w, a.code, a.msg, a.opts...)
			return
		}
		body, b1opt = a.body, a.opts
	} else if int64(len(body)) > f.site.Funnel.MaxRequestBytes {
		f.m.request(route, "too_large")
		reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("payload over the limit of %d bytes", f.site.Funnel.MaxRequestBytes))
		return
	}

	contentType := ""
	if cf, err := opts.ContentFormat(); err == nil {
		switch cf {
		case message.AppOctets:
			contentType = "application/octet-stream"
		case message.AppJSON:
			contentType = "application/json"
		default:
			f.m.request(route, "unsupported_media_type")
			reply(w, codes.UnsupportedMediaType, fmt.Sprintf("content-format %d: want 42 (octet-stream) or 50 (json)", cf), b1opt...)
			return
		}
	} else {
		contentType = "application/octet-stream"
	}
	m, err := f.decodeIngest(contentType, body)
	if err != nil {
		f.m.request(route, "bad_request")
		reply(w, codes.BadRequest, err.Error(), b1opt...)
		return
	}
	qs, _ := opts.Queries()
	wait, err := parseWait(queryValues(qs, "wait"), f.site.Funnel.Wait)
	if err != nil {
		f.m.refused(route, reasonBadWait)
		f.m.request(route, "bad_request")
		reply(w, codes.BadRequest, err.Error(), b1opt...)
		return
	}
	ids, devices := queryIDs(qs)
	if err := resolveIDs(&m, ids, devices); err != nil {
		f.m.refused(route, idRefusal(err))
		f.m.request(route, "bad_request")
		reply(w, codes.BadRequest, err.Error(), b1opt...)
		return
	}
	if device, err := ci.sessionDevice(w); err != nil {
		f.m.request(route, "unauthorized")
		reply(w, codes.Unauthorized, err.Error(), b1opt...)
		return
	} else if device != "" {
		// The device is who its credential says, never what it claims.
		if m.Device != "" && m.Device != device {
			f.m.request(route, "forbidden")
			reply(w, codes.Forbidden, fmt.Sprintf("the credential is device %q's: it cannot send as %q", device, m.Device), b1opt...)
			return
		}
		m.Device = device
	}
	var rl *RateLimitedError
	if err := f.limitRate(m.Device, peer); errors.As(err, &rl) {
		f.m.refused(route, reasonRateLimited)
		f.m.request(route, "too_many_requests")
		reply(w, codes.TooManyRequests, err.Error(), append(b1opt, maxAge(rl.Wait))...)
		return
	}
	ctx := r.Context()
	if f.tr.Enabled() {
		var span trace.Span
		ctx, span = f.startCoAPIngest(ctx, httpapi.PathIngest)
		defer func() {
			span.SetAttributes(telemetry.AttrMessage.String(m.ID)) // accept made it when the device gave none
			span.End()
		}()
	}
	result, err := f.acceptWaiting(ctx, &m, wait, peer)
	if err != nil {
		var tl *RecordTooLargeError
		var elsewhere *NotIngestSiteError
		if errors.As(err, &elsewhere) {
			f.m.request(route, "not_found")
			reply(w, codes.NotFound, err.Error(), b1opt...)
			return
		}
		if errors.As(err, &tl) {
			f.m.request(route, "too_large")
			reply(w, codes.RequestEntityTooLarge, err.Error(), b1opt...)
			return
		}
		f.m.request(route, "unavailable")
		if errors.Is(err, context.Canceled) {
			return
		}
		// Max-Age is when to retry (RFC 7252 5.03); without it a
		// device would read CoAP's default of 60s.
		reply(w, codes.ServiceUnavailable, unavailableReason(ingestError(&m, err)), append(b1opt, maxAge(time.Second))...)
		return
	}
	f.m.request(route, "ok")
	if result != nil {
		// The result record as the results topic holds it.
		w.SetResponse(codes.Content, message.AppJSON, bytes.NewReader(result), b1opt...)
		return
	}
	reply(w, codes.Created, m.ID, b1opt...)
}
