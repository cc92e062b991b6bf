package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
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
			Summary{Sent: 1, Refused: 1, RefusedBy: map[string]int{"timeout": 1}, Results: 1}},
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
				!maps.Equal(s.RefusedBy, tc.want.RefusedBy) || s.Results != tc.want.Results ||
				s.Lost != tc.want.Lost || s.Duplicates != tc.want.Duplicates {
				t.Errorf("sent %d accepted %d refused %d %v results %d lost %d duplicates %d; want %+v",
					s.Sent, s.Accepted, s.Refused, s.RefusedBy, s.Results, s.Lost, s.Duplicates, tc.want)
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
		err := d.send(context.Background(), "m", []byte{1})
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
	if err := d.send(context.Background(), "m", []byte{1}); refusal(err) != "connection refused" {
		t.Errorf("closed server: %v (%s)", err, refusal(err))
	}
}

// blocking is a device whose sends wait for release.
type blocking struct {
	release  chan struct{}
	inflight atomic.Int32
	peak     atomic.Int32
}

func (b *blocking) send(ctx context.Context, _ string, _ []byte) error {
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
	}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *blocking) close() {}

// TestDeviceInFlight: a device sends at most MaxInFlight at once; a send
// that finds them all busy waits and counts as late; every send ends
// accepted.
func TestDeviceInFlight(t *testing.T) {
	const n, limit = 10, 3
	r := &run{cfg: Config{MaxInFlight: limit, Samples: [][]byte{{1}}}, start: time.Now()}
	r.sends = make([]Send, n) // all due at once
	r.sent = make([]sendState, n)
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
