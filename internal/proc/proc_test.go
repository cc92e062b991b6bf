package proc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// childEnv makes the test binary act as a child (see child); TestMain sets
// it, so every process a test starts inherits it.
const childEnv = "DDNN_PROC_TEST_CHILD"

func TestMain(m *testing.M) { proctest.Main(m, childEnv, child) }

// child is the test binary started as a Child:
//
//	serve ADDR     serve /readyz on ADDR; exit 0 on SIGTERM
//	stubborn ADDR  the same, but SIGTERM is ignored
//	linger ADDR    the same, but SIGTERM closes the listener and exits 3 s
//	               later
//	print          write a few lines (an empty one, one of 2 MiB, the last
//	               without a newline) and exit 3
//	idle           serve nothing; exit 0 on SIGTERM
//	parent ADDR    start a Child serving on ADDR, print its pid once it is
//	               ready and wait to be killed
func child(args []string) int {
	switch args[0] {
	case "idle":
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		<-term
		return 0
	case "parent":
		c := New("grandchild", "http://"+args[1]+"/readyz", nil, nil, "serve", args[1])
		if err := c.Start(); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		// Ready, it has written its output: it does not die of a
		// broken pipe when this process dies.
		if err := c.WaitReady(context.Background(), 20*time.Second); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println(c.PID())
		select {} // until killed
	case "serve", "stubborn", "linger":
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		ln, err := socket.Listen(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/readyz", func(http.ResponseWriter, *http.Request) {})
		go http.Serve(ln, mux)
		fmt.Println("serving on", ln.Addr())
		for range term {
			switch args[0] {
			case "serve":
				fmt.Fprintln(os.Stderr, "stopping on SIGTERM")
				return 0
			case "linger":
				ln.Close()
				time.Sleep(3 * time.Second) // finishing what it holds
				return 0
			}
			fmt.Println("ignoring SIGTERM")
		}
	case "print":
		os.Stdout.WriteString("one\n\ntwo\n" + strings.Repeat("x", 2<<20+10) + "\nlast")
		return 3
	}
	return 2
}

// serving starts a child serving /readyz on a socket passed to it and
// waits until it is ready.
func serving(t *testing.T, mode string, out *testsupport.Buffer) *Child {
	t.Helper()
	s, err := socket.New()
	if err != nil {
		t.Fatal(err)
	}
	c := New(mode, "http://"+s.Addr+"/readyz", out, nil, mode, s.Addr)
	c.Pass(s)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(time.Second) })
	if err := c.WaitReady(context.Background(), 20*time.Second); err != nil {
		t.Fatalf("%v; output:\n%s", err, out)
	}
	return c
}

// exited waits until c's current process exited.
func exited(t *testing.T, c *Child) {
	t.Helper()
	select {
	case <-c.exitedChan():
	case <-time.After(20 * time.Second):
		t.Fatalf("%s (pid %d) did not exit", c.Name(), c.PID())
	}
}

func TestOutputPrefixed(t *testing.T) {
	var out testsupport.Buffer
	c := New("printer", "http://127.0.0.1:1/readyz", &out, nil, "print")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited(t, c)
	p := fmt.Sprintf("%-16s ", "printer")
	// The 2 MiB line comes in maxLine pieces; it must not stall the child.
	want := p + "one\n" + p + "\n" + p + "two\n" + strings.Repeat(p+strings.Repeat("x", maxLine)+"\n", 2<<20/maxLine) + p + "xxxxxxxxxx\n" + p + "last\n"
	if got := out.String(); got != want {
		t.Errorf("output (%d bytes):\n%.300s\nwant (%d bytes):\n%.300s", len(got), got, len(want), want)
	}
}

func TestLineWriterSplitWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"whole lines", []string{"a\nb\n"}, "> a\n> b\n"},
		{"a line over writes", []string{"a", "b", "c\nd", "\n"}, "> abc\n> d\n"},
		{"empty lines", []string{"\n\n"}, "> \n> \n"},
		{"no newline at the end", []string{"a\nb"}, "> a\n> b\n"},
		{"nothing", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			w := &lineWriter{out: &b, prefix: "> "}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("write %q: %d, %v", s, n, err)
				}
			}
			w.flush()
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}

func TestStopGraceful(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	pid := c.PID()
	t0 := time.Now()
	c.Stop(10 * time.Second)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stop took %s", d)
	}
	if !proctest.Gone(pid) {
		t.Errorf("pid %d still there after Stop", pid)
	}
	if s := out.String(); !strings.Contains(s, fmt.Sprintf("%-16s stopping on SIGTERM\n", "serve")) {
		t.Errorf("output:\n%s", s)
	}
	if err := c.Kill(); err == nil {
		t.Error("Kill of a stopped child succeeded")
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "stubborn", &out)
	pid := c.PID()
	const grace = 300 * time.Millisecond
	t0 := time.Now()
	c.Stop(grace)
	if d := time.Since(t0); d < grace {
		t.Errorf("stop took %s, before the grace of %s ended", d, grace)
	}
	if !proctest.Gone(pid) {
		t.Errorf("pid %d still there after Stop", pid)
	}
	if !strings.Contains(out.String(), "ignoring SIGTERM") {
		t.Errorf("the child never got SIGTERM; output:\n%s", out.String())
	}
}

func TestSuperviseRestarts(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	done := make(chan struct{})
	go func() { defer close(done); c.Supervise(context.Background()) }()
	for i := 1; i <= 2; i++ {
		old := c.PID()
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		proctest.WaitFor(t, "a new process", func() bool { return c.PID() != old })
		if err := c.WaitReady(context.Background(), 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if !proctest.Gone(old) {
			t.Errorf("killed pid %d still there", old)
		}
		if n := c.Restarts(); n != i {
			t.Errorf("restarts %d, want %d", n, i)
		}
	}
	pid := c.PID()
	c.Stop(10 * time.Second)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Supervise still running after Stop")
	}
	if !proctest.Gone(pid) {
		t.Errorf("pid %d still there after Stop", pid)
	}
}

// TestStopWhileRestarting stops a child that died while Supervise waits
// to restart it: nothing may start after Stop.
func TestStopWhileRestarting(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	done := make(chan struct{})
	go func() { defer close(done); c.Supervise(context.Background()) }()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	exited(t, c)
	c.Stop(time.Second)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Supervise still running after Stop")
	}
	if pid := c.PID(); !proctest.Gone(pid) || c.Restarts() != 0 {
		t.Errorf("pid %d runs after Stop (restarts %d)", pid, c.Restarts())
	}
}

// TestStopWhileCrashLooping stops a child that keeps dying at once.
func TestStopWhileCrashLooping(t *testing.T) {
	c := New("printer", "http://127.0.0.1:1/readyz", nil, nil, "print")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.Supervise(context.Background()) }()
	proctest.WaitFor(t, "a restart", func() bool { return c.Restarts() >= 1 })
	c.Stop(time.Second)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Supervise still running after Stop")
	}
	exited(t, c)
}

func TestSuperviseEndsWithContext(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Supervise(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Supervise still running after its context ended")
	}
}

func TestStartWhileRunning(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	if err := c.Start(); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Start: %v", err)
	}
}

func TestWaitReadyExited(t *testing.T) {
	c := New("printer", "http://127.0.0.1:1/readyz", nil, nil, "print")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	err := c.WaitReady(context.Background(), 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "printer exited before it was ready") {
		t.Errorf("WaitReady: %v", err)
	}
}

// dead reports whether pid exited: no such process, or a zombie nobody
// reaped yet (an orphan's new parent may be slow to).
func dead(pid int) bool {
	if proctest.Gone(pid) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces, the state follows its ')'.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// TestOwnProcessGroup: a child leads a process group of its own, so a
// terminal's Ctrl-C to ours does not reach it.
func TestOwnProcessGroup(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	pgid, err := syscall.Getpgid(c.PID())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != c.PID() || pgid == syscall.Getpgrp() {
		t.Errorf("child %d in process group %d, ours is %d; want its own", c.PID(), pgid, syscall.Getpgrp())
	}
}

// TestKilledWithParent: a child dies when its supervisor is SIGKILLed,
// which leaves it no chance to stop its children.
func TestKilledWithParent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	parent := exec.Command(os.Args[0], "parent", addr)
	stdout, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		parent.Process.Kill()
		parent.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("parent said %q: %v", line, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if dead(pid) {
		t.Fatalf("child %d not running", pid)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	proctest.WaitFor(t, fmt.Sprintf("child %d to die with its parent", pid), func() bool { return dead(pid) })
}

// TestExitLogged: a child that exits on its own is logged with its exit
// status; one stopped by Stop is not.
func TestExitLogged(t *testing.T) {
	var logs testsupport.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := New("printer", "http://127.0.0.1:1/readyz", nil, log, "print")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited(t, c)
	if s := logs.String(); !strings.Contains(s, "child exited") || !strings.Contains(s, "child=printer") || !strings.Contains(s, `err="exit status 3"`) {
		t.Errorf("log:\n%s", s)
	}

	var stopLogs testsupport.Buffer
	c = New("idle", "http://127.0.0.1:1/readyz", nil, slog.New(slog.NewTextHandler(&stopLogs, nil)), "idle")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	c.Stop(10 * time.Second)
	if s := stopLogs.String(); s != "" {
		t.Errorf("a stopped child logged:\n%s", s)
	}
}

// TestWaitReadyTimeout: a child that runs but never answers is reported
// not ready, with its URL, when the timeout ends; Ready says no meanwhile.
func TestWaitReadyTimeout(t *testing.T) {
	c := New("idle", "http://127.0.0.1:1/readyz", nil, nil, "idle")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(time.Second) })
	err := c.WaitReady(context.Background(), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "idle not ready at http://127.0.0.1:1/readyz within 200ms") {
		t.Errorf("WaitReady: %v", err)
	}
	if c.Ready() {
		t.Error("Ready of a child that serves nothing")
	}
	err = c.WaitReadyAt(context.Background(), "http://127.0.0.1:1/other", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "idle not ready at http://127.0.0.1:1/other within 200ms") {
		t.Errorf("WaitReadyAt: %v", err)
	}
}

func TestReadyAndBaseURL(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	if !c.Ready() {
		t.Error("Ready of a serving child is false")
	}
	if got, want := c.BaseURL(), strings.TrimSuffix(c.readyURL, "/readyz"); got != want || strings.HasSuffix(got, "/readyz") {
		t.Errorf("BaseURL = %q, want %q", got, want)
	}
}

// TestNeverStarted: a child that was never started has no PID, cannot be
// killed, and stops at once.
func TestNeverStarted(t *testing.T) {
	c := New("idle", "http://127.0.0.1:1/readyz", nil, nil, "idle")
	if pid := c.PID(); pid != 0 {
		t.Errorf("PID = %d", pid)
	}
	if err := c.Kill(); err == nil || !strings.Contains(err.Error(), "idle is not running") {
		t.Errorf("Kill: %v", err)
	}
	c.Stop(time.Second)
}

// exitedChan is nil before the first start (a select on it waits), and is
// the current process's: open while it runs, closed once it exits.
func TestExitedChan(t *testing.T) {
	c := New("idle", "", nil, nil, "idle")
	if c.exitedChan() != nil {
		t.Fatal("exited before any start")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ch := c.exitedChan()
	select {
	case <-ch:
		t.Fatal("closed while the process runs")
	default:
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("not closed after the process was killed")
	}
	c.Stop(time.Second)
}

// TestPassedSocketAcrossRestarts: a child given a socket serves on it in
// every process; while it is dead nothing else can bind the address, and a
// request made meanwhile is answered by the restarted process. Stop frees
// the address.
func TestPassedSocketAcrossRestarts(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	addr := strings.TrimPrefix(c.BaseURL(), "http://")
	go c.Supervise(context.Background())
	old := c.PID()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	exited(t, c)
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("%s could be bound by another while the child was dead", addr)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("request made while the child was dead: %v; output:\n%s", err, &out)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || c.PID() == old || c.Restarts() != 1 {
		t.Errorf("status %d from pid %d (killed %d), %d restarts", resp.StatusCode, c.PID(), old, c.Restarts())
	}
	client.CloseIdleConnections()
	c.Stop(10 * time.Second)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s still held after Stop: %v", addr, err)
	}
	ln.Close()
}

// TestStoppingChildRefuses: once a child given a socket closes its
// listener on SIGTERM, new connections are refused while it finishes, not
// queued on the supervisor's copy for no one.
func TestStoppingChildRefuses(t *testing.T) {
	var out testsupport.Buffer
	c := serving(t, "linger", &out)
	addr := strings.TrimPrefix(c.BaseURL(), "http://")
	stopped := make(chan struct{})
	go func() { defer close(stopped); c.Stop(10 * time.Second) }()
	proctest.WaitFor(t, "connections refused while the child finishes", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	select {
	case <-stopped:
		t.Error("the child was gone before connections were refused; the test proves nothing")
	default:
	}
	<-stopped
	// A socket passed to a stopped child is closed at once.
	late, err := socket.New()
	if err != nil {
		t.Fatal(err)
	}
	c.Pass(late)
	if conn, err := net.Dial("tcp", late.Addr); err == nil {
		conn.Close()
		t.Error("a socket passed after Stop is still open")
	}
}

// TestChildOOMScoreRaised: under memory pressure the kernel must kill a
// child, which is restarted, before the supervisor: every process of a
// Child, restarts included, gets an oom_score_adj childOOMRaise above the
// supervisor's, which keeps its own.
func TestChildOOMScoreRaised(t *testing.T) {
	own, err := readOOMScoreAdj("self")
	if err != nil {
		t.Fatal(err)
	}
	want := min(own+childOOMRaise, maxOOMScoreAdj)
	if want <= own {
		t.Skipf("this process' oom_score_adj is %d already: no child can score higher", own)
	}
	check := func(pid int) {
		t.Helper()
		got, err := readOOMScoreAdj(strconv.Itoa(pid))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("child pid %d: oom_score_adj %d, want %d (the supervisor's is %d)", pid, got, want, own)
		}
	}
	var out testsupport.Buffer
	c := serving(t, "serve", &out)
	check(c.PID())
	done := make(chan struct{})
	go func() { defer close(done); c.Supervise(context.Background()) }()
	old := c.PID()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "a new process", func() bool { return c.PID() != old && c.PID() != 0 })
	check(c.PID())
	c.Stop(10 * time.Second)
	<-done
	if got, err := readOOMScoreAdj("self"); err != nil || got != own {
		t.Errorf("the supervisor's oom_score_adj is %d (%v), was %d", got, err, own)
	}
}
