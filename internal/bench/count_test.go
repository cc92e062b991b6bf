package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestCounting: lost is accepted without a result; refused sends are
// counted by reason and never as lost, even when a result came anyway.
func TestCounting(t *testing.T) {
	type msg struct {
		sent    bool
		refused string
		results int
	}
	for _, tc := range []struct {
		name string
		msgs []msg
		want Summary // the counts only
	}{
		{"accepted, one result", []msg{{true, "", 1}},
			Summary{Sent: 1, Accepted: 1, Results: 1}},
		{"accepted, no result", []msg{{true, "", 0}},
			Summary{Sent: 1, Accepted: 1, Lost: 1}},
		{"accepted, three results", []msg{{true, "", 3}},
			Summary{Sent: 1, Accepted: 1, Results: 1, Duplicates: 2}},
		{"refused", []msg{{true, "http 503", 0}, {true, "http 503", 0}, {true, "connection refused", 0}},
			Summary{Sent: 3, Refused: 3, RefusedBy: map[string]int{"http 503": 2, "connection refused": 1}}},
		{"timed out but taken", []msg{{true, "timeout", 1}},
			Summary{Sent: 1, Refused: 1, RefusedBy: map[string]int{"timeout": 1}, Results: 1, RefusedResults: 1}},
		{"never sent", []msg{{false, "", 0}},
			Summary{}},
		{"mixed", []msg{{true, "", 1}, {true, "", 0}, {true, "coap 5.03", 0}, {false, "", 0}, {true, "", 2}},
			Summary{Sent: 4, Accepted: 3, Refused: 1, RefusedBy: map[string]int{"coap 5.03": 1}, Results: 2, Lost: 1, Duplicates: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := &run{
				cfg:   Config{Pipeline: &pipeline.Pipeline{Tiers: []pipeline.Tier{{Name: "edge"}}}},
				start: start,
			}
			for i, m := range tc.msgs {
				r.sends = append(r.sends, Send{At: time.Duration(i) * time.Millisecond})
				st := sendState{sent: time.Duration(i) * time.Millisecond, done: m.sent, refused: m.refused}
				if m.refused != "" {
					st.err = m.refused + ": detail"
				}
				r.sent = append(r.sent, st)
				rs := resultState{n: m.results}
				if m.results > 0 {
					rs.tier, rs.at = "edge", start.Add(time.Duration(i+5)*time.Millisecond)
				}
				r.results = append(r.results, rs)
			}
			s := r.result(false).Summary
			if tc.want.RefusedBy == nil {
				tc.want.RefusedBy = map[string]int{}
			}
			if s.Sent != tc.want.Sent || s.Accepted != tc.want.Accepted || s.Refused != tc.want.Refused ||
				!maps.Equal(s.RefusedBy, tc.want.RefusedBy) || s.Results != tc.want.Results || s.RefusedResults != tc.want.RefusedResults ||
				s.Lost != tc.want.Lost || s.Duplicates != tc.want.Duplicates {
				t.Errorf("sent %d accepted %d refused %d %v results %d (of refused sends %d) lost %d duplicates %d; want %+v",
					s.Sent, s.Accepted, s.Refused, s.RefusedBy, s.Results, s.RefusedResults, s.Lost, s.Duplicates, tc.want)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	canceled, stop := context.WithCancel(context.Background())
	stop()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&refusedError{reason: "http 503", detail: "funnel is shutting down"}, "http 503"},
		{fmt.Errorf("post: %w", &refusedError{reason: "coap 4.13"}), "coap 4.13"},
		{ctx.Err(), "timeout"},
		{canceled.Err(), "interrupted"},
		{kgo.ErrRecordTimeout, "timeout"},
		{kerr.NotEnoughReplicas, "kafka NOT_ENOUGH_REPLICAS"},
		{&net.OpError{Op: "dial", Err: &net.AddrError{Err: "x"}}, "error"},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection refused"},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, "connection reset"},
		{errors.New("something else"), "error"},
	} {
		if got := refusal(tc.err); got != tc.want {
			t.Errorf("refusal(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestHTTPDeviceAnswers: what an HTTP device takes as accepted or refused.
func TestHTTPDeviceAnswers(t *testing.T) {
	code := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()
	d := &httpDevice{name: "d", url: srv.URL, client: &http.Client{Timeout: 5 * time.Second}}
	defer d.close()
	for _, tc := range []struct {
		code int
		want string
	}{{202, ""}, {204, ""}, {400, "http 400"}, {413, "http 413"}, {503, "http 503"}} {
		code.Store(int32(tc.code))
		_, err := d.send(context.Background(), "m", []byte{1})
		if got := ""; err != nil {
			got = refusal(err)
			if got != tc.want {
				t.Errorf("%d: %q (%v), want %q", tc.code, got, err, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%d accepted, want %q", tc.code, tc.want)
		}
	}
	srv.Close()
	if _, err := d.send(context.Background(), "m", []byte{1}); refusal(err) != "connection refused" {
		t.Errorf("closed server: %v (%s)", err, refusal(err))
	}
}

// blocking is a device whose sends wait for release.
type blocking struct {
	release  chan struct{}
	inflight atomic.Int32
	peak     atomic.Int32
}

func (b *blocking) send(ctx context.Context, _ string, _ []byte) (bool, error) {
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
	}
	select {
	case <-b.release:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (b *blocking) close() {}

// TestDeviceInFlight: a device sends at most MaxInFlight at once; a send
// that finds them all busy waits and counts as late; every send ends
// accepted.
func TestDeviceInFlight(t *testing.T) {
	const n, limit = 10, 3
	r := newRun(Config{MaxInFlight: limit, Samples: [][]byte{{1}}}, make([]Send, n)) // all due at once
	r.start = time.Now()
	d := &blocking{release: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { r.sendAll(context.Background(), []device{d}) })
	deadline := time.Now().Add(10 * time.Second)
	for d.inflight.Load() < limit || r.late.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d, late %d", d.inflight.Load(), r.late.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(d.release)
	wg.Wait()
	if late := r.late.Load(); d.peak.Load() != limit || r.nacked.Load() != n || late < 1 || late > n-limit {
		t.Errorf("peak in flight %d (want %d), accepted %d, late %d", d.peak.Load(), limit, r.nacked.Load(), r.late.Load())
	}
}

// TestDrainWaitsForEveryAcceptedID: the drain after the last send ends
// when every accepted message has a result, not when there are as many
// results as acceptances: a result of a refused send that the funnel took
// anyway (the connection reset after the write) does not stand for an
// accepted message's missing one, which would then be reported lost.
func TestDrainWaitsForEveryAcceptedID(t *testing.T) {
	start := time.Now()
	r := newRun(Config{Pipeline: &pipeline.Pipeline{Tiers: []pipeline.Tier{{Name: "edge"}}}}, []Send{{At: 0}, {At: time.Millisecond}})
	r.start = start
	// 0 is accepted; its result is still on its way.
	r.sent[0] = sendState{done: true, ack: time.Millisecond}
	r.accepted(0)
	r.nacked.Add(1)
	// 1 was refused, yet taken: its result comes.
	r.sent[1] = sendState{sent: time.Millisecond, done: true, refused: "connection reset", err: "post: connection reset by peer"}
	r.nrefused.Add(1)
	r.gotResult(1, wire.Result{Tier: "edge", Class: 1}, start.Add(5*time.Millisecond))

	// Nothing else comes: the drain waits its whole bound.
	const bound = 300 * time.Millisecond
	began := time.Now()
	if r.drain(context.Background(), bound) {
		t.Error("drain says interrupted")
	}
	if waited := time.Since(began); waited < bound {
		t.Fatalf("drain ended after %s, before its %s bound, with message 0 accepted and no result of it", waited, bound)
	}

	// The result of 0 comes during a drain: it ends there, and nothing is
	// lost.
	ended := make(chan bool, 1)
	go func() { ended <- r.drain(context.Background(), time.Minute) }()
	r.gotResult(0, wire.Result{Tier: "edge"}, start.Add(9*time.Millisecond))
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("drain went on after every accepted message had a result")
	}
	s := r.result(false).Summary
	if s.Accepted != 1 || s.Refused != 1 || s.Results != 2 || s.RefusedResults != 1 || s.Lost != 0 {
		t.Errorf("accepted %d refused %d results %d (of refused sends %d) lost %d; want 1 1 2 (1) 0",
			s.Accepted, s.Refused, s.Results, s.RefusedResults, s.Lost)
	}
	var out strings.Builder
	r.result(false).Print(&out)
	if !strings.Contains(out.String(), "results 2 (1 of them of refused sends: taken, the answer lost); lost 0") {
		t.Errorf("report:\n%s", out.String())
	}
}
