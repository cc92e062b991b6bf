package funnel

import (
	"container/list"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Reasons of ddnn_funnel_refusals_total: what a device did past a bound.
const (
	reasonInvalidID        = "invalid_id"         // an id breaking the rule (400, 4.00)
	reasonIDConflict       = "id_conflict"        // two different ids for one message (400, 4.00)
	reasonRateLimited      = "rate_limited"       // over funnel.device_rate_limit (429, 4.29)
	reasonMethod           = "method_not_allowed" // 405 with Allow, 4.05
	reasonTransfersPerPeer = "transfers_per_peer" // CoAP: too many Block1 transfers open (4.29)
	reasonPeerBytes        = "reassembly_peer"    // CoAP: the peer's transfers hold its share (4.13)
	reasonTotalBytes       = "reassembly_total"   // CoAP: every transfer together holds the cap (5.03)
	reasonTransferTooLarge = "transfer_too_large" // CoAP: one upload over max_request_bytes (4.13)
	reasonBadWait          = "bad_wait"           // a wait the funnel cannot take (400, 4.00): see WaitError
)

// deviceLimiter is a token bucket per device (funnel.device_rate_limit).
// Memory is bounded: a bucket untouched long enough to have refilled is
// the same as a new one and is forgotten as the limiter goes, and beyond
// max devices the one seen least recently is forgotten.
type deviceLimiter struct {
	cfg   pipeline.RateLimit
	limit rate.Limit
	burst int
	max   int
	// idle is how long an emptied bucket takes to refill.
	idle time.Duration

	mu    sync.Mutex
	byKey map[string]*list.Element
	lru   list.List // of *bucket, most recently seen first
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

// newDeviceLimiter is the limiter of c, nil when the limit is off.
func newDeviceLimiter(c pipeline.RateLimit) *deviceLimiter {
	if !c.On() {
		return nil
	}
	return &deviceLimiter{
		cfg:   c,
		limit: rate.Limit(c.Rate),
		burst: c.Burst,
		max:   c.MaxDevices,
		idle:  time.Duration(float64(c.Burst) / c.Rate * float64(time.Second)),
		byKey: map[string]*list.Element{},
	}
}

// allow takes a token of key's bucket at now; when there is none it
// returns false and how long until there is one.
func (l *deviceLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := l.lru.Back(); e != nil && now.Sub(e.Value.(*bucket).seen) >= l.idle; e = l.lru.Back() {
		l.forget(e)
	}
	e := l.byKey[key]
	if e == nil {
		if l.lru.Len() >= l.max {
			l.forget(l.lru.Back())
		}
		e = l.lru.PushFront(&bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)})
		l.byKey[key] = e
	} else {
		l.lru.MoveToFront(e)
	}
	b := e.Value.(*bucket)
	b.seen = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	wait := time.Duration((1 - b.lim.TokensAt(now)) / float64(l.limit) * float64(time.Second))
	return false, max(wait, time.Nanosecond)
}

func (l *deviceLimiter) forget(e *list.Element) {
	delete(l.byKey, e.Value.(*bucket).key)
	l.lru.Remove(e)
}

// tracked is how many buckets the limiter holds.
func (l *deviceLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// rateKey is what a message is limited by: its device id, else (a device
// that gave none) the peer's IP address, which no device id can spell.
func rateKey(device, remoteAddr string) string {
	if device != "" {
		return device
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	return " " + host
}

// RateLimitedError is a device over funnel.device_rate_limit: 429 with
// Retry-After, CoAP 4.29 with Max-Age.
type RateLimitedError struct {
	Device string // "" for a device that gave no id
	Rate   float64
	Burst  int
	Wait   time.Duration
}

func (e *RateLimitedError) Error() string {
	who := "this device"
	if e.Device != "" {
		who = fmt.Sprintf("device %q", e.Device)
	}
	return fmt.Sprintf("%s is over funnel.device_rate_limit (%g messages/s, burst %d): retry in %ds", who, e.Rate, e.Burst, e.RetryAfter())
}

// RetryAfter is the wait in whole seconds, rounded up, at least 1.
func (e *RateLimitedError) RetryAfter() int {
	return max(1, int(math.Ceil(e.Wait.Seconds())))
}

// limitRate takes a token for a message of device from remoteAddr, or
// returns a *RateLimitedError.
func (f *Funnel) limitRate(device, remoteAddr string) error {
	rl := f.rl.Load()
	if rl == nil {
		return nil
	}
	ok, wait := rl.allow(rateKey(device, remoteAddr), f.now())
	if ok {
		return nil
	}
	c := rl.cfg
	return &RateLimitedError{Device: device, Rate: c.Rate, Burst: c.Burst, Wait: wait}
}

// failRate answers a *RateLimitedError with 429 and Retry-After.
func (f *Funnel) failRate(w http.ResponseWriter, route string, err *RateLimitedError) {
	f.m.refused(route, reasonRateLimited)
	w.Header().Set("Retry-After", strconv.Itoa(err.RetryAfter()))
	f.fail(w, route, http.StatusTooManyRequests, err.Error())
}

// probeMethods are the methods noRoute tries on a path to fill Allow.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// allowed lists the methods mux routes r's path for, ignoring the
// catch-all "/" pattern; empty when the path has no route.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var ms []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			ms = append(ms, m)
		}
	}
	return ms
}

// noRoute answers what mux has no route for: 405 with Allow when the path
// has routes for other methods, else notFound.
func (f *Funnel) noRoute(mux *http.ServeMux, notFound http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ms := allowed(mux, r)
		if len(ms) == 0 {
			notFound(w, r)
			return
		}
		allow := strings.Join(ms, ", ")
		f.m.refused("http", reasonMethod)
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, allow))
	}
}

// methodsOnly answers 405 with Allow: allow, for a path whose routes are
// on another mux's patterns (e.g. /metrics).
func (f *Funnel) methodsOnly(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.m.refused("http", reasonMethod)
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, allow))
	}
}

// ingestContentTypes are the content types decodeIngest takes.
var ingestContentTypes = []string{"application/octet-stream", "application/json"}
