// Package proctest helps the tests of code that starts the ddnn binary as
// child processes (internal/proc, the process runtime, the bench). Such
// code runs its own executable, which under `go test` is the test binary:
// Main makes that binary play the child when a test started it. The other
// helpers hand out addresses for children and check that what a test
// started is gone. It is for tests only and
// starts nothing itself.
package proctest

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// Main is a test binary's TestMain. In the test process it marks the
// environment with env (so every process the tests start inherits it),
// runs the tests and fails them on a leaked goroutine. In a process a test
// started, env is set: it runs fake with the arguments and exits with its
// code.
func Main(m *testing.M, env string, fake func(args []string) int) {
	if os.Getenv(env) == "1" {
		os.Exit(fake(os.Args[1:]))
	}
	os.Setenv(env, "1")
	goleak.VerifyTestMain(m)
}

// Serve is a fake child that is up: it answers 200 on every path of each
// addr until SIGTERM, then returns 0. A stubborn one prints "ignoring
// SIGTERM" instead and runs until it is killed. It listens the way the
// real children do (socket.Listen), and returns 1 when it cannot.
func Serve(stubborn bool, addrs ...string) int { return serve(stubborn, nil, addrs...) }

// serve is Serve whose /readyz answers 503 while ready, when set, is false.
func serve(stubborn bool, ready func() bool, addrs ...string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	for _, addr := range addrs {
		ln, err := socket.Listen(addr)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" && ready != nil && !ready() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
	}
	for range term {
		if !stubborn {
			return 0
		}
		fmt.Println("ignoring SIGTERM")
	}
	return 0
}

// StubbornTier is the tier whose FakeInference replicas ignore SIGTERM.
const StubbornTier = "stubborn"

// UnreadySuffix makes FakeInference replicas unready: while a file named
// their --file plus this suffix exists, their /readyz answers 503 (as a
// replica still loading its model does).
const UnreadySuffix = ".unready"

// FakeInference is `ddnn inference` as replica runtime tests need it: it
// parses its arguments with ddnn inference's own flags, prints what they
// say ("replica:" and the fields), then serves on the --listen address
// (Serve), stubborn for StubbornTier, unready while the --file plus
// UnreadySuffix exists. Arguments ddnn inference would not take end it
// with exit code 2.
func FakeInference(args []string) int {
	var c inference.Command
	fs := flag.NewFlagSet("inference", flag.ContinueOnError)
	c.Flags(fs)
	if len(args) == 0 || args[0] != "inference" || fs.Parse(args[1:]) != nil || fs.NArg() > 0 {
		fmt.Println("not ddnn inference's arguments:", strings.Join(args, " "))
		return 2
	}
	fmt.Println(ReplicaLine(c))
	return serve(c.Tier == StubbornTier, func() bool {
		_, err := os.Stat(c.File + UnreadySuffix)
		return errors.Is(err, os.ErrNotExist)
	}, c.Listen)
}

// ReplicaLine is what FakeInference prints of the command it was given.
func ReplicaLine(c inference.Command) string {
	return fmt.Sprintf("replica: file=%s tier=%s listen=%s log_level=%s service_token_file=%s ort_lib=%s threads=%d",
		c.File, c.Tier, c.Listen, c.Level, c.ServiceTokenFile, c.ORTLib, c.Threads)
}

// FreeAddr is a 127.0.0.1 address for a child to listen on, TCP or UDP
// (socket.FreePort): free when asked, never one handed out lately in this
// test binary, and outside the kernel's ephemeral range.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := socket.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// Gone reports whether no process has pid any more (exited and reaped).
func Gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// Children are the pids of this process' children, in order, exited but
// not reaped ones included (from /proc).
func Children() ([]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	self := strconv.Itoa(os.Getpid())
	var pids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == self {
			pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			if err != nil {
				return nil, err
			}
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// WaitFor polls cond until it holds, failing the test after 20s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
