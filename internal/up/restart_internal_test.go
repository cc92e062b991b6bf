package up

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// A restart is refused, with the reason, when the new process would not
// come back or would lose what the broker holds.
func TestRestartCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	file := testsupport.Shipped(t, "deploy/pipeline.yaml")
	fileOnDisk := script("pipeline.yaml", file, 0o644)
	good := script("good", "#!/bin/sh\necho ddnn test\n", 0o755)
	for _, c := range []struct {
		name      string
		binary    string
		file      string
		ephemeral bool
		want      string // "" when the restart may go ahead
	}{
		{"runs", good, fileOnDisk, false, ""},
		{"ephemeral", good, fileOnDisk, true, "--ephemeral: the embedded broker keeps its records in memory"},
		{"not executable", script("plain", "#!/bin/sh\n", 0o644), fileOnDisk, false, "permission denied"},
		{"missing", filepath.Join(dir, "missing"), fileOnDisk, false, "no such file"},
		{"fails", script("fails", "#!/bin/sh\necho broken >&2\nexit 3\n", 0o755), fileOnDisk, false, "`version` failed: exit status 3: broken"},
		{"file does not load", good, script("bad.yaml", "name: [\n", 0o644), false, "pipeline file:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &restarter{log: slog.New(slog.DiscardHandler), binary: c.binary, file: c.file, ephemeral: c.ephemeral}
			err := r.check(context.Background())
			switch {
			case c.want == "" && err != nil:
				t.Errorf("check: %v, want none", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("check: %v, want one saying %q", err, c.want)
			}
		})
	}
}

// The held sockets outlive a Run: the next Run gets the same socket for
// an address, which no one else can bind meanwhile; two sites asking for
// 127.0.0.1:0 in one Run get one each.
func TestHandoverHoldsAcrossRuns(t *testing.T) {
	h := newHandover(slog.New(slog.DiscardHandler))
	defer h.close()
	port, err := socket.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	first, err := h.hold(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.hold(addr); err == nil {
		t.Error("a second hold of an address in use in the Run succeeded")
	}
	h.released()
	again, err := h.hold(addr)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("the next Run did not get the held socket back")
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Errorf("%s bound again while held", addr)
	}
	a, errA := h.hold("127.0.0.1:0")
	b, errB := h.hold("127.0.0.1:0")
	if errA != nil || errB != nil || a == b {
		t.Errorf("two holds of 127.0.0.1:0: %p (%v), %p (%v), want two sockets", a, errA, b, errB)
	}
	if n := len(h.sockets()); n != 3 {
		t.Errorf("%d sockets held, want 3", n)
	}
}

// The signal ends the run's context only once the check passed, and says
// the stop is a restart's; a refused one leaves the pipeline running.
func TestRestartSignal(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ddnn")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(file, []byte(testsupport.Shipped(t, "deploy/pipeline.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged testsupport.Buffer
	r := &restarter{log: slog.New(slog.NewTextHandler(&logged, nil)), binary: bin, file: file, h: newHandover(slog.New(slog.DiscardHandler))}
	ctx, stop := r.watch(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), RestartSignal); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "the restart refused", func() bool {
		return strings.Contains(logged.String(), "restart: refused; the pipeline runs on")
	})
	if ctx.Err() != nil || r.h.restartingNow() {
		t.Fatal("a refused restart stopped the run")
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), RestartSignal); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the run goes on 10s after the signal:\n%s", logged.String())
	}
	if !r.h.restartingNow() {
		t.Error("the stop is not said to be a restart's")
	}
}
