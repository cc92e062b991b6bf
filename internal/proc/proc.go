// Package proc owns supervised child processes of the ddnn binary: starting
// one (in its own process group, killed if the parent dies), prefixing its
// output, waiting for its /readyz, restarting it when it dies, and stopping
// it by PID with a grace period. It knows nothing about what the children
// do; internal/up and the process runtime decide that.
//
// Under memory pressure the kernel's OOM killer must pick a child, which
// the supervisor restarts, rather than the supervisor, which nothing
// restarts (and which holds the embedded broker under ddnn up): every
// process a Child starts gets an oom_score_adj childOOMRaise above the
// supervisor's own, which is left as it is (see oom.go).
//
// A child costs one goroutine while it runs (the one waiting for it, plus
// os/exec's copy of its output) and none once it exited and was reaped;
// Supervise ends when its context ends or the child is stopped.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// waitDelay bounds how long the output of an exited child is still read:
// a grandchild that inherited its stdout must not keep Wait (and so the
// child's restart) waiting.
const waitDelay = 2 * time.Second

// Child is one supervised process of the same binary: started, watched,
// restarted when it dies, and stopped by its PID.
type Child struct {
	name     string
	args     []string
	readyURL string // polled until it answers 200
	log      *slog.Logger
	out      io.Writer    // where its output goes, line by line with its name
	client   *http.Client // readiness probes, with its own connections

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process exited and was reaped
	stopping bool
	stopped  chan struct{} // closed by Stop: Supervise returns
	restarts int
	sockets  []*socket.Socket // passed to every process; closed by Stop
}

// New describes a child running the ddnn binary with args; readyURL is its
// /readyz. Output goes to out (nil discards it), each line led by name.
func New(name, readyURL string, out io.Writer, log *slog.Logger, args ...string) *Child {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if out == nil {
		out = io.Discard
	}
	return &Child{
		name: name, args: args, readyURL: readyURL, log: log, out: out,
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}},
		stopped: make(chan struct{}),
	}
}

// Name is the child's name.
func (c *Child) Name() string { return c.name }

// BaseURL is the child's readyURL without /readyz.
func (c *Child) BaseURL() string { return strings.TrimSuffix(c.readyURL, "/readyz") }

// Restarts counts restarts since the first start.
func (c *Child) Restarts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts
}

// Start launches the process; it fails while a process of c still runs.
func (c *Child) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startLocked()
}

func (c *Child) startLocked() error {
	if c.exited != nil {
		select {
		case <-c.exited:
		default:
			return fmt.Errorf("%s: already running as pid %d", c.name, c.cmd.Process.Pid)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	cmd := exec.Command(exe, c.args...)
	// Its own process group: a terminal's Ctrl-C reaches only the
	// supervisor, which stops children in order. Pdeathsig kills it if the
	// supervisor dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out := &lineWriter{out: c.out, prefix: fmt.Sprintf("%-16s ", c.name)}
	// One writer for both: os/exec copies them through one pipe, in its
	// own goroutine, which Wait ends.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	cmd.ExtraFiles, cmd.Env = socket.Pass(os.Environ(), c.sockets)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	// Before anything waits for it, so the pid is still this child's.
	if err := raiseOOMScore(cmd.Process.Pid); err != nil {
		c.log.Warn("child's oom_score_adj not raised: under memory pressure the kernel may kill the supervisor before it",
			"child", c.name, "pid", cmd.Process.Pid, "err", err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		out.flush()
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if !stopping {
			c.log.Warn("child exited", "child", c.name, "pid", cmd.Process.Pid, "err", err)
		}
		close(exited)
	}()
	return nil
}

// restart starts the process again unless c is being stopped.
func (c *Child) restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return nil
	}
	if err := c.startLocked(); err != nil {
		return err
	}
	c.restarts++
	c.log.Info("child restarted", "child", c.name, "pid", c.cmd.Process.Pid)
	return nil
}

// Supervise restarts the child whenever it exits, with a growing delay,
// until ctx ends or Stop is called. The first Start is the caller's.
func (c *Child) Supervise(ctx context.Context) {
	const maxDelay = 5 * time.Second
	delay := 200 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stopped:
			return
		case <-c.exitedChan():
		}
		t.Reset(delay)
		select {
		case <-ctx.Done():
			return
		case <-c.stopped:
			return
		case <-t.C:
		}
		if err := c.restart(); err != nil {
			c.log.Error("restart", "child", c.name, "err", err)
		}
		delay = min(delay*2, maxDelay)
	}
}

// exitedChan returns a channel closed when the current process exits.
func (c *Child) exitedChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

// PID is the current process' id, 0 before the first start.
func (c *Child) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// WaitReady polls readyURL until it answers 200; it fails at once when the
// process exits.
func (c *Child) WaitReady(ctx context.Context, timeout time.Duration) error {
	return c.WaitReadyAt(ctx, c.readyURL, timeout)
}

// WaitReadyAt polls url, a readiness URL of something the child serves
// besides readyURL, until it answers 200; it fails at once when the
// process exits.
func (c *Child) WaitReadyAt(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.exitedChan():
			return fmt.Errorf("%s exited before it was ready", c.name)
		default:
		}
		if c.probe(ctx, url, time.Second) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s", c.name, url, timeout)
		case <-t.C:
		}
	}
}

// Ready reports whether the child answers 200 on readyURL now.
func (c *Child) Ready() bool { return c.probe(context.Background(), c.readyURL, 500*time.Millisecond) }

func (c *Child) probe(ctx context.Context, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop ends supervision, sends SIGTERM and waits up to grace, then
// SIGKILLs. It returns once the process is gone and reaped. The sockets
// passed to it are closed first; the process keeps its own until it ends.
func (c *Child) Stop(grace time.Duration) {
	c.mu.Lock()
	if !c.stopping {
		c.stopping = true
		close(c.stopped)
	}
	// No process starts from now: the supervisor's copies go at once, so
	// that once the child closes its listeners new connections are
	// refused, not queued for no one.
	c.closeSocketsLocked()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	defer c.client.CloseIdleConnections()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		c.log.Warn("child did not stop in time; killing it", "child", c.name, "pid", cmd.Process.Pid, "grace", grace)
		cmd.Process.Kill()
		<-exited
	}
}

// Pass gives s to every process of c, restarts included, so that what
// the child serves keeps its address and nothing else can take it
// meanwhile; call it before Start. c owns s from now: Stop closes it (a
// stopped c closes it at once).
func (c *Child) Pass(s *socket.Socket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		s.Close()
		return
	}
	c.sockets = append(c.sockets, s)
}

// closeSocketsLocked closes the sockets passed to c.
func (c *Child) closeSocketsLocked() {
	for _, s := range c.sockets {
		s.Close()
	}
	c.sockets = nil
}

// Signal sends sig to the current process, if it runs.
func (c *Child) Signal(sig os.Signal) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s is not running", c.name)
	}
	select {
	case <-exited:
		return fmt.Errorf("%s is not running", c.name)
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

// Kill sends SIGKILL to the current process (tests and crash drills); a
// supervised child is restarted.
func (c *Child) Kill() error {
	if err := c.Signal(os.Kill); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// maxLine is the longest line written as one; longer ones are cut.
const maxLine = 64 << 10

// lineWriter writes a child's output to out line by line, each led by
// prefix, one Write per line so children sharing out do not interleave
// within a line. Only os/exec's copying goroutine writes to it; flush runs
// after Wait.
type lineWriter struct {
	out    io.Writer
	prefix string
	buf    []byte // the line so far
	ln     []byte // prefix, line and newline, reused
}

// Write never fails: a slow or broken out must not block or kill the child.
func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			i = len(p)
		}
		take := min(i, maxLine-len(w.buf))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		switch {
		case len(p) > 0 && p[0] == '\n':
			p = p[1:]
			w.line()
		case len(w.buf) == maxLine:
			w.line()
		}
	}
	return n, nil
}

// flush writes a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.line()
	}
}

// line writes what is buffered as a line.
func (w *lineWriter) line() {
	w.ln = append(append(append(w.ln[:0], w.prefix...), w.buf...), '\n')
	w.out.Write(w.ln)
	w.buf = w.buf[:0]
}
