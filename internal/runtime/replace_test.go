package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// standby records what StartReady did with replicas named r0, r1, …:
// start fails at failStart (1-based; 0 never), and ready answers from
// readiness by name (a name not in it waits for ctx).
type standby struct {
	mu        sync.Mutex
	started   []string
	stopped   []string
	failStart int
	readiness map[string]error
}

func (s *standby) funcs() Standby[string] {
	return Standby[string]{
		Start: func() (string, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.started)+1 == s.failStart {
				return "", errors.New("no free port")
			}
			rep := fmt.Sprintf("r%d", len(s.started))
			s.started = append(s.started, rep)
			return rep, nil
		},
		Ready: func(ctx context.Context, rep string) error {
			if err, ok := s.readiness[rep]; ok {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		},
		Stop: func(rep string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.stopped = append(s.stopped, rep)
		},
	}
}

// TestStartReady: it returns the n replicas once all are ready; a start
// that fails, a replica not ready, or the caller's context ending stops
// every replica it started (and none twice) and says why.
func TestStartReady(t *testing.T) {
	notReady := errors.New("r1 not ready within 1m0s")
	for _, tc := range []struct {
		name      string
		failStart int
		readiness map[string]error
		ctx       time.Duration
		want      []string // returned
		wantErr   string
		wantStop  []string
	}{
		{name: "all ready", readiness: map[string]error{"r0": nil, "r1": nil, "r2": nil}, want: []string{"r0", "r1", "r2"}},
		{name: "a start fails", failStart: 3, wantErr: "starting a new replica: no free port", wantStop: []string{"r0", "r1"}},
		// r0 and r2 would wait for ever: the first failure ends their wait.
		{name: "one not ready", readiness: map[string]error{"r1": notReady}, wantErr: notReady.Error(), wantStop: []string{"r0", "r1", "r2"}},
		{name: "the caller gives up", readiness: map[string]error{"r0": nil}, ctx: 50 * time.Millisecond,
			wantErr: "waiting for the new replicas: context deadline exceeded", wantStop: []string{"r0", "r1", "r2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &standby{failStart: tc.failStart, readiness: tc.readiness}
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			got, err := StartReady(ctx, 3, s.funcs())
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("returned %v, want %v", got, tc.want)
			}
			slices.Sort(s.stopped)
			if !slices.Equal(s.stopped, tc.wantStop) {
				t.Errorf("stopped %v, want %v", s.stopped, tc.wantStop)
			}
		})
	}
}

// TestChangeLock: one holder at a time; a second Lock waits, and gives up
// with its context, naming the tier.
func TestChangeLock(t *testing.T) {
	var l ChangeLock
	if err := l.Lock(context.Background(), "fog"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Lock(ctx, "fog"); err == nil || !strings.Contains(err.Error(), `tier "fog": waiting for a replacement to finish`) {
		t.Errorf("Lock while held: %v, want it to wait and give up", err)
	}
	l.Unlock()
	if err := l.Lock(context.Background(), "fog"); err != nil {
		t.Errorf("Lock after Unlock: %v", err)
	}
	l.Unlock()
}
