package results

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A followed read waits for results for as long as the user wants, and the
// Kafka client retries a broker that went away on its own, without a word:
// the reader would look like a quiet topic. brokerWatch tells them apart.
// It hooks the client: a failed connection or a request whose write or
// read failed means the broker is lost; a fetch answered means it is
// there. A broker that accepts connections but answers nothing (stopped,
// hung) is noticed when no fetch was answered for StallAfter while the
// reader waited for records: a broker that is there answers a fetch within
// the client's fetch wait (5s) even when there is nothing new. (While the
// reader is busy printing, to a pager the user does not scroll say, the
// client holds back fetches once it has one buffered: that is no stall.)
// Each change is said once on cfg.Warn, and
// while the broker is lost a reminder with the attempts so far every
// remindEvery.

// remindEvery is how often a lost broker is mentioned again.
const remindEvery = 30 * time.Second

// brokerWatch follows the health of a followed read's brokers.
type brokerWatch struct {
	warn  io.Writer
	stall time.Duration
	now   func() time.Time

	mu       sync.Mutex
	stopped  bool
	lost     bool
	since    time.Time // lost since, or last fetch answered
	waiting  time.Time // since when the reader waits in a poll; zero when not
	reminded time.Time
	attempts int    // failed connections and requests while lost
	last     string // the last failure
}

func newBrokerWatch(warn io.Writer, stall time.Duration) *brokerWatch {
	return &brokerWatch{warn: warn, stall: stall, now: time.Now, since: time.Now()}
}

var (
	_ kgo.HookBrokerConnect = (*brokerWatch)(nil)
	_ kgo.HookBrokerE2E     = (*brokerWatch)(nil)
)

// OnBrokerConnect notes a connection that failed.
func (w *brokerWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		w.failed(fmt.Sprintf("%s: %v", broker(meta), err))
	}
}

// OnBrokerE2E notes a request that failed, and a fetch answered.
func (w *brokerWatch) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	switch err := e2e.Err(); {
	case err != nil && !errors.Is(err, kgo.ErrClientClosed):
		w.failed(fmt.Sprintf("%s: %v", broker(meta), err))
	case err == nil && key == int16(kmsg.Fetch):
		w.answered()
	}
}

func broker(meta kgo.BrokerMetadata) string {
	return net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port))
}

// failed notes a failure: the first while the broker was there says it is
// lost.
func (w *brokerWatch) failed(why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.last = why
	if w.lost {
		w.attempts++
		return
	}
	w.lost, w.attempts = true, 1
	w.since, w.reminded = w.now(), w.now()
	fmt.Fprintf(w.warn, "results: lost the Kafka broker (%s); retrying until it answers (Ctrl-C stops)\n", why)
}

// answered notes a fetch answered: the first after a loss says so.
func (w *brokerWatch) answered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	now := w.now()
	if w.lost {
		fmt.Fprintf(w.warn, "results: the Kafka broker answers again after %s (%s); following\n",
			now.Sub(w.since).Round(100*time.Millisecond), attempts(w.attempts))
		w.lost = false
	}
	w.since = now
}

// check says a broker lost that answered no fetch for w.stall, and reminds
// of a broker still lost.
func (w *brokerWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	now := w.now()
	switch {
	case !w.lost && !w.waiting.IsZero() && now.Sub(later(w.since, w.waiting)) >= w.stall:
		w.lost, w.attempts, w.since, w.reminded = true, 0, now, now
		w.last = fmt.Sprintf("no fetch answered for %s", w.stall)
		fmt.Fprintf(w.warn, "results: lost the Kafka broker (%s); retrying until it answers (Ctrl-C stops)\n", w.last)
	case w.lost && now.Sub(w.reminded) >= remindEvery:
		w.reminded = now
		fmt.Fprintf(w.warn, "results: still no Kafka broker after %s, %s (last: %s); retrying\n",
			now.Sub(w.since).Round(time.Second), attempts(w.attempts), w.last)
	}
}

// polling notes that the reader waits for records (in PollFetches) or, with
// false, that it got them.
func (w *brokerWatch) polling(waits bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if waits {
		w.waiting = w.now()
	} else {
		w.waiting = time.Time{}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// run checks every second until ctx ends, then stops the watch: what the
// client does while it closes is not news.
func (w *brokerWatch) run(ctx context.Context) {
	t := time.NewTicker(min(time.Second, w.stall/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.stop()
			return
		case <-t.C:
			w.check()
		}
	}
}

func (w *brokerWatch) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// attempts is "1 failed attempt", "3 failed attempts".
func attempts(n int) string {
	if n == 1 {
		return "1 failed attempt"
	}
	return fmt.Sprintf("%d failed attempts", n)
}
