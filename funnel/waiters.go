package funnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// A device may ask the ingest route to wait for its message's result
// (?wait=DUR, over CoAP a Uri-Query option wait=DUR): the funnel then
// answers with the result when it reaches the results topic within the
// wait, else as without a wait (202 with the id, CoAP 2.01). The result
// is written to the results topic either way; a wait only changes the
// answer.
//
// waiters holds the requests waiting, keyed by their device and message
// id; one reader of the results topic per funnel (watchResults) hands
// each result to the waiters of its key. A request registers before its
// message is produced, so a result cannot come before its waiter.

// maxAnswerBytes bounds the result a waiter keeps: a result record is a
// few hundred bytes (its id, device, label and one hop per tier); one
// larger is not kept, and its request is answered as without a wait.
const maxAnswerBytes = 4 << 10

// Why a request that asked to wait was answered as without one, or how a
// wait ended: the outcome label of ddnn_funnel_waits_total.
const (
	waitAnswered  = "answered"   // with the result
	waitTimedOut  = "timed_out"  // no result within the wait
	waitGone      = "gone"       // the device went away first
	waitOverLimit = "over_limit" // funnel.wait.max_waiters or max_waiters_per_device reached
	waitNotReady  = "not_ready"  // the results topic was not read yet
	waitDraining  = "draining"   // the funnel began to stop
	waitTooLarge  = "too_large"  // the result was over maxAnswerBytes
)

// WaitError is a wait a request cannot have: unparsable, not positive, over
// funnel.wait.max, given twice, or asked of a funnel with waits off; 400,
// CoAP 4.00.
type WaitError struct {
	Value  string
	Reason string
}

func (e *WaitError) Error() string { return fmt.Sprintf("wait %q: %s", e.Value, e.Reason) }

// parseWait reads a request's wait values: none is no wait (0).
func parseWait(vals []string, c pipeline.Wait) (time.Duration, error) {
	switch len(vals) {
	case 0:
		return 0, nil
	case 1:
	default:
		return 0, &WaitError{Value: vals[1], Reason: "give wait once"}
	}
	v := vals[0]
	if !c.On() {
		return 0, &WaitError{Value: v, Reason: "this funnel answers no waits (funnel.wait.max is 0)"}
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, &WaitError{Value: v, Reason: fmt.Sprintf("not a duration like 2s or 500ms (at most funnel.wait.max %s)", c.Max)}
	case d <= 0:
		return 0, &WaitError{Value: v, Reason: fmt.Sprintf("must be more than 0 (at most funnel.wait.max %s)", c.Max)}
	case d > c.Max:
		return 0, &WaitError{Value: v, Reason: fmt.Sprintf("over funnel.wait.max %s", c.Max)}
	}
	return d, nil
}

// waiter is one request waiting for its result.
type waiter struct {
	key, limitKey string
	// answer gets the result record's value, or nil for one over
	// maxAnswerBytes; it holds one.
	answer chan []byte
}

// waiters are the requests waiting for their results.
type waiters struct {
	cfg pipeline.Wait
	m   *Metrics
	// ready is set while watchResults reads the results topic from
	// where it began; a request that asks to wait before is answered
	// as without a wait.
	ready atomic.Bool
	// stop is closed when the funnel drains: every wait ends at once.
	stop     chan struct{}
	stopOnce sync.Once

	mu        sync.Mutex
	byKey     map[string][]*waiter
	perDevice map[string]int
	n         int
}

func newWaiters(cfg pipeline.Wait, m *Metrics) *waiters {
	return &waiters{cfg: cfg, m: m, stop: make(chan struct{}), byKey: map[string][]*waiter{}, perDevice: map[string]int{}}
}

// errNotReady and errOverLimit are why add took no waiter.
var (
	errNotReady  = errors.New("the results topic is not read yet")
	errOverLimit = errors.New("too many requests waiting")
)

// waitKey is the key of device's message id: a result answers only a
// request of the device it belongs to.
func waitKey(device, id string) string { return device + "\x00" + id }

// add registers a waiter for device's message id; limitKey counts it
// toward funnel.wait.max_waiters_per_device.
func (ws *waiters) add(device, id, limitKey string) (*waiter, error) {
	if !ws.ready.Load() {
		return nil, errNotReady
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.n >= ws.cfg.MaxWaiters || ws.perDevice[limitKey] >= ws.cfg.MaxWaitersPerDevice {
		return nil, errOverLimit
	}
	w := &waiter{key: waitKey(device, id), limitKey: limitKey, answer: make(chan []byte, 1)}
	ws.byKey[w.key] = append(ws.byKey[w.key], w)
	ws.perDevice[limitKey]++
	ws.n++
	ws.m.waitersNow(ws.n)
	return w, nil
}

// remove unregisters w, whether or not it was answered.
func (ws *waiters) remove(w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	list := ws.byKey[w.key]
	for i, o := range list {
		if o != w {
			continue
		}
		list = append(list[:i], list[i+1:]...)
		if len(list) == 0 {
			delete(ws.byKey, w.key)
		} else {
			ws.byKey[w.key] = list
		}
		if ws.perDevice[w.limitKey]--; ws.perDevice[w.limitKey] == 0 {
			delete(ws.perDevice, w.limitKey)
		}
		ws.n--
		ws.m.waitersNow(ws.n)
		return
	}
}

// waiting reports whether any request waits: the results reader decodes
// a result only then.
func (ws *waiters) waiting() bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.n > 0
}

// deliver hands value, the result record of device's message id, to its
// waiters; a copy is kept (not the fetch buffer it came in), or nil when
// it is over maxAnswerBytes. A waiter already answered keeps its first
// result.
func (ws *waiters) deliver(device, id string, value []byte) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	list := ws.byKey[waitKey(device, id)]
	if len(list) == 0 {
		return
	}
	var answer []byte
	if len(value) <= maxAnswerBytes {
		answer = bytes.Clone(value)
	}
	for _, w := range list {
		select {
		case w.answer <- answer:
		default:
		}
	}
}

// drain ends every wait, now and to come: the funnel is stopping.
func (ws *waiters) drain() { ws.stopOnce.Do(func() { close(ws.stop) }) }

// await waits until w is answered, d passed, done is closed (the device
// went away) or the funnel drains; it returns the result, or nil with
// why there is none, and unregisters w.
func (ws *waiters) await(w *waiter, d time.Duration, done <-chan struct{}) ([]byte, string) {
	defer ws.remove(w)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case a := <-w.answer:
		if a == nil {
			return nil, waitTooLarge
		}
		return a, waitAnswered
	case <-t.C:
		return nil, waitTimedOut
	case <-done:
		return nil, waitGone
	case <-ws.stop:
		return nil, waitDraining
	}
}

// acceptWaiting is accept with a wait of d (0: none) from now: it
// registers a waiter for m (with an id made for it if it has none)
// before its message is produced, then, once Kafka acknowledged it,
// waits for the result until d passed since the call. It returns the
// result record's value, or nil when the request is to be answered as
// without a wait (no wait asked, none taken, or no result in time);
// ctx ending (the device went away) ends the wait too. remoteAddr is the
// device's address, which stands for a device without an id in
// funnel.wait.max_waiters_per_device.
func (f *Funnel) acceptWaiting(ctx context.Context, m *wire.Message, d time.Duration, remoteAddr string) ([]byte, error) {
	if d == 0 || f.waits == nil {
		return nil, f.accept(ctx, m)
	}
	deadline := time.Now().Add(d)
	if m.ID == "" {
		m.ID = NewID()
	}
	w, err := f.waits.add(m.Device, m.ID, rateKey(m.Device, remoteAddr))
	if err != nil {
		outcome := waitNotReady
		if errors.Is(err, errOverLimit) {
			outcome = waitOverLimit
		}
		f.m.waited(outcome)
		return nil, f.accept(ctx, m)
	}
	if err := f.accept(ctx, m); err != nil {
		f.waits.remove(w)
		if ctx.Err() != nil {
			f.m.waited(waitGone) // before Kafka's acknowledgement
		}
		return nil, err
	}
	answer, outcome := f.waits.await(w, time.Until(deadline), ctx.Done())
	f.m.waited(outcome)
	return answer, nil
}
