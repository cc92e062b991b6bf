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
// size) instead of being refused. SIGHUP is the reload and SIGUSR1 is
// left free; SIGUSR2 is what nginx and others upgrade their binary in
// place on.
const RestartSignal = syscall.SIGUSR2

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
