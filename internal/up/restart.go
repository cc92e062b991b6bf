package up

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// RestartSignal makes `ddnn up` restart in place: it stops the pipeline
// as a stop does, except that the funnels keep taking device data until
// they stop, then replaces itself (same PID, arguments and environment)
// by the binary at the path it was started from, read again, which takes
// over the sockets it held: the funnels' device and delivery listeners,
// their CoAP sockets and the admin address. Sends made meanwhile wait in
// those sockets' backlogs (HTTP) or receive buffers (CoAP, up to their
// size) instead of being refused. SIGHUP is the reload and
// SIGUSR1 is free for other uses; SIGUSR2 is what nginx and others use to
// upgrade their binary in place.
const RestartSignal = syscall.SIGUSR2

// handover is what `ddnn up` keeps for its whole life, across an in-place
// restart: the listening sockets it holds, and whether the stop under way
// is a restart's.
type handover struct {
	log        *slog.Logger
	restarting atomic.Bool

	mu   sync.Mutex
	held []*heldSocket // in the order bound
	// sitesLeft counts down the sites of a Run still starting; at 0 the
	// sockets passed down that no site took over are closed.
	sitesLeft int
}

type heldSocket struct {
	*socket.Socket
	udp   bool // bound by socket.BindPacket
	inUse bool // by a site of the Run under way
}

func newHandover(log *slog.Logger) *handover { return &handover{log: log} }

// hold is the listening TCP socket for addr held for the process' life:
// one held and not in use by this Run, else one bound now (or taken over
// from the process this one replaced, see socket.Bind).
func (h *handover) hold(addr string) (*socket.Socket, error) {
	return h.holdSocket(addr, false, socket.Bind)
}

// holdPacket is hold of a UDP socket (socket.BindPacket).
func (h *handover) holdPacket(addr string) (*socket.Socket, error) {
	return h.holdSocket(addr, true, socket.BindPacket)
}

func (h *handover) holdSocket(addr string, udp bool, bind func(string) (*socket.Socket, error)) (*socket.Socket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.held {
		if s.Addr == addr && s.udp == udp && !s.inUse {
			s.inUse = true
			return s.Socket, nil
		}
	}
	s, err := bind(addr)
	if err != nil {
		return nil, err
	}
	h.held = append(h.held, &heldSocket{Socket: s, udp: udp, inUse: true})
	return s, nil
}

// starting is told how many sites a Run starts.
func (h *handover) starting(sites int) {
	h.mu.Lock()
	h.sitesLeft = sites
	h.mu.Unlock()
}

// siteStarted is told that a site's start ended, well or not; after the
// last, sockets passed down that no site took over (their address no
// longer in the pipeline file) are closed.
func (h *handover) siteStarted() {
	h.mu.Lock()
	h.sitesLeft--
	last := h.sitesLeft == 0
	h.mu.Unlock()
	if !last {
		return
	}
	if addrs := socket.CloseUnclaimed(); len(addrs) > 0 {
		h.log.Warn("restart: listening sockets handed over but no longer in the pipeline file; closed", "addrs", strings.Join(addrs, " "))
	}
}

// released makes every held socket free for the next Run.
func (h *handover) released() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.held {
		s.inUse = false
	}
}

// restartingNow reports whether the stop under way is a restart's.
func (h *handover) restartingNow() bool { return h != nil && h.restarting.Load() }

func (h *handover) sockets() []*socket.Socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*socket.Socket, len(h.held))
	for i, s := range h.held {
		out[i] = s.Socket
	}
	return out
}

func (h *handover) close() {
	for _, s := range h.sockets() {
		s.Close()
	}
}

// holdAdmin holds the site's admin socket and provides it to the admin
// server's Listen.
func (s *Supervisor) holdAdmin() error {
	sock, err := s.cfg.handover.hold(s.site.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if err := socket.Provide(sock); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// restarter restarts `ddnn up` in place on RestartSignal, once a check of
// what the new process needs passed.
type restarter struct {
	log *slog.Logger
	// binary is the path `ddnn up` was started from, made absolute: the
	// exec reads it again, so a binary replaced there (renamed over, or
	// a symbolic link moved) is the one that runs.
	binary    string
	file      string // the pipeline file
	ephemeral bool
	h         *handover // the sockets it hands over
}

func newRestarter(log *slog.Logger, file string, ephemeral bool) *restarter {
	return &restarter{log: log, binary: binaryPath(), file: file, ephemeral: ephemeral, h: newHandover(log)}
}

// binaryPath is the path this process was started from: os.Args[0] as
// the shell found it, absolute; os.Executable when that fails. The
// latter names the file the running binary was read from, and so not a
// new binary a symbolic link was moved to.
func binaryPath() string {
	path := os.Args[0]
	if !strings.Contains(path, "/") {
		found, err := exec.LookPath(path)
		if err != nil {
			exe, _ := os.Executable()
			return exe
		}
		path = found
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		exe, _ := os.Executable()
		return exe
	}
	return abs
}

// watch returns a context that ends with ctx, or at RestartSignal once
// check passed (then h says the stop is a restart's); a check that fails
// is logged and the pipeline runs on. stop ends the watch.
func (r *restarter) watch(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, RestartSignal)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				r.log.Info("restart: signal received, checking the binary and the pipeline file", "binary", r.binary)
				if err := r.check(ctx); err != nil {
					r.log.Error("restart: refused; the pipeline runs on", "err", err)
					continue
				}
				r.log.Info("restart: stopping the pipeline; the funnels take device data until they stop, then sends wait in the listening sockets' backlogs")
				r.h.restarting.Store(true)
				cancel()
				return
			}
		}
	}()
	return ctx, func() {
		cancel()
		<-done
	}
}

// check refuses a restart that would not come back: an ephemeral broker
// (what it holds would be lost), a binary that does not run, a pipeline
// file that does not load.
func (r *restarter) check(ctx context.Context) error {
	if r.ephemeral {
		return errors.New("--ephemeral: the embedded broker keeps its records in memory, and they would be lost; stop and start instead")
	}
	if r.binary == "" {
		return errors.New("the path ddnn up was started from is unknown")
	}
	const xOK = 1 // access(2)'s X_OK
	if err := syscall.Access(r.binary, xOK); err != nil {
		return fmt.Errorf("binary %s: %w", r.binary, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, r.binary, "version").CombinedOutput(); err != nil {
		return fmt.Errorf("binary %s: `version` failed: %w: %s", r.binary, err, strings.TrimSpace(string(out)))
	}
	if _, err := command.LoadPipeline(r.file); err != nil {
		return fmt.Errorf("pipeline file: %w", err)
	}
	return nil
}

// exec replaces this process by the binary with the same arguments and
// environment and the held sockets; it returns only when that failed, and
// then the process is as before the restart was asked (its sockets held).
func (r *restarter) exec() error {
	r.log.Info("restart: pipeline stopped; executing the binary with the listening sockets", "binary", r.binary, "sockets", len(r.h.sockets()))
	err := socket.Exec(r.binary, os.Args, os.Environ(), r.h.sockets())
	r.h.restarting.Store(false)
	return err
}
