package funnel

import (
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// reassembly holds the Block1 uploads of the CoAP ingest while their
// blocks come, keyed by peer address and Request-Tag, within three bounds:
// a transfer holds at most maxBody bytes (4.13), a peer's transfers
// together at most PeerBytes (4.13), and all of them together at most
// TotalBytes (5.03 with Max-Age: the funnel is busy, not the request
// wrong). What counts is the capacity of the buffers, which never grows
// past maxBody, so the bytes held are the bytes allocated.
type reassembly struct {
	limits  CoAPLimits
	maxBody int64
	m       *Metrics

	mu        sync.Mutex
	transfers map[string]*transfer // peer|request-tag
	peers     map[string]*peerUse
	held      int64 // capacity of every transfer's buffer
}

type transfer struct {
	peer    string
	buf     []byte
	next    uint32 // the block number expected next
	updated time.Time
}

type peerUse struct {
	transfers int
	bytes     int64
}

func newReassembly(limits CoAPLimits, maxBody int64, m *Metrics) *reassembly {
	return &reassembly{limits: limits, maxBody: maxBody, m: m, transfers: map[string]*transfer{}, peers: map[string]*peerUse{}}
}

// blockAnswer is what to answer a block that is not the last: code and
// payload, options, the refusal reason for the metric ("" when not
// refused); or, after the last block, the whole body and the options its
// answer carries.
type blockAnswer struct {
	code   codes.Code
	msg    string
	opts   []message.Option
	reason string
	done   bool // the last block came: body is the upload
	body   []byte
}

// block takes block num of the upload tag from peer; size1 is the total
// size the peer announced (Size1 option), -1 when it announced none.
func (ra *reassembly) block(peer string, tag []byte, num uint32, more bool, szx uint32, size1 int64, payload []byte, now time.Time) blockAnswer {
	key := peer + "|" + hex.EncodeToString(tag)
	ra.mu.Lock()
	defer ra.mu.Unlock()
	defer func() { ra.m.reassemblyBytes(ra.held) }()
	tr := ra.transfers[key]
	if num == 0 {
		if tr != nil {
			ra.free(key, tr) // the peer started this upload again
		}
		if size1 > ra.maxBody {
			return ra.tooLarge(size1)
		}
		if p := ra.peers[peer]; p != nil && p.transfers >= ra.limits.PerPeer {
			return blockAnswer{code: codes.TooManyRequests, reason: reasonTransfersPerPeer,
				msg:  fmt.Sprintf("too many block-wise transfers open from %s (limit %d)", peer, ra.limits.PerPeer),
				opts: []message.Option{maxAge(ra.limits.TransferTimeout)}}
		}
		tr = &transfer{peer: peer}
		ra.transfers[key] = tr
		p := ra.peers[peer]
		if p == nil {
			p = &peerUse{}
			ra.peers[peer] = p
		}
		p.transfers++
	} else if tr == nil || num != tr.next {
		if tr != nil {
			ra.free(key, tr)
		}
		return blockAnswer{code: codes.RequestEntityIncomplete, reason: "", msg: fmt.Sprintf("block %d out of order or its transfer expired", num)}
	}

	need := int64(len(tr.buf)) + int64(len(payload))
	if need > ra.maxBody {
		ra.free(key, tr)
		return ra.tooLarge(-1)
	}
	if need > int64(cap(tr.buf)) {
		// Grow to what the peer announced, else double, never past
		// maxBody; refuse what the bounds have no room for.
		c := max(need, min(max(size1, 2*int64(cap(tr.buf))), ra.maxBody))
		grow := c - int64(cap(tr.buf))
		p := ra.peers[peer]
		if p.bytes+grow > ra.limits.PeerBytes {
			ra.free(key, tr)
			return blockAnswer{code: codes.RequestEntityTooLarge, reason: reasonPeerBytes,
				msg: fmt.Sprintf("the open block-wise transfers from %s would hold %d bytes, over the limit of %d per peer (funnel.coap_reassembly.max_bytes_per_peer)", peer, p.bytes+grow, ra.limits.PeerBytes)}
		}
		if ra.held+grow > ra.limits.TotalBytes {
			ra.free(key, tr)
			return blockAnswer{code: codes.ServiceUnavailable, reason: reasonTotalBytes,
				msg:  fmt.Sprintf("block-wise transfers hold %d bytes, the funnel's limit is %d (funnel.coap_reassembly.max_bytes); retry later", ra.held, ra.limits.TotalBytes),
				opts: []message.Option{maxAge(time.Second)}}
		}
		buf := make([]byte, len(tr.buf), c)
		copy(buf, tr.buf)
		tr.buf = buf
		p.bytes += grow
		ra.held += grow
	}
	tr.buf = append(tr.buf, payload...)
	tr.next = num + 1
	tr.updated = now
	if more {
		return blockAnswer{code: codes.Continue, opts: []message.Option{block1Option(num, true, szx)}}
	}
	body := tr.buf
	ra.free(key, tr)
	return blockAnswer{done: true, body: body, opts: []message.Option{block1Option(num, false, szx)}}
}

func (ra *reassembly) tooLarge(size1 int64) blockAnswer {
	msg := fmt.Sprintf("payload over the limit of %d bytes (funnel.max_request_bytes)", ra.maxBody)
	if size1 >= 0 {
		msg = fmt.Sprintf("announced payload of %d bytes is over the limit of %d (funnel.max_request_bytes)", size1, ra.maxBody)
	}
	return blockAnswer{code: codes.RequestEntityTooLarge, reason: reasonTransferTooLarge, msg: msg, opts: []message.Option{uintOption(message.Size1, uint32(min(ra.maxBody, 1<<32-1)))}}
}

// free drops a transfer and what it holds; the caller holds mu.
func (ra *reassembly) free(key string, tr *transfer) {
	delete(ra.transfers, key)
	n := int64(cap(tr.buf))
	ra.held -= n
	if p := ra.peers[tr.peer]; p != nil {
		p.transfers--
		p.bytes -= n
		if p.transfers == 0 {
			delete(ra.peers, tr.peer)
		}
	}
}

// sweep frees transfers that stalled.
func (ra *reassembly) sweep(now time.Time) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for k, tr := range ra.transfers {
		if now.Sub(tr.updated) > ra.limits.TransferTimeout {
			ra.free(k, tr)
		}
	}
	ra.m.reassemblyBytes(ra.held)
	return true
}

// heldBytes is what the open transfers hold.
func (ra *reassembly) heldBytes() int64 {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.held
}

func uintOption(id message.OptionID, v uint32) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, v)
	return message.Option{ID: id, Value: buf[:n]}
}

// maxAge is a Max-Age option of d in whole seconds, rounded up, at least 1.
func maxAge(d time.Duration) message.Option {
	return uintOption(message.MaxAge, uint32(max(1, (d+time.Second-1)/time.Second)))
}
