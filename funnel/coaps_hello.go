package funnel

import (
	"bytes"
	"container/list"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
)

// The cookie round trip (RFC 6347 §4.2.1): the server answers a first
// ClientHello with a HelloVerifyRequest carrying a cookie, and the client
// repeats its ClientHello with that cookie. Only a peer that receives at
// its address can echo the cookie, so a handshake slot is taken only
// then: ClientHellos from forged addresses never reach that point. pion
// keeps the cookie to itself, so each peer's datagrams are watched on
// their way in and out (dtlsPeer).

// Record and handshake framing the watch reads.
const (
	recordHeaderLen      = 13
	handshakeHeaderLen   = 12
	hsClientHello        = 1
	hsHelloVerifyRequest = 3
)

// isDTLSHandshake reports whether a datagram starts with a handshake
// record, the only kind that may open a session (pion's own listener
// filters the same way).
func isDTLSHandshake(b []byte) bool {
	pkts, err := recordlayer.UnpackDatagram(b)
	if err != nil || len(pkts) == 0 {
		return false
	}
	var h recordlayer.Header
	return h.Unmarshal(pkts[0]) == nil && h.ContentType == protocol.ContentTypeHandshake
}

// handshakeMessage returns the body of the first unencrypted (epoch 0)
// handshake message of type typ in a datagram, as far as its first
// fragment holds it; nil when there is none.
func handshakeMessage(b []byte, typ byte) []byte {
	for len(b) >= recordHeaderLen {
		n := int(b[11])<<8 | int(b[12])
		if len(b) < recordHeaderLen+n {
			return nil
		}
		ct, epoch, rec := b[0], int(b[3])<<8|int(b[4]), b[recordHeaderLen:recordHeaderLen+n]
		b = b[recordHeaderLen+n:]
		if ct != byte(protocol.ContentTypeHandshake) || epoch != 0 || len(rec) < handshakeHeaderLen || rec[0] != typ {
			continue
		}
		fragOff := int(rec[6])<<16 | int(rec[7])<<8 | int(rec[8])
		fragLen := int(rec[9])<<16 | int(rec[10])<<8 | int(rec[11])
		if fragOff != 0 || len(rec) < handshakeHeaderLen+fragLen {
			continue
		}
		return rec[handshakeHeaderLen : handshakeHeaderLen+fragLen]
	}
	return nil
}

// helloVerifyCookie returns the cookie of a HelloVerifyRequest in a
// datagram the server sends, or nil.
func helloVerifyCookie(b []byte) []byte {
	m := handshakeMessage(b, hsHelloVerifyRequest)
	// server_version(2) cookie<0..255>
	if len(m) < 3 || len(m) < 3+int(m[2]) || m[2] == 0 {
		return nil
	}
	return bytes.Clone(m[3 : 3+int(m[2])])
}

// clientHelloCookie returns the cookie of a ClientHello in a datagram a
// peer sends, or nil.
func clientHelloCookie(b []byte) []byte {
	m := handshakeMessage(b, hsClientHello)
	// client_version(2) random(32) session_id<0..32> cookie<0..255>
	const sid = 2 + 32
	if len(m) <= sid {
		return nil
	}
	c := sid + 1 + int(m[sid])
	if len(m) <= c || len(m) < c+1+int(m[c]) {
		return nil
	}
	return m[c+1 : c+1+int(m[c])]
}

// dtlsPeer is one peer's datagram stream under the DTLS connection: it
// notes the cookie the server sends and admits the peer (a handshake and
// a session slot) when the peer echoes it. Until then the peer is a
// hello, held in helloQueue.
type dtlsPeer struct {
	net.Conn
	q *helloQueue

	cookie   atomic.Pointer[[]byte]
	verified atomic.Bool
	src      netip.Addr    // what its handshake counts against; set by admitSlots
	elem     *list.Element // in q.peers while a hello; guarded by q.mu
	timer    *time.Timer
}

func (p *dtlsPeer) Write(b []byte) (int, error) {
	if !p.verified.Load() {
		if c := helloVerifyCookie(b); c != nil {
			p.cookie.Store(&c)
		}
	}
	return p.Conn.Write(b)
}

// Read passes the peer's datagrams on; the first echo of its cookie
// passes only if the peer gets its slots, else it is dropped (the client
// retransmits it).
func (p *dtlsPeer) Read(b []byte) (int, error) {
	for {
		n, err := p.Conn.Read(b)
		if err != nil || p.verified.Load() {
			return n, err
		}
		if c := p.cookie.Load(); c != nil {
			if got := clientHelloCookie(b[:n]); got != nil && bytes.Equal(got, *c) && !p.q.admit(p) {
				continue
			}
		}
		return n, err
	}
}

// helloQueue holds the peers that have not echoed their cookie, oldest
// first, at most max of them, each for at most timeout.
type helloQueue struct {
	max     int
	timeout time.Duration
	// admitSlots takes a verified peer's handshake and session slots,
	// false when none is free or its source holds its share.
	admitSlots func(*dtlsPeer) bool
	evicted    *atomic.Int64 // hellos dropped at the bound or timed out

	mu    sync.Mutex
	peers *list.List // of *dtlsPeer
}

func newHelloQueue(max int, timeout time.Duration, admitSlots func(*dtlsPeer) bool, evicted *atomic.Int64) *helloQueue {
	return &helloQueue{max: max, timeout: timeout, admitSlots: admitSlots, evicted: evicted, peers: list.New()}
}

// add makes c a hello, dropping the oldest when the queue is full.
func (q *helloQueue) add(c net.Conn) *dtlsPeer {
	p := &dtlsPeer{Conn: c, q: q}
	q.mu.Lock()
	var oldest *dtlsPeer
	if q.peers.Len() >= q.max {
		oldest = q.peers.Remove(q.peers.Front()).(*dtlsPeer)
		oldest.elem = nil
	}
	p.elem = q.peers.PushBack(p)
	q.mu.Unlock()
	if oldest != nil {
		q.drop(oldest)
	}
	p.timer = time.AfterFunc(q.timeout, func() {
		if q.remove(p) {
			q.drop(p)
		}
	})
	return p
}

// drop ends a hello: closing its datagram stream fails its handshake.
func (q *helloQueue) drop(p *dtlsPeer) {
	p.timer.Stop()
	q.evicted.Add(1)
	p.Conn.Close()
}

// remove takes p out of the queue; false when it was no longer in it.
func (q *helloQueue) remove(p *dtlsPeer) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p.elem == nil {
		return false
	}
	q.peers.Remove(p.elem)
	p.elem = nil
	return true
}

// admit moves p, which echoed its cookie, from the queue to a handshake
// slot; false (p stays a hello) when no slot is free or p's source
// holds its share.
func (q *helloQueue) admit(p *dtlsPeer) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p.elem == nil || !q.admitSlots(p) {
		return false
	}
	q.peers.Remove(p.elem)
	p.elem = nil
	p.timer.Stop()
	p.verified.Store(true)
	return true
}

// len is how many hellos are held.
func (q *helloQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.peers.Len()
}

// helloListener makes every peer the UDP listener accepts a hello of q;
// the DTLS listener above it sees the peers' streams through dtlsPeer.
// Its Accept runs on the CoAPS listener's accept loop only, which takes
// last after each DTLS Accept.
type helloListener struct {
	net.Listener
	q    *helloQueue
	last *dtlsPeer
}

func (h *helloListener) Accept() (net.Conn, error) {
	c, err := h.Listener.Accept()
	if err != nil {
		return nil, err
	}
	h.last = h.q.add(c)
	return h.last, nil
}
