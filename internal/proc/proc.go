// Package proc owns supervised child processes of the ddnn binary: starting
// one (in its own process group, killed if the parent dies), prefixing its
// output, waiting for its /readyz, restarting it when it dies, and stopping
// it by PID with a grace period. It knows nothing about what the children
// do; internal/up and the process runtime decide that.
package proc

import (
	"bufio"
	"context"
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
)

// Child is one supervised process of the same binary: started, watched,
// restarted when it dies, and stopped by its PID.
type Child struct {
	name     string
	args     []string
	readyURL string // polled until it answers 200
	log      *slog.Logger
	out      io.Writer // where its output goes, line by line with its name

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process exits
	stopping bool
	restarts int
}

// New describes a child running the ddnn binary with args; readyURL is its
// /readyz. Output goes to out, each line led by name.
func New(name, readyURL string, out io.Writer, log *slog.Logger, args ...string) *Child {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Child{name: name, args: args, readyURL: readyURL, log: log, out: out}
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

// Start launches the process.
func (c *Child) Start() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, c.args...)
	// Its own process group: a terminal's Ctrl-C reaches only the
	// supervisor, which stops children in order. Pdeathsig kills it if the
	// supervisor dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Stdout = c.prefixed()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		close(exited)
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if !stopping {
			c.log.Warn("child exited", "child", c.name, "pid", cmd.Process.Pid, "err", err)
		}
	}()
	return nil
}

// prefixed writes the child's output to c.out, each line led by its name.
func (c *Child) prefixed() io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(c.out, "%-16s %s\n", c.name, sc.Text())
		}
	}()
	return pw
}

// Supervise restarts the child whenever it exits until ctx ends.
func (c *Child) Supervise(ctx context.Context) {
	delay := 200 * time.Millisecond
	for {
		c.mu.Lock()
		exited := c.exited
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-exited:
		}
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if stopping {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		c.mu.Lock()
		c.restarts++
		c.mu.Unlock()
		if err := c.Start(); err != nil {
			c.log.Error("restart", "child", c.name, "err", err)
		} else {
			c.log.Info("child restarted", "child", c.name, "pid", c.PID())
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (c *Child) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// WaitReady polls readyURL until it answers 200.
func (c *Child) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		c.mu.Lock()
		exited := c.exited
		c.mu.Unlock()
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready", c.name)
		default:
		}
		if resp, err := client.Get(c.readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s", c.name, c.readyURL, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Ready reports whether the child answers 200 on readyURL now.
func (c *Child) Ready() bool {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Get(c.readyURL)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop sends SIGTERM and waits up to grace, then SIGKILLs. It waits for the
// process to be gone.
func (c *Child) Stop(grace time.Duration) {
	c.mu.Lock()
	c.stopping = true
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		c.log.Warn("child did not stop in time; killing it", "child", c.name, "pid", cmd.Process.Pid)
		cmd.Process.Kill()
		<-exited
	}
}

// Kill sends SIGKILL to the current process (tests and crash drills).
func (c *Child) Kill() error {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%s is not running", c.name)
	}
	return cmd.Process.Kill()
}
