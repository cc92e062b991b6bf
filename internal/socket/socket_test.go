package socket

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary act as a child: it takes over the
// sockets for its arguments with Listen, in order, prints what it saw and
// answers one connection on each with "hi" and the argument's index.
const childEnv = "DDNN_SOCKET_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child(os.Args[1:]))
	}
	if os.Getenv(execEnv) == "1" {
		os.Exit(execChild())
	}
	os.Exit(m.Run())
}

func child(addrs []string) int {
	var lns []net.Listener
	var packets []*net.UDPConn
	var took []string
	for _, addr := range addrs {
		if udpAddr, ok := strings.CutPrefix(addr, udpPrefix); ok {
			c, err := ListenPacket(udpAddr)
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			packets, took = append(packets, c), append(took, udpPrefix+c.LocalAddr().String())
			continue
		}
		ln, err := Listen(addr)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		lns, took = append(lns, ln), append(took, ln.Addr().String())
	}
	var st syscall.Stat_t
	fd3 := "closed"
	if syscall.Fstat(3, &st) == nil {
		fd3 = "open"
	}
	fmt.Printf("listening on %s; %s=%q; fd 3 %s\n", strings.Join(took, " "), listenFDsEnv, os.Getenv(listenFDsEnv), fd3)
	for i, ln := range lns {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintf(c, "hi%d", i)
		c.Close()
	}
	// A UDP socket answers its first datagram with "hi" and what it said.
	for _, c := range packets {
		b := make([]byte, 64)
		n, from, err := c.ReadFromUDP(b)
		if err != nil {
			return 1
		}
		c.WriteToUDP(append([]byte("hi "), b[:n]...), from)
	}
	return 0
}

// start runs the child for addr with files at fd 3, ... and env, and
// returns its first line.
func start(t *testing.T, addr string, files []*os.File, env []string) string {
	t.Helper()
	return startMany(t, []string{addr}, files, env)
}

// startMany is start for a child listening on several addresses.
func startMany(t *testing.T, addrs []string, files []*os.File, env []string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], addrs...)
	cmd.ExtraFiles, cmd.Env = files, append(env, childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	return strings.TrimSpace(line)
}

// hello dials addr and reads what is said.
func hello(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 8)
	n, _ := c.Read(b)
	return string(b[:n])
}

// A passed socket is the child's listener: binding its address anew would
// fail while the supervisor holds it. The child's own children do not
// see the count.
func TestChildTakesOverPassedSocket(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	files, env := Pass(append(os.Environ(), listenFDsEnv+"=7"), []*Socket{s})
	if n := len(slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return !strings.HasPrefix(kv, listenFDsEnv+"=") })); n != 1 {
		t.Fatalf("%d counts in the environment, want 1", n)
	}
	line := start(t, s.Addr, files, env)
	if want := fmt.Sprintf("listening on %s; %s=\"\"; fd 3 closed", s.Addr, listenFDsEnv); line != want {
		t.Fatalf("child said %q, want %q", line, want)
	}
	if got := hello(t, s.Addr); got != "hi0" {
		t.Errorf("child answered %q", got)
	}
}

// A connection made before the child runs waits in the backlog and is
// served once it does: nothing else could bind the address meanwhile.
func TestSocketHeldBeforeTheChild(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ln, err := net.Listen("tcp", s.Addr); err == nil {
		ln.Close()
		t.Fatalf("%s could be bound again while held", s.Addr)
	}
	said := make(chan string, 1)
	go func() {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			said <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 8)
		n, _ := c.Read(b)
		said <- string(b[:n])
	}()
	time.Sleep(100 * time.Millisecond) // the dial is in the backlog
	files, env := Pass(os.Environ(), []*Socket{s})
	start(t, s.Addr, files, env)
	if got := <-said; got != "hi0" {
		t.Errorf("queued connection got %q", got)
	}
}

// A count in the environment over something that is not a socket is not
// taken over (nor closed), and Listen binds the address itself.
func TestNotASocketIsLeftAlone(t *testing.T) {
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := start(t, "127.0.0.1:0", []*os.File{f}, append(os.Environ(), listenFDsEnv+"=127.0.0.1:0"))
	if !strings.HasPrefix(line, "listening on 127.0.0.1:") || !strings.HasSuffix(line, "fd 3 open") {
		t.Errorf("child said %q", line)
	}
}

// A socket bound for an address as a configuration gives it is found by
// that address, not by the one the kernel reports.
func TestBindByConfiguredAddress(t *testing.T) {
	free, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(free.Addr)
	free.Close()
	addr := "localhost:" + port
	s, err := Bind(addr)
	if err != nil {
		t.Skipf("%s: %v", addr, err) // taken meanwhile, or no localhost
	}
	defer s.Close()
	files, env := Pass(os.Environ(), []*Socket{s})
	if line := start(t, addr, files, env); !strings.HasSuffix(line, "fd 3 closed") {
		t.Fatalf("child said %q", line)
	}
	if got := hello(t, s.bound); got != "hi0" {
		t.Errorf("child answered %q", got)
	}
	if _, err := Bind("127.0.0.1:1 2"); err == nil || !strings.Contains(err.Error(), "space") {
		t.Errorf("Bind of an address with a space: %v", err)
	}
}

// The same address passed twice ("127.0.0.1:0" for two zones) gives each
// Listen of it its own socket, in the order passed.
func TestSameAddressTwice(t *testing.T) {
	var socks []*Socket
	for range 2 {
		s, err := Bind("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		socks = append(socks, s)
	}
	files, env := Pass(os.Environ(), socks)
	line := startMany(t, []string{"127.0.0.1:0", "127.0.0.1:0"}, files, env)
	if want := fmt.Sprintf("listening on %s %s;", socks[0].bound, socks[1].bound); !strings.HasPrefix(line, want) {
		t.Fatalf("child said %q, want %q...", line, want)
	}
	for i, s := range socks {
		if got, want := hello(t, s.bound), fmt.Sprintf("hi%d", i); got != want {
			t.Errorf("socket %d answered %q, want %q", i, got, want)
		}
	}
}

func TestPassWithoutSockets(t *testing.T) {
	files, env := Pass([]string{"A=1", listenFDsEnv + "=2", "B=2"}, nil)
	if len(files) != 0 || !slices.Equal(env, []string{"A=1", "B=2"}) {
		t.Errorf("Pass = %v, %v", files, env)
	}
}

// FreePort answers ports below the ephemeral range that can be bound, and
// none twice within recentPorts answers.
func TestFreePort(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	for range recentPorts {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p >= lo || p < minPort {
			t.Fatalf("port %d outside %d..%d", p, minPort, lo-1)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice in %d calls", p, len(seen)+1)
		}
		seen[p] = true
	}
	p, _ := FreePort()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d not free: %v", p, err)
	}
	ln.Close()
}
